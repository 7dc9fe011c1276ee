"""`marquee traffic replay` reads its input as the data layer does (helper M, session 23).

Before, ``--interactions`` / ``--holdout`` took a directory as ``<dir>/interactions.parquet``
only, a ``.csv`` through a bare ``pd.read_csv`` and anything else, a ``.tsv`` too, as Parquet:
the directory of CSV or TSV tables that ``marquee data validate DIR`` and ``marquee pipeline
run --source DIR`` accept ended in "DIR/interactions.parquet: No such file or directory", a TSV
in "Parquet magic bytes not found", and a CSV saved by Excel in Latin-1 or with ``;`` in a
codec error or three missing columns. Now the file is found and read by the data layer
(``find_table_file``, ``read_table_file``), and each problem is one ``error:`` line naming the
file, the column and the value. ``users_from_holdout`` called from Python with a frame casts
its columns the same way: a bad value is a ValueError naming the column, not ``int()``'s.

The command runs as ``python -m marquee.cli`` in a subprocess (its ``main`` maps refusals to
``error:`` lines); the router is a stand-in on 127.0.0.1 that records whom it was asked for.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.replay.users import users_from_holdout
from tests.rollout.test_s23g_replay_input import _recording_router, _replay
from tests.unit.own_tables import tables


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert done.stdout == ""  # refused before any request
    return lines[0]


def _dataset(directory: Path, name: str = "interactions.csv") -> Path:
    """A user's own tables as ``marquee data validate`` accepts them, each user with four
    events (the replay holds out each user's last one); the interactions file as ``name``
    (its suffix picks the separator), the others as CSV."""
    frames = tables(n_items=8)
    frames["interactions"] = pd.DataFrame({
        "user_id": [u for u in (1, 2, 3) for _ in range(4)],
        "item_id": [10, 11, 12, 13, 11, 12, 13, 14, 12, 13, 14, 15],
        "rating": [4.0] * 12, "event": ["rating"] * 12,
        # user 3's events are the earliest, user 1's the latest
        "timestamp": [1_000_000_000 + 100 * (3 - u) + i for u in (1, 2, 3) for i in range(4)]})
    directory.mkdir(parents=True)
    for table, frame in frames.items():
        file = directory / (name if table == "interactions" else f"{table}.csv")
        frame.to_csv(file, index=False, sep="\t" if file.suffix.lower() == ".tsv" else ",")
    return directory


@pytest.mark.parametrize("name", ["interactions.csv", "interactions.tsv", "Interactions.CSV"])
def test_a_directory_data_validate_accepts_is_replayed(tmp_path: Path, name: str) -> None:
    """Before: ``error: DIR/interactions.parquet: No such file or directory``."""
    from marquee.commands.data import app

    directory = _dataset(tmp_path / "data", name)
    validated = CliRunner().invoke(app, ["validate", str(directory)])
    assert validated.exit_code == 0, validated.output  # the same directory, accepted there
    asked: list[int] = []
    with _recording_router(asked) as router:
        done = _replay("--interactions", directory, router, "--requests", "3",
                       "--concurrency", "1")  # asked in the order replayed
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["requests"] == 3 and summary["errors"] == 0, summary
    assert asked == [3, 2, 1], asked  # by their first held-out event: user 3's is the earliest


def test_a_tsv_holdout_file_is_read_as_tab_separated(tmp_path: Path) -> None:
    """Before: ``not a readable Parquet or CSV table: … Parquet magic bytes not found``."""
    holdout = tmp_path / "holdout.tsv"
    holdout.write_text("user_id\titem_id\ttimestamp\n7\t70\t200\n5\t50\t100\n5\t51\t300\n")
    asked: list[int] = []
    with _recording_router(asked) as router:
        done = _replay("--holdout", holdout, router, "--requests", "2", "--concurrency", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert asked == [5, 7], asked  # user 5's first event (100) is the earlier one


@pytest.mark.parametrize(("name", "content", "shown"), [
    # a value that is no id, in a TSV found in the directory
    ("interactions.tsv", b"user_id\titem_id\ttimestamp\n1\t10\t100\n2\tx11\t101\n",
     ["interactions.item_id: integer", "'x11'"]),
    # Excel's "CSV" on Windows: Latin-1 (the title column is not even read by the replay)
    ("interactions.csv", "user_id,item_id,timestamp,title\n1,10,100,Amélie\n".encode("latin-1"),
     ["interactions.csv is not UTF-8 (byte 0xe9 at offset 43, line 2)", "save it as UTF-8"]),
    # European Excel's separator: before, "no column item_id, timestamp, user_id"
    ("interactions.csv", b"user_id;item_id;timestamp\n1;10;100\n",
     ["the separator looks like ';'", "use ',' (.csv) or tab (.tsv)"]),
    # a NUL byte: pandas ends the value at it
    ("interactions.csv", b"user_id,item_id,timestamp\n1,10,100\n2,1\x0001,101\n",
     ["interactions.csv holds a NUL byte (0x00) at offset 38, line 3"]),
])
def test_a_bad_file_in_a_directory_is_one_error_line_naming_it(
        tmp_path: Path, name: str, content: bytes, shown: list[str]) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / name).write_bytes(content)
    line = _one_error_line(_replay("--interactions", directory))
    assert line.startswith(f"error: interactions='{directory / name}': "), line
    for text in shown:
        assert text in line, line


@pytest.mark.parametrize(("files", "shown"), [
    (["interactions.csv.gz"], "interactions: missing file (no interactions{.parquet,.csv,.tsv} "
                              "in {dir}; found interactions.csv.gz: decompress it"),
    (["interactions.csv", "interactions.TSV"], "interactions: ambiguous file (interactions.csv "
                                               "and interactions.TSV both in {dir}: keep one)"),
])
def test_a_directory_without_one_interactions_file_says_what_it_holds(
        tmp_path: Path, files: list[str], shown: str) -> None:
    """Before: ``DIR/interactions.parquet: No such file or directory`` for both."""
    directory = tmp_path / "data"
    directory.mkdir()
    for name in files:
        (directory / name).write_text("user_id,item_id,timestamp\n1,10,100\n")
    line = _one_error_line(_replay("--holdout", directory))
    assert line.startswith(f"error: holdout='{directory}': "), line
    assert shown.replace("{dir}", str(directory)) in line, line


def test_a_nul_byte_in_a_holdout_file_is_refused_not_read_as_another_id(tmp_path: Path) -> None:
    """Before: item "1\\x0001" was read as item 1 (pandas ends a value at a NUL byte), and the
    replay clicked on item 1 for user 2."""
    holdout = tmp_path / "holdout.csv"
    holdout.write_bytes(b"user_id,item_id,timestamp\n1,10,100\n2,1\x0001,101\n")
    line = _one_error_line(_replay("--holdout", holdout))
    assert line.startswith(f"error: holdout='{holdout}': "), line
    assert "holds a NUL byte (0x00) at offset 38, line 3" in line, line


@pytest.mark.parametrize(("frame", "shown"), [
    ({"user_id": ["abc", 2], "item_id": [1, 2], "timestamp": [1, 2]},
     "interactions.user_id: integer"),
    ({"user_id": [1, None], "item_id": [1, 2], "timestamp": [1, 2]},  # was dropped silently
     "interactions.user_id: not null"),
    ({"user_id": [1, 2], "item_id": [1, 2.5], "timestamp": [1, 2]},  # was item 2
     "interactions.item_id: integer"),
    ({"user_id": [1, 2], "item_id": [1, 2], "timestamp": ["2020-01-01", "yesterday"]},
     "interactions.timestamp: parseable timestamp"),
    ({"User_ID": [1], "item_id": [1], "timestamp": [1]},  # was KeyError: 'user_id'
     "no column user_id (it has User_ID, item_id, timestamp); the columns include 'User_ID': "
     "rename it 'user_id'"),
])
def test_a_bad_holdout_frame_from_python_is_a_value_error_naming_the_column(
        frame: dict[str, list[object]], shown: str) -> None:
    with pytest.raises(ValueError) as raised:
        users_from_holdout(pd.DataFrame(frame))
    assert str(raised.value).startswith("holdout: "), raised.value
    assert shown in str(raised.value), raised.value


def test_a_holdout_frame_from_python_reads_times_as_the_contract_does() -> None:
    """Pandas timestamps and ISO text are unix seconds, ids in text are ids. Before: ``int()``
    of a ``Timestamp`` was a TypeError, of "5" a str id kept apart from the int 5."""
    users = users_from_holdout(pd.DataFrame({
        "user_id": ["5", "7", "5"], "item_id": [50, 70, 51],
        "timestamp": pd.to_datetime(["2021-01-01T00:00:00Z", "2020-01-01T00:00:00Z",
                                     "2021-02-01T00:00:00Z"])}))
    assert [(u.user_id, u.future, u.first_ts) for u in users] == [
        (7, frozenset({70}), 1577836800), (5, frozenset({50, 51}), 1609459200)]
