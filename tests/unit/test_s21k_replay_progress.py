"""`marquee traffic replay` shows a bar on a terminal (session 21, K: long work shows
progress).

A replay lasts ``--duration`` seconds, or ``--requests`` (by default every held-out user once:
943 for MovieLens-100k, 47 s at the default 20/s) over ``--rate``; before, nothing appeared
until the summary at the end, not even whether the router answered at all. Now, on a
terminal, stderr shows requests answered (of how many), how many failed, and the time; in a
pipe (and with ``-o json``) stdout and stderr are what they were.

The router is a stand-in on 127.0.0.1 answering /recommend and /feedback; the command runs
as ``python -m marquee.cli`` in a subprocess, rich taking ``TTY_COMPATIBLE=1`` as a terminal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
from conftest import REPO
from tests.stand_in_http import replay_router, serving

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def stand_in_router(fail_every: int = 0):  # noqa: ANN201
    """/recommend answers a list (every ``fail_every``-th request a 503), /feedback a 202."""
    return serving(replay_router(fail_every=fail_every))


def _holdout(tmp_path: Path) -> Path:
    path = tmp_path / "holdout.parquet"
    pd.DataFrame({"user_id": [1, 1, 2, 3, 4, 5], "item_id": [8, 9, 15, 22, 8, 9],
                  "timestamp": [1, 2, 3, 4, 5, 6]}).to_parquet(path)
    return path


def _replay(router: str, holdout: Path, *args: str, terminal: bool
            ) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_PROXY": "*"}
    if terminal:
        env |= {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "marquee.cli", "traffic", "replay", "--holdout", str(holdout),
         "--router", router, "--rate", "200", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_a_bar_counts_the_requests_answered_on_a_terminal(tmp_path: Path) -> None:
    holdout = _holdout(tmp_path)
    with stand_in_router(fail_every=3) as router:
        done = _replay(router, holdout, terminal=True)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = ANSI.sub("", done.stderr)
    assert f"replay to {router}" in shown, shown
    assert "5/5 requests, 2 failed" in shown, shown  # every user once: the total
    assert "replay: 5 requests in" in done.stdout  # the summary is still printed
    assert "warning: 2 of 5 requests failed" in shown


def test_with_a_request_count_the_bar_has_that_total(tmp_path: Path) -> None:
    holdout = _holdout(tmp_path)
    with stand_in_router() as router:
        done = _replay(router, holdout, "--requests", "12", "--with-replacement",
                       "-o", "json", terminal=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12/12 requests, 0 failed" in ANSI.sub("", done.stderr), done.stderr
    assert json.loads(done.stdout)["requests"] == 12  # stdout is the JSON alone


def test_in_a_pipe_nothing_but_the_summary(tmp_path: Path) -> None:
    holdout = _holdout(tmp_path)
    with stand_in_router(fail_every=3) as router:
        table = _replay(router, holdout, terminal=False)
        as_json = _replay(router, holdout, "-o", "json", terminal=False)
    assert table.returncode == 0 and as_json.returncode == 0, table.stderr + as_json.stderr
    for done in (table, as_json):
        assert "replay to" not in done.stdout + done.stderr
        assert "\x1b" not in done.stdout + done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith("warning: 2 of 5 requests failed, the router refused 0 "
                                      "of "), done.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("replay: 5 requests in"), lines  # the table, as before
    assert "┃ variant ┃ requests ┃ errors ┃ clicked lists ┃ CTR   ┃" in lines, lines
    summary = json.loads(as_json.stdout)
    assert summary["requests"] == 5 and summary["errors"] == 2
