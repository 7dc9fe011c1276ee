"""`marquee traffic replay` on interactions files as they come (helper G, session 23).

Before, the replay read ``user_id``, ``item_id`` and ``timestamp`` with a bare ``int()`` per
value: a user id that is not a number (``abc``), an empty item cell (NaN), a time written as
an ISO date or stored as a Parquet timestamp ended in a ``ValueError``/``TypeError`` traceback,
and a row without a user id was silently dropped by the grouping (one user less, no word).
Now the three columns are read as the data contract reads them (``coerce_raw_frame``): ISO
times and Parquet timestamps are unix seconds, and a value that is none of these is one
``error:`` line naming the option, the file, the column and the value.

The command runs as ``python -m marquee.cli`` in a subprocess (its ``main`` maps refusals to
``error:`` lines); the router is a stand-in on 127.0.0.1 that records whom it was asked for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import REPO
from tests.stand_in_http import serving


def _replay(option: str, path: Path, router: str = "http://127.0.0.1:9", *args: str
            ) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_PROXY": "*"}
    return subprocess.run(
        [sys.executable, "-m", "marquee.cli", "traffic", "replay", option, str(path),
         "--router", router, "--rate", "200", "--requests", "1", "-o", "json", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("rows", "column", "shown"), [
    ("1,10,100\nabc,11,101\n", "user_id", "'abc'"),
    ("1,10,100\n2,x11,101\n", "item_id", "'x11'"),
    ("1,10,100\n2,,101\n", "item_id", "not null"),
    ("1,10,100\n2,11,\n", "timestamp", "not null"),
    ("1,10,100\n2,11,yesterday\n", "timestamp", "'yesterday'"),
    ("1,10,100\n,11,101\n", "user_id", "not null"),  # was dropped without a word
])
def test_a_bad_value_in_the_holdout_is_one_error_line_naming_it(
        tmp_path: Path, rows: str, column: str, shown: str) -> None:
    holdout = tmp_path / "holdout.csv"
    holdout.write_text("user_id,item_id,timestamp\n" + rows)
    done = _replay("--holdout", holdout)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: holdout="), done.stderr
    assert str(holdout) in lines[0] and f"interactions.{column}" in lines[0], lines[0]
    assert shown in lines[0], lines[0]
    assert done.stdout == ""  # refused before any request


def _recording_router(asked: list[int]):  # noqa: ANN202
    def answer(method: str, path: str, body: bytes) -> tuple[int, Any]:
        if path != "/recommend":
            return 202, {"credited": None}
        asked.append(json.loads(body)["user_id"])
        return 200, {"items": [8, 9], "scores": [1.0, 0.5], "request_id": f"r{len(asked)}",
                     "model_version": "1", "variant": "stable"}
    return serving(answer)


def test_iso_times_in_a_csv_are_read_as_times(tmp_path: Path) -> None:
    """Each user's last quarter is held out by time: with ISO text times too (user 2's
    events written out of order, so text order is not time order)."""
    path = tmp_path / "interactions.csv"
    rows = [(1, 10 + i, f"2020-01-0{i + 1}T00:00:00Z") for i in range(4)]
    rows += [(2, 20 + i, f"2019-06-0{5 - i}") for i in range(4)]  # 2019: before user 1
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(path, index=False)
    asked: list[int] = []
    with _recording_router(asked) as router:
        done = _replay("--interactions", path, router, "--requests", "2", "--concurrency", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["requests"] == 2 and summary["errors"] == 0, summary
    assert asked == [2, 1], asked  # in order of their first held-out event: user 2's is 2019
    # and the users' futures were their last events in time: user 2's is item 20 (06-05)
    from serving.replay.users import load_users

    users = {u.user_id: u for u in load_users(path)}
    assert users[2].future == frozenset({20}) and users[1].future == frozenset({13})


def test_a_parquet_timestamp_column_is_read_as_unix_seconds(tmp_path: Path) -> None:
    path = tmp_path / "holdout.parquet"
    pd.DataFrame({"user_id": [7, 3], "item_id": [8, 9],
                  "timestamp": pd.to_datetime(["2021-03-01T00:00:01Z", "2021-01-01T00:00:00Z"])
                  }).to_parquet(path)
    asked: list[int] = []
    with _recording_router(asked) as router:
        done = _replay("--holdout", path, router, "--requests", "2", "--concurrency", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert asked == [3, 7], asked  # user 3's event is the earlier one
    from serving.replay.users import load_users

    firsts = {u.user_id: u.first_ts for u in load_users(path, path)}
    assert firsts == {3: 1609459200, 7: 1614556801}
