"""`marquee drift check` names the step it is on, on a terminal (session 21, K: long work
shows progress).

A check reads the reference (a bundle, perhaps from S3), every payload-log file of the
window, scores each feature, publishes, pushes gauges and may wait for Evidently's report:
8 s on a local million-row window here, more with embeddings or a remote store, and before
nothing appeared until the verdict. Now a spinner says "drift check: reading 4 payload-log
files …", "scoring drift on 1,000,000 requests …", "waiting for Evidently's report …" on a
terminal; in a pipe, and with --json on stdout, the output is what it was.

Runs `python -m marquee.cli drift check` in a subprocess on a bundle and payload logs written
by ``monitoring.drift.scenarios``; rich takes ``TTY_COMPATIBLE=1`` as a terminal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from marquee.store import LocalStore
from monitoring.drift.scenarios import payload_table, write_bundle, write_payload_logs

HOUR = 1_740_787_200  # 2025-03-01T00:00:00Z
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("drift")
    write_bundle(root / "bundle", n_reference=2_000)
    write_payload_logs(LocalStore(root / "store"),
                       payload_table(3_000, 4, "demographic", start_ts=HOUR), n_files=2)
    return root


def _check(root: Path, *extra: str, terminal: bool) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MARQUEE_HOME": str(root / "home"),
           "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    if terminal:
        env |= {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "marquee.cli", "drift", "check", "--bundle", str(root / "bundle"),
         "--store", str(root / "store"), "--until", "2025-03-01T01:00:00Z", "--since", "1h",
         "--evidently", "never", "--no-embeddings", "--pushgateway", "", "--no-publish",
         *extra], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)


def test_a_terminal_sees_the_step_the_check_is_on(world: Path) -> None:
    done = _check(world, terminal=True)
    assert done.returncode == 3, done.stdout + done.stderr  # drift: the demographic scenario
    shown = ANSI.sub("", done.stdout)
    assert "drift check: scoring drift on 3,000 requests …" in shown, shown
    assert "drift detected" in shown  # the verdict is still printed after it


def test_with_json_the_steps_go_to_stderr_and_stdout_is_the_json(world: Path) -> None:
    done = _check(world, "--json", terminal=True)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "drift check: scoring drift on 3,000 requests …" in ANSI.sub("", done.stderr)
    assert json.loads(done.stdout)["window"]["rows"] == 3_000


def test_in_a_pipe_the_output_is_what_it_was(world: Path) -> None:
    printed = _check(world, terminal=False)
    as_json = _check(world, "--json", terminal=False)
    for done in (printed, as_json):
        assert done.returncode == 3, done.stdout + done.stderr
        assert done.stderr == ""
        assert "drift check" not in done.stdout and "\x1b" not in done.stdout
    assert json.loads(as_json.stdout)["drift_detected"] is True
    lines = printed.stdout.splitlines()  # as before: the table, the verdict, the timings
    assert lines[0].startswith("Drift: movie-recommender 1 — 3,000 requests vs 2,000 "
                               "reference rows"), lines
    assert lines[-2].startswith("drift detected: "), lines
    assert lines[-1].startswith("timings (s): {"), lines
