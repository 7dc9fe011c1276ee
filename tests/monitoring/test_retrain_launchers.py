"""Launchers against the training pipeline's real entry points (pipelines.run)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import wait_until

from marquee.settings import Settings
from monitoring.errors import LaunchError
from monitoring.retrain.launcher import (
    CommandLauncher,
    KubeflowLauncher,
    LaunchRequest,
    _result_of,
)

REQUEST = LaunchRequest(run_id="rt-1", model="movie-recommender", reason="ModelDataDrift",
                        params={"epochs": 1})


def test_run_result_of_the_local_pipeline_maps_to_the_run_record() -> None:
    from pipelines.run import RunResult

    got = _result_of(RunResult(run_id="kfp-local-7", version=4, gate="candidate"))
    assert (got.pipeline_run_id, got.model_version, got.gate_decision) == \
        ("kfp-local-7", "4", "candidate")


class RecordingKfpClient:
    """Stands in for kfp.Client (no Kubeflow host here): records the submission."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def create_run_from_pipeline_func(self, func, arguments, run_name, experiment_name):  # noqa: ANN001, ANN201
        self.calls.append({"arguments": arguments, "run_name": run_name,
                           "experiment": experiment_name})
        return type("Run", (), {"run_id": "kfp-run-123"})()


def test_kubeflow_launcher_submits_the_pipeline(tmp_path: Path) -> None:
    client = RecordingKfpClient()
    # wait=False: the submission alone (following the run: tests/monitoring/test_retrain_cluster)
    launcher = KubeflowLauncher(Settings(home=tmp_path), {"seed": 3}, client=client, wait=False)
    got = launcher.launch(REQUEST)
    assert got.pipeline_run_id == "kfp-run-123"
    (call,) = client.calls
    from pipelines.training import PIPELINE_NAME

    assert call["run_name"].startswith(PIPELINE_NAME)
    assert call["arguments"] == {"seed": 3, "epochs": 1}  # trigger params + the request's


def test_kubeflow_launcher_needs_a_host(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="kubeflow_host"):
        KubeflowLauncher(Settings(home=tmp_path))


def test_command_launcher_reports_the_failure(tmp_path: Path) -> None:
    launcher = CommandLauncher([sys.executable, "-c",
                                "import sys; print('boom: no data', file=sys.stderr); "
                                "sys.exit(4)"])
    with pytest.raises(LaunchError, match="exited 4: boom: no data"):
        launcher.launch(REQUEST)


def test_a_hung_command_is_killed_with_its_children_and_fails_the_run(tmp_path: Path) -> None:
    import os
    import time

    pid_file = tmp_path / "grandchild.pid"
    # a shell that starts a grandchild and waits on it: both must die at the bound
    launcher = CommandLauncher(["sh", "-c", f"sleep 120 & echo $! > {pid_file}; wait"],
                               timeout_seconds=1.0)
    t0 = time.monotonic()
    with pytest.raises(LaunchError, match=r"did not exit within 1s and was killed"):
        launcher.launch(REQUEST)
    assert time.monotonic() - t0 < 60  # not the grandchild's 120 s
    grandchild = int(pid_file.read_text())

    def gone() -> bool:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            return True
        # a zombie still answers signal 0 until its parent (init here) reaps it
        stat = Path(f"/proc/{grandchild}/stat")
        return stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z"

    wait_until(gone, timeout=10, what="the grandchild killed with the group")


def test_the_trigger_settings_bound_the_command_launcher(tmp_path: Path) -> None:
    from monitoring.retrain.config import TriggerSettings, make_launcher

    ts = TriggerSettings(launcher="command", command=["true"], command_timeout_seconds=90)
    launcher = make_launcher(Settings(home=tmp_path), ts)
    assert isinstance(launcher, CommandLauncher) and launcher.timeout_seconds == 90
    assert TriggerSettings().command_timeout_seconds == 12 * 3600
