"""``marquee demo`` refuses what its training pipeline would refuse, and a home it cannot use,
before anything runs and without writing into the home (helper D, session 21).

Before: a ``--config-json`` the recommender refuses (an unknown key, a value out of range, a
wrong type) started the demo, whose pipeline run failed and left a report of a failed run in
the home; with a production version from an earlier run nothing was trained first and the
retrain found it minutes later with every server up. A home that is a file ended in a
traceback; a second demo on the same home removed the first one's routing file and token.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_cli_errors import marquee


def _demo(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return marquee(home, "demo", *args, timeout=120, COLUMNS="200", NO_COLOR="1", **env)


@pytest.mark.parametrize(("args", "says"), [
    (["--config-json", '{"bogus": 1}'], "bogus: Extra inputs are not permitted (got 1)"),
    (["--config-json", '{"retrieval": {"epochs": -1}}'],
     "retrieval.epochs: Input should be greater than or equal to 1 (got -1)"),
    (["--config-json", '{"retrieval": 5}'], "retrieval: Input should be a valid dictionary"),
    (["--train-only", "--config-json", '{"ranker": {"enabled": "maybe"}}'],
     "ranker.enabled: Input should be a valid boolean"),
])
def test_a_config_the_recommender_refuses_is_a_usage_error_before_anything_runs(
        tmp_path: Path, args: list[str], says: str) -> None:
    home = tmp_path / "home"
    out = _demo(home, *args)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: Invalid value for --config-json: "), out.stderr
    assert says in last, last
    assert "Traceback" not in out.stdout + out.stderr
    assert not home.exists()  # nothing written: no registry, no report of a failed run


def test_a_drift_window_longer_than_the_demo_can_wait_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.touch()  # unchecked, the demo would fail on its home (exit 1), not train for minutes
    out = _demo(home, "--drift-window", "601")
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Invalid value for '--drift-window'" in out.stderr
    assert "less than or equal to 600" in out.stderr


def test_a_home_that_is_a_file_is_one_error_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory\n")
    out = _demo(home, "--alerting", "direct")
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: MARQUEE_HOME={home.resolve()} is not a directory"]
    assert "1/9" not in out.stdout  # no step started
    assert home.read_text() == "not a directory\n"


def _home_whose_training_fails_at_once(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "runs").write_text("")  # the pipeline's runs directory: a demo that goes on fails
    return home


def test_a_second_demo_on_the_same_home_is_refused_while_one_runs(tmp_path: Path) -> None:
    home = _home_whose_training_fails_at_once(tmp_path)
    fd = os.open(home / "demo.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the running demo's, as it takes it
        os.write(fd, b"4242")
        out = _demo(home, "--alerting", "direct")
    finally:
        os.close(fd)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: another marquee demo (pid 4242) is running on MARQUEE_HOME={home.resolve()}: "
        "wait for it, or use another home")
    assert sorted(p.name for p in home.iterdir()) == ["demo.lock", "runs"]  # no report, no loop/


def test_the_lock_is_released_when_the_demo_ends(tmp_path: Path) -> None:
    """A demo that ended (here on its training) leaves the home free for the next."""
    home = _home_whose_training_fails_at_once(tmp_path)
    for _ in range(2):
        out = _demo(home, "--alerting", "direct")
        assert out.returncode == 1
        assert "another marquee demo" not in out.stdout + out.stderr
        assert "the training pipeline failed" in out.stdout, out.stdout[-2000:]


def test_a_model_name_the_loop_would_not_serve_is_refused_first(tmp_path: Path) -> None:
    """Before: the first training registered under this name (minutes), the loop's model
    server looked the version up under the default one and failed."""
    home = _home_whose_training_fails_at_once(tmp_path)
    out = _demo(home, "--alerting", "direct", MARQUEE_MODEL_NAME="other-recommender")
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        "error: MARQUEE_MODEL_NAME='other-recommender': the demo's loop serves "
        "'movie-recommender'; unset it (or run with --train-only)")
    assert sorted(p.name for p in home.iterdir()) == ["runs"]
    assert "1/9" not in out.stdout


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
