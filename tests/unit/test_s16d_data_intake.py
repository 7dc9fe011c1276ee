"""A user's own dataset through ``marquee data`` (the real entry point, in its own process):
a bad dataset fails with an error that names what was wrong, a good one is not refused, and a
bad copy loses nothing already stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recsys.data.validate import validate_directory
from tests.unit.own_tables import tables, write_csv


def _marquee(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MARQUEE_HOME": str(home), "COLUMNS": "80"}
    return subprocess.run([str(Path(sys.executable).parent / "marquee"), *args],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


def _tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    t = tables()
    return t["interactions"], t["users"], t["items"]


def _write_csv(directory: Path, inter: pd.DataFrame, users: pd.DataFrame,
               items: pd.DataFrame) -> Path:
    return write_csv(directory, {"interactions": inter, "users": users, "items": items})


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_parquet_timestamps_in_milli_or_microseconds_are_read_as_those_instants(
        tmp_path: Path, unit: str) -> None:
    """pyarrow reads a Parquet timestamp column in the unit it was written in (ms from pandas
    and pyarrow, us from Spark, DuckDB, Polars); before, its integer value was divided by 1e9
    as if nanoseconds, and every event became 2001 / 1e6 seconds: 'timestamp range'."""
    inter, users, items = _tables()
    directory = tmp_path / "events"
    directory.mkdir()
    stamps = pd.to_datetime(inter["timestamp"], unit="s").astype(f"datetime64[{unit}]")
    inter.assign(timestamp=stamps).to_parquet(directory / "interactions.parquet", index=False)
    aware = inter.assign(timestamp=stamps.dt.tz_localize("UTC").dt.tz_convert("Europe/Paris"))
    users.to_parquet(directory / "users.parquet", index=False)
    items.to_parquet(directory / "items.parquet", index=False)
    result = _marquee("data", "validate", str(directory), home=tmp_path / "home")
    assert result.returncode == 0, result.stdout + result.stderr
    assert validate_directory(directory).interactions["timestamp"].tolist() == \
        inter["timestamp"].tolist()
    aware.to_parquet(directory / "interactions.parquet", index=False)
    assert validate_directory(directory).interactions["timestamp"].tolist() == \
        inter["timestamp"].tolist()


def _bad_events(tmp_path: Path) -> subprocess.CompletedProcess:
    inter, users, items = _tables()
    inter = inter.astype({"user_id": object, "rating": object})
    inter.loc[1, "user_id"] = "x"
    inter.loc[3, "user_id"] = -2
    inter.loc[4, "rating"] = None
    directory = _write_csv(tmp_path / "events", inter, users, items)
    result = _marquee("data", "validate", str(directory), home=tmp_path / "home")
    assert result.returncode == 1
    return result


def test_validate_reports_every_problem_of_a_column(tmp_path: Path) -> None:
    """A column with an unparseable id also holding a negative one: both are reported (before,
    the coercion finding hid every other rule of that column, so the user fixed 'x' and met
    -2 on the next run); a missing value is 'not null' without a made-up 'dtype' finding over
    every row (before: 'dtype (expected float32, got Float32); 6 bad row(s)')."""
    result = _bad_events(tmp_path)
    out = result.stdout
    assert "interactions.user_id: integer" in out
    assert "interactions.user_id: positive id" in out
    assert "interactions.rating: not null;" in out
    assert "dtype" not in out
    assert result.stderr.strip().endswith("data validation failed: 4 problem(s)")


def test_validate_names_the_rows_of_each_problem(tmp_path: Path) -> None:
    """A 'not null' finding said 'e.g. [None]': nothing to find the row by in a large file."""
    out = _bad_events(tmp_path).stdout
    assert "interactions.user_id: integer" in out and "at data row 2, e.g. ['x']" in out
    assert "at data row 4, e.g. [-2]" in out
    assert "interactions.rating: not null; 1 bad row(s) at data row 5" in out


def test_validate_prints_the_whole_fingerprint_to_a_pipe(tmp_path: Path) -> None:
    """Piped (a CI log, '| tee'), the console is 80 columns wide: the fingerprint sat in a
    table cell and was cut to '390f1172…', so it could not be compared with a model's
    data_fingerprint tag."""
    directory = _write_csv(tmp_path / "events", *_tables())
    result = _marquee("data", "validate", str(directory), home=tmp_path / "home")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"fingerprint: {validate_directory(directory).fingerprint()}" in result.stdout


def _grouplens(directory: Path, extra_rating: str = "") -> Path:
    directory.mkdir(parents=True)
    (directory / "u.data").write_text(
        "1\t10\t4\t881250949\n2\t11\t3\t881250950\n1\t11\t5\t881250951\n" + extra_rating)
    (directory / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    off = "|".join(["0"] * 18)
    (directory / "u.item").write_bytes(
        f"10|Toy Story (1995)|01-Jan-1995||http://x|{off}|1\n"
        f"11|Amélie (2001)|01-Jan-2001||http://x|1|{off}\n".encode("latin-1"))
    return directory


def test_fetching_a_bad_copy_keeps_the_good_cached_one(tmp_path: Path) -> None:
    """The cache is what the pipeline's 'movielens-100k' source trains on. A copy whose
    ingested tables break the contract (a rating of 9) was written over the good cache before
    it was validated: the command failed, and every later 'pipeline run' failed too."""
    home = tmp_path / "home"
    good = _grouplens(tmp_path / "good")
    assert _marquee("data", "fetch", "movielens-100k", "--source", str(good),
                    home=home).returncode == 0
    cache = home / "data" / "movielens-100k" / "movielens-100k"
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    bad = _grouplens(tmp_path / "bad", "1\t10\t9\t881250999\n")
    result = _marquee("data", "fetch", "movielens-100k", "--source", str(bad), home=home)
    assert result.returncode == 1
    assert "interactions.rating: rating range" in result.stderr
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before
    assert json.loads((cache / "fetch.json").read_text())["source"] == str(good.resolve())


@pytest.mark.parametrize(("extra", "file_text", "message"), [
    ("1\t10\tfour\t881250999\n", None, "ratings rating: non-numeric values ['four']"),
    ("1.5\t10\t4\t881250999\n", None, "ratings user_id: values that are not whole numbers "
                                      "['1.5']"),
    ("1\t10\t4\t881250999\t7\n", None, "u.data is not readable"),
    ("", "", "u.data is empty"),
])
def test_a_broken_movielens_copy_is_one_error_line_naming_file_and_value(
        tmp_path: Path, extra: str, file_text: str | None, message: str) -> None:
    """Before: a ValueError / EmptyDataError / ParserError traceback from pandas, and a user id
    of 1.5 was silently trained as user 1."""
    source = _grouplens(tmp_path / "src", extra)
    if file_text is not None:
        (source / "u.data").write_text(file_text)
    result = _marquee("data", "fetch", "movielens-100k", "--source", str(source),
                      home=tmp_path / "home")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_a_table_in_two_files_is_refused_naming_both(tmp_path: Path) -> None:
    """``interactions.parquet`` beside ``interactions.csv`` (``data synth --out`` into a folder
    of the user's CSVs makes this): before, the Parquet file was read and the CSV ignored,
    without a word."""
    inter, users, items = _tables()
    directory = _write_csv(tmp_path / "events", inter, users, items)
    inter.iloc[:2].to_parquet(directory / "interactions.parquet", index=False)
    done = _marquee("data", "validate", str(directory), home=tmp_path / "home")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ambiguous file" in done.stdout
    assert "interactions.parquet and interactions.csv" in " ".join(done.stdout.split())
    (directory / "interactions.parquet").unlink()
    assert _marquee("data", "validate", str(directory), home=tmp_path / "home").returncode == 0

