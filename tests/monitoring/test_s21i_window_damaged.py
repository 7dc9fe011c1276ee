"""``marquee drift check --window DIR`` stopped at the first damaged Parquet file under DIR
(exit 2, the file's error), whatever the other files held, while the store's window skips
a damaged file with a warning and goes on. The ad-hoc window now does the same: each
damaged file is skipped with one warning line naming it on stderr, and the path is refused
only when none of its files can be read (naming the first error)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from conftest import REPO

from monitoring.drift.scenarios import payload_table, write_bundle

HOUR = 1_740_787_200  # 2025-03-01T00:00:00Z
DAMAGED = b"PAR1 not parquet"


def _drift_cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "marquee.cli", "drift", "check", *args],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=180)


def test_a_damaged_file_in_the_window_directory_is_skipped_not_fatal(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    window = payload_table(2_000, 3, "demographic", start_ts=HOUR)
    (tmp_path / "win" / "hour=01").mkdir(parents=True)
    pq.write_table(window.slice(0, 1_000), tmp_path / "win" / "part-1.parquet")
    (tmp_path / "win" / "part-2.parquet").write_bytes(DAMAGED)
    pq.write_table(window.slice(1_000), tmp_path / "win" / "hour=01" / "part-3.parquet")
    out = _drift_cli(["--bundle", str(bundle), "--window", str(tmp_path / "win"), "--json",
                      "--no-publish", "--evidently", "never"], tmp_path / "home")
    assert out.returncode == 3, out.stdout + out.stderr  # the demographic drift is found
    summary = json.loads(out.stdout)
    assert summary["window"]["rows"] == 2_000  # both good files, the one after it too
    warned = [line for line in out.stderr.splitlines() if "part-2.parquet" in line]
    assert len(warned) == 1 and warned[0].startswith(
        f"skipping an unreadable Parquet file: {tmp_path / 'win' / 'part-2.parquet'}: "), \
        out.stderr
    assert "Traceback" not in out.stderr


def test_a_window_of_only_damaged_files_is_refused_naming_the_first_error(
        tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    (tmp_path / "win").mkdir()
    for name in ("a.parquet", "b.parquet"):
        (tmp_path / "win" / name).write_bytes(DAMAGED)
    out = _drift_cli(["--bundle", str(bundle), "--window", str(tmp_path / "win"),
                      "--no-publish", "--evidently", "never"], tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: none of the 2 Parquet files at {tmp_path / 'win'} could be read (first: "
        f"{tmp_path / 'win' / 'a.parquet'}: Parquet magic bytes not found in footer. Either "
        "the file is corrupted or this is not a parquet file.)"], out.stderr
    # one damaged file given alone: its own error, as before
    out = _drift_cli(["--bundle", str(bundle), "--window", str(tmp_path / "win" / "a.parquet"),
                      "--no-publish", "--evidently", "never"], tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().startswith(f"error: {tmp_path / 'win' / 'a.parquet'}: Parquet "
                                         "magic bytes not found"), out.stderr
