"""`marquee traffic replay --router URL`: a URL it cannot use is a usage error naming it, and a
password in it is never printed (helper G, session 23).

Before, ``--router http://127.0.0.1:80900`` (a typo'd port) ended in an ``OverflowError``
traceback from the socket layer at the first request, ``--router http://[::1`` in an httpx
``InvalidURL`` traceback, both after the interactions were read; and a router behind basic
auth (``http://user:password@host``, which httpx sends as credentials) had its password
printed in the error line and the progress bar. Now the URL is checked before anything is
read, and what is printed of it has the password masked (``marquee.errors.redact_uri``, as
every other command masks a URI's password).

The command runs as ``python -m marquee.cli`` in a subprocess; only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _holdout(tmp_path: Path) -> Path:
    path = tmp_path / "holdout.parquet"
    pd.DataFrame({"user_id": [1, 2], "item_id": [8, 9], "timestamp": [1, 2]}).to_parquet(path)
    return path


def _replay(holdout: Path, router: str, terminal: bool = False) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_PROXY": "*", "COLUMNS": "300"}
    if terminal:
        env |= {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "marquee.cli", "traffic", "replay", "--holdout", str(holdout),
         "--router", router, "--rate", "200", "--requests", "2"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("router", "said"), [
    ("http://127.0.0.1:80900", "port 80900 is not in 1..65535"),
    ("http://[::1", "is not a URL"),
    ("http://u:hunter2@[::1", "is not a URL"),
])
def test_a_router_url_it_cannot_use_is_a_usage_error_naming_it(
        tmp_path: Path, router: str, said: str) -> None:
    done = _replay(_holdout(tmp_path), router)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "Invalid value for '--router'" in done.stderr and said in done.stderr, done.stderr
    assert "hunter2" not in done.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("terminal", [False, True])
def test_the_router_password_is_masked_in_what_is_printed(tmp_path: Path,
                                                          terminal: bool) -> None:
    router = f"http://ops:hunter2@127.0.0.1:{_closed_port()}"
    done = _replay(_holdout(tmp_path), router, terminal=terminal)
    assert done.returncode == 1, done.stdout + done.stderr  # nothing answers there
    shown = ANSI.sub("", done.stdout + done.stderr)
    assert "hunter2" not in shown, shown
    assert "error: all 2 requests to http://ops:***@127.0.0.1:" in shown, shown
    if terminal:
        assert "replay to http://ops:***@127.0.0.1:" in shown, shown


def test_an_accepted_click_without_a_json_answer_is_counted_not_a_crash(tmp_path: Path
                                                                        ) -> None:
    """A 202 on /feedback with an empty or plain-text body (a gateway in front of the router
    that acknowledges for it) ended the whole replay in a JSONDecodeError traceback; the
    click was accepted, so it counts (no interleaving credit: the answer names no team)."""
    import json

    from tests.stand_in_http import serving

    def answer(method: str, path: str, body: bytes) -> tuple[int, object]:
        if path == "/feedback":
            return 202, "accepted"
        return 200, {"items": [8, 9], "scores": [1.0, 0.5], "request_id": "r1",
                     "model_version": "1", "variant": "stable"}

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_PROXY": "*"}
    with serving(answer) as router:
        done = subprocess.run(
            [sys.executable, "-m", "marquee.cli", "traffic", "replay", "--holdout",
             str(_holdout(tmp_path)), "--router", router, "--requests", "2", "--rate", "200",
             "-o", "json"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    # user 1's future is item 8, user 2's item 9: each clicks once, and each click counts
    assert summary["variants"]["stable"]["clicked"] == 2, summary
    assert summary["feedback_errors"] == 0, summary
