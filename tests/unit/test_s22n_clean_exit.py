"""A replay that refuses right after reading its interactions exits with its code, not SIGABRT.

Before: ``marquee traffic replay`` read the Parquet file with ``pd.read_parquet(path)``, which
opens it as a Python file; Arrow's reader threads wrap what they read in Python objects and let
some go after the read has returned. Rarely (4 runs of 550 here, under load) one was let
go while the interpreter finalized: CPython ended that thread inside a C++ destructor and the
process died of SIGABRT ("terminate called without an active exception", exit -6) after its
``error:`` line (the flaky ``test_s18c_replay_no_users``). The abort itself is a race; what
makes it possible is deterministic: the file read through Python. These tests run the
``marquee`` entry point in its own process with an audit hook that records Python's opening
of the file (Arrow's own file raises no audit event).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

# The marquee entry point, with every Python open() of the interactions file recorded and
# reported on stdout at exit (stdout is not otherwise used on these paths).
_RUN_CLI = """
import atexit, json, os, sys
watched = os.path.realpath(sys.argv[1])
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        if os.path.realpath(os.fsdecode(args[0])) == watched:
            opened.append(args[1])
sys.addaudithook(hook)
atexit.register(lambda: print(json.dumps({"python_opened": opened}), flush=True))
sys.argv = ["marquee", *sys.argv[2:]]
from marquee.cli import main
main()
"""


def _few_events(path: Path) -> Path:
    """Interactions where every user has 2 events: the per-user split holds none out."""
    pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 3, 4],
                  "rating": pd.Series([4.0, 3.0, 5.0, 1.0], dtype="float32"),
                  "timestamp": [1_000_000_000 + i for i in range(4)],
                  "event": ["rating"] * 4}).to_parquet(path)
    return path


def _replay(tmp_path: Path, interactions: Path
            ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``marquee traffic replay --interactions <file>`` in its own process; its result and the
    modes Python opened the file in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    out = subprocess.run([sys.executable, "-c", _RUN_CLI, str(interactions), "traffic", "replay",
                          "--interactions", str(interactions), "--router", "http://127.0.0.1:9",
                          "--requests", "5"],
                         env={**env, "MARQUEE_HOME": str(tmp_path / "h")},
                         capture_output=True, text=True, timeout=120)
    report = [line for line in out.stdout.splitlines() if line.startswith('{"python_opened"')]
    assert len(report) == 1, (out.returncode, out.stdout, out.stderr)
    return out, json.loads(report[0])["python_opened"]


def test_a_refused_replay_reads_parquet_through_arrow_not_a_python_file(tmp_path: Path) -> None:
    path = _few_events(tmp_path / "few.parquet")
    out, opened = _replay(tmp_path, path)
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert out.stderr.startswith(f"error: no held-out users in {path}: "), out.stderr
    assert "terminate called" not in out.stderr
    # a Python file would leave Arrow's threads holding Python objects at interpreter exit
    assert opened == [], f"the Parquet file was opened by Python ({opened}): see the docstring"


def test_a_missing_parquet_file_is_still_named_on_one_error_line(tmp_path: Path) -> None:
    """Arrow's own error for a missing file does not name it; the line still does."""
    path = tmp_path / "absent.parquet"
    out, _ = _replay(tmp_path, path)
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert out.stderr.strip() == f"error: {path}: No such file or directory", out.stderr
