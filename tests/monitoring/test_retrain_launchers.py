"""Launchers against the training pipeline's real entry points (pipelines.run)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import pid_alive, wait_until

from marquee.settings import Settings
from monitoring.errors import LaunchError
from monitoring.retrain.launcher import (
    CommandLauncher,
    KubeflowLauncher,
    LaunchRequest,
    _result_of,
)

REQUEST = LaunchRequest(run_id="rt-1", model="movie-recommender", reason="ModelDataDrift",
                        params={"n_trials": 1})


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
    assert call["arguments"] == {"seed": 3, "n_trials": 1}  # trigger params + the request's


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
    wait_until(lambda: not pid_alive(grandchild), timeout=10,
               what="the grandchild killed with the group")


def test_pipeline_params_the_pipeline_would_refuse_stop_the_trigger_at_start(
        tmp_path: Path) -> None:
    from monitoring.errors import MonitoringInputError
    from monitoring.retrain.config import TriggerSettings, make_launcher

    for launcher in ("kfp-local", "kubeflow"):
        ts = TriggerSettings(launcher=launcher, pipeline_params={"epochs": 1})
        with pytest.raises(MonitoringInputError, match=r"MARQUEE_RETRAIN_PIPELINE_PARAMS\): "
                           r"params=\['epochs'\]: not parameters of the pipeline"):
            make_launcher(Settings(home=tmp_path, kubeflow_host="http://127.0.0.1:9"), ts)
    ts = TriggerSettings(launcher="kfp-local", pipeline_params={"split_mode": "user_random"})
    assert make_launcher(Settings(home=tmp_path), ts).params == {"split_mode": "user_random"}


def test_the_trigger_settings_bound_the_command_launcher(tmp_path: Path) -> None:
    from monitoring.retrain.config import TriggerSettings, make_launcher

    ts = TriggerSettings(launcher="command", command=["true"], command_timeout_seconds=90)
    launcher = make_launcher(Settings(home=tmp_path), ts)
    assert isinstance(launcher, CommandLauncher) and launcher.timeout_seconds == 90
    assert TriggerSettings().command_timeout_seconds == 12 * 3600


LOCAL_REQUEST = LaunchRequest(run_id="rt-2", model="movie-recommender", reason="ModelDataDrift")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line or environment contains ``text`` (read from /proc; the run's
    child has its spec in the environment, and kfp.local's steps inherit it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in environ or text in _cmdline(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _launch_in_thread(launcher: Any) -> tuple[threading.Thread, list[BaseException]]:
    """``launcher.launch(LOCAL_REQUEST)`` on a started thread; what it raises is appended to
    the returned list."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            launcher.launch(LOCAL_REQUEST)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    return worker, outcome


def test_a_local_pipeline_run_over_its_time_is_stopped_with_its_steps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kfp-local launcher runs the real pipeline in a child process; past its timeout
    the child and kfp.local's step processes are killed and the run fails, naming the
    setting. The stopped child leaves no kfp.local workspace behind in $TMPDIR."""
    from monitoring.retrain.launcher import KfpLocalLauncher

    scratch = tmp_path / "tmp"  # the child's $TMPDIR
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    home = tmp_path / "home-kfp-timeout"
    launcher = KfpLocalLauncher(
        Settings(home=home), {"source": "synth:users=300,items=100,events=6000,seed=1"},
        timeout_seconds=25)
    seen: list[int] = []
    worker, outcome = _launch_in_thread(launcher)
    while worker.is_alive():
        seen = max(seen, _processes_mentioning(str(home)), key=len)
        worker.join(0.2)
    # the child and at least one of kfp.local's step processes ran
    assert len(seen) >= 2
    assert outcome and isinstance(outcome[0], LaunchError)
    assert "did not exit within 25s" in str(outcome[0])
    assert "COMMAND_TIMEOUT_SECONDS" in str(outcome[0])
    wait_until(lambda: not _pids_alive(str(home)), timeout=15, what="the run's processes gone")
    assert not list(scratch.glob("kfp-workspace-*"))


def test_a_local_pipeline_run_reports_a_bad_source_as_a_failed_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The error names the step's cause; the run's output went to the trigger's log as it
    came (a long run shows its progress there)."""
    import logging

    from monitoring.retrain.launcher import KfpLocalLauncher

    caplog.set_level(logging.INFO, logger="marquee.retrain.launcher")

    empty = tmp_path / "empty-dataset"  # a directory without tables: ingest refuses it
    empty.mkdir()
    launcher = KfpLocalLauncher(Settings(home=tmp_path), {"source": str(empty)},
                                timeout_seconds=300)
    with pytest.raises(LaunchError, match="DataValidationError: .*empty-dataset") as err:
        launcher.launch(LOCAL_REQUEST)
    # the child's one-line summary names the failed step, without ANSI codes
    assert "pipeline 'marquee-training' failed in step 'ingest'" in str(err.value)
    assert "\x1b[" not in str(err.value)
    logged = [r.getMessage() for r in caplog.records if r.name == "marquee.retrain.launcher"]
    assert any(m.startswith("rt-2 stdout: ") and "empty-dataset" in m for m in logged)


def _pids_alive(text: str) -> list[int]:
    return [pid for pid in _processes_mentioning(text) if pid_alive(pid)]


def test_closing_the_local_launcher_stops_the_running_pipeline(tmp_path: Path) -> None:
    """The trigger shutting down closes its launcher: a local run in progress is stopped with
    its steps (in a session of its own it would not get the terminal's Ctrl-C), the run
    fails saying why, and nothing new starts."""
    from monitoring.retrain.launcher import KfpLocalLauncher

    home = tmp_path / "home-kfp-close"
    launcher = KfpLocalLauncher(
        Settings(home=home), {"source": "synth:users=300,items=100,events=6000,seed=1"},
        timeout_seconds=600)
    worker, outcome = _launch_in_thread(launcher)
    try:
        wait_until(lambda: len(_pids_alive(str(home))) >= 2, timeout=60,
                   what="the run's child and one of its steps")
        # the settings travel in the child's environment, not on its command line
        child = [_cmdline(p) for p in _pids_alive(str(home)) if "pipelines.run" in _cmdline(p)]
        assert child and all("settings" not in c for c in child)
    finally:
        launcher.close()
        worker.join(60)
    assert not worker.is_alive()
    assert outcome and "was stopped: the trigger is shutting down" in str(outcome[0])
    wait_until(lambda: not _pids_alive(str(home)), timeout=15, what="the run's processes gone")
    with pytest.raises(LaunchError, match="not started: the trigger is shutting down"):
        launcher.launch(LOCAL_REQUEST)


def test_a_retrain_command_stopped_by_sigterm_stops_its_pipeline_run(tmp_path: Path) -> None:
    """``marquee retrain --local`` runs the pipeline from its own process;
    a SIGTERM to that command (``timeout``, ``kill``, a pod ending) unwinds it like Ctrl-C,
    so the run's child and steps are stopped instead of outliving it."""
    import signal
    import subprocess

    home = tmp_path / "home-retrain-sigterm"
    env = {**os.environ, "MARQUEE_HOME": str(home),
           "MARQUEE_RETRAIN_TOKEN_FILE": str(tmp_path / "no-token"),
           "MARQUEE_RETRAIN_PIPELINE_PARAMS":
               '{"source": "synth:users=300,items=100,events=6000,seed=1"}'}
    proc = subprocess.Popen([sys.executable, "-m", "marquee.cli", "retrain", "--local",
                             "--reason", "sigterm test"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        wait_until(lambda: any("pipelines.run" in _cmdline(p) for p in _pids_alive(str(home))),
                   timeout=60, what="the retraining run's child process")
        proc.send_signal(signal.SIGTERM)  # to the command alone, as `timeout` does
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "Traceback" not in out
    wait_until(lambda: not _pids_alive(str(home)), timeout=15, what="the run's processes gone")
