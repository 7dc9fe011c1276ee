"""Retraining runs keep URI passwords out of their records and of what ``marquee retrain``
prints.

Before, a failed training command's ``error:`` line (an MLflow or S3 error quoting its URI
whole) and its argv went verbatim into the run's record, and the Kubeflow launcher recorded
the Kubeflow host, credentials included, in every run's detail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from marquee.settings import Settings
from monitoring.retrain.launcher import KubeflowLauncher, LaunchRequest

SECRET = "S3CRET-v20r"


def test_a_failed_training_command_is_recorded_without_the_uris_password(
        tmp_path: Path) -> None:
    uri = f"http://mlflow:{SECRET}@mlflow:5000"
    script = (f"import sys; print('error: registering failed on {uri}: refused', "
              "file=sys.stderr); sys.exit(1)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    out = subprocess.run(
        [str(Path(sys.executable).parent / "marquee"), "retrain", "--local", "-r", "drill"],
        env={**clean, "MARQUEE_HOME": str(tmp_path / "home"), "COLUMNS": "200",
             "MARQUEE_RETRAIN_LAUNCHER": "command",
             "MARQUEE_RETRAIN_COMMAND": json.dumps([sys.executable, "-c", script])},
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "registering failed on http://mlflow:***@mlflow:5000: refused" in out.stdout, \
        out.stdout
    assert SECRET not in out.stdout + out.stderr
    records = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert records  # the run's record and decision were written
    assert [p for p in records if SECRET.encode() in p.read_bytes()] == []


class RecordingKfpClient:
    """Stands in for kfp.Client (no Kubeflow host here): answers one submission."""

    def create_run_from_pipeline_func(self, func, arguments, run_name, experiment_name):  # noqa: ANN001, ANN201
        return type("Run", (), {"run_id": "kfp-run-7"})()


def test_the_kubeflow_launcher_records_its_host_without_the_password(tmp_path: Path) -> None:
    host = f"https://ops:{SECRET}@kubeflow.example"
    launcher = KubeflowLauncher(Settings(home=tmp_path, kubeflow_host=host),
                                client=RecordingKfpClient(), wait=False)
    got = launcher.launch(LaunchRequest(run_id="rt-1", model="movie-recommender",
                                        reason="drill"))
    assert got.detail == "submitted to https://ops:***@kubeflow.example"
