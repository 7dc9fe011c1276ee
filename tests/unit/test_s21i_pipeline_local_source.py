"""``marquee pipeline run --source DIR`` with a directory that is not on this machine started
the kfp.local run (a run directory under the home, the ingest step's process) and failed
only in the ingest step. A local run's source is now checked before anything starts: a
usage error naming --source, exit 2. ``submit`` (and ``run --no-local``) sends the path to
Kubeflow, whose steps read it inside their pods: it is not checked against this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from marquee.errors import InvalidArgumentError
from marquee.settings import Settings
from pipelines.run import pipeline_arguments, submit


def _marquee(home: Path, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    return subprocess.run([str(Path(sys.executable).parent / "marquee"), *args],
                          env={**clean, "MARQUEE_HOME": str(home), "COLUMNS": "250"},
                          capture_output=True, text=True, timeout=120)


def test_run_refuses_a_source_directory_that_is_not_here_before_any_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    missing = tmp_path / "no-such-dataset"
    out = _marquee(home, "pipeline", "run", "--source", str(missing))
    assert out.returncode == 2, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: Invalid value for --source: '{missing}': no such directory on "
                      "this machine: use movielens-100k[:PATH], synth:users=N,items=N,events=N "
                      "or a directory holding the dataset's tables"], out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert not (home / "runs").exists()  # no run was started
    assert "ingest" not in out.stdout + out.stderr


@pytest.mark.parametrize("make,expected", [
    (lambda d: (d / "f.csv").write_text("x\n") and f"{d}/f.csv", "not a directory"),
    (lambda d: "movielens-1m", "no such directory on this machine"),
    (lambda d: f"movielens-100k:{d}/ml-100k.zip",
     "ml-100k.zip: no such directory or zip file on this machine"),
])
def test_run_names_what_is_wrong_with_a_local_source(tmp_path: Path, make,  # noqa: ANN001
                                                     expected: str) -> None:
    source = make(tmp_path)
    for args, hint in ((["--source", source], "--source"),
                       (["--param", f"source={source}"], "--param source")):
        out = _marquee(tmp_path / "home", "pipeline", "run", *args)
        assert out.returncode == 2, out.stdout + out.stderr
        assert f"Error: Invalid value for {hint}: '{source}': " in out.stderr, out.stderr
        assert expected in out.stderr and "Traceback" not in out.stderr
        assert not (tmp_path / "home" / "runs").exists()


def test_local_pipeline_arguments_check_the_source_and_keep_a_good_one(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(InvalidArgumentError) as caught:  # run_local and the retrain launcher
        pipeline_arguments(settings, {"source": str(tmp_path / "gone")})
    assert str(caught.value).startswith(f"source='{tmp_path / 'gone'}': no such directory")
    (tmp_path / "ds").mkdir()
    for good in (str(tmp_path / "ds"), "movielens-100k", "synth:users=5,items=5,events=20"):
        assert pipeline_arguments(settings, {"source": good})["source"] == good


def test_submit_passes_a_path_of_the_cluster_unchecked(tmp_path: Path) -> None:
    class RecordingClient:
        arguments: dict = {}

        def create_run_from_pipeline_func(self, pipeline_func, arguments, run_name,  # noqa: ANN001, ANN201
                                          experiment_name):
            RecordingClient.arguments = arguments
            return type("Run", (), {"run_id": "run-1"})()

    cluster_path = "/mnt/datasets/events-2024"  # a path inside the step's pod
    run_id = submit(Settings(home=tmp_path), {"source": cluster_path}, host="http://kfp.example",
                    client=RecordingClient())
    assert run_id == "run-1"
    assert RecordingClient.arguments["source"] == cluster_path
