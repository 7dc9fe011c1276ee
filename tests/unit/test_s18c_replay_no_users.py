"""``marquee traffic replay`` on interactions that yield no held-out user ends with one
``error:`` line that names the file and says why, exit 1 (a refusal, as the README's command
line section says). Before: a bare "no held-out users", exit 2 (the code of a usage error)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd


def test_a_replay_without_held_out_users_says_why(tmp_path: Path) -> None:
    path = tmp_path / "few.parquet"  # every user has 2 events: the split holds none out
    pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 3, 4],
                  "rating": pd.Series([4.0, 3.0, 5.0, 1.0], dtype="float32"),
                  "timestamp": [1_000_000_000 + i for i in range(4)],
                  "event": ["rating"] * 4}).to_parquet(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    out = subprocess.run([str(Path(sys.executable).parent / "marquee"), "traffic", "replay",
                          "--interactions", str(path), "--router", "http://127.0.0.1:9",
                          "--requests", "5"], env={**env, "MARQUEE_HOME": str(tmp_path / "h")},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no held-out users in "), out.stderr
    assert str(path) in lines[0] and "fewer than 3 events" in lines[0]
