"""A user's own tables as spreadsheets and Spark save them, through ``marquee data validate``:
each of these files was refused before too, but with a message that gave no hint of the cause
(a raw ``UnicodeDecodeError``, five "missing column" findings for a ``;``-separated file,
"missing column user_id" beside a column ``User_ID``, "missing file" beside
``interactions.csv.gz``, a bare "timestamp range" for milliseconds). Now the finding says what
was seen and what to change; the file is still refused, nothing is guessed. A file name that
differs from the contract only by case (``Interactions.CSV``) is read, as a case-insensitive
file system (macOS, Windows) already did."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from marquee.commands.data import app
from tests.unit.own_tables import tables, write_csv

runner = CliRunner()


def _write(directory: Path, **frames: pd.DataFrame) -> Path:
    """Good CSV tables, with the frames given replacing the good ones."""
    return write_csv(directory, {**tables(), **frames})


def _validate(directory: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", str(directory)])
    return result.exit_code, " ".join(result.output.split())  # the console wraps long lines


@pytest.mark.parametrize("encoding,expected", [
    ("latin-1", "items.csv is not UTF-8 (byte 0xe9 at offset 68, line 3): save it as UTF-8"),
    ("utf-16", "items.csv is not UTF-8 (byte 0xff at offset 0, line 1; it starts like "
               "UTF-16, Excel's 'Unicode Text'): save it as UTF-8"),
])
def test_a_file_not_in_utf8_is_refused_saying_so(tmp_path: Path, encoding: str,
                                                 expected: str) -> None:
    """Excel on Windows saves "Amélie" as Latin-1 (0xe9) or, as "Unicode Text", UTF-16.
    Before: ``readable file (items.csv: UnicodeDecodeError: 'utf-8' codec can't decode byte
    0xe9 in position 68: invalid continuation byte)``."""
    directory = _write(tmp_path / "data")
    text = tables()["items"].to_csv(index=False)
    (directory / "items.csv").write_bytes(text.encode(encoding))
    code, out = _validate(directory)
    assert code == 1, out
    assert f"items: encoding ({expected} (Excel: 'CSV UTF-8'))" in out, out
    assert "UnicodeDecodeError" not in out


@pytest.mark.parametrize("suffix,sep,expected", [
    (".csv", ";", "the header of interactions.csv is one column "
                  "'user_id;item_id;rating;timestamp;event': the separator looks like ';', "
                  "use ',' (.csv) or tab (.tsv)"),
    (".csv", "\t", "the separator looks like tab, name the file interactions.tsv"),
    (".tsv", ",", "the separator looks like ',', name the file interactions.csv"),
])
def test_a_file_with_another_separator_is_one_finding_naming_it(
        tmp_path: Path, suffix: str, sep: str, expected: str) -> None:
    """European Excel writes ``;``. Before: five "missing column" findings, one per column,
    each listing the single column ``user_id;item_id;…``."""
    directory = _write(tmp_path / "data")
    (directory / "interactions.csv").unlink()
    tables()["interactions"].to_csv(directory / f"interactions{suffix}", index=False, sep=sep)
    code, out = _validate(directory)
    assert code == 1, out
    assert "1 problem(s)" in out, out
    assert "interactions: separator (" in out and expected in out, out
    assert "missing column" not in out


@pytest.mark.parametrize("header,seen", [
    ("User_ID", "User_ID"), (" user_id", " user_id"), ("UserID", "UserID"),
    ("user id", "user id")])
def test_a_column_named_in_another_case_is_refused_naming_the_file_s_name(
        tmp_path: Path, header: str, seen: str) -> None:
    """Before: "missing column" with the expected and found lists, the difference left to
    the eye (a leading space is invisible there)."""
    inter = tables()["interactions"].rename(columns={"user_id": header})
    code, out = _validate(_write(tmp_path / "data", interactions=inter))
    assert code == 1, out
    assert (f"interactions.user_id: missing column (the columns include {seen!r}: rename it "
            "'user_id' (names are lower case, exactly as listed))") in out, out


@pytest.mark.parametrize("found,expected", [
    ("interactions.csv.gz", "found interactions.csv.gz: decompress it (plain .parquet, .csv "
                            "or .tsv)"),
    ("interactions.zip", "found interactions.zip: decompress it"),
    ("interactions.xlsx", "found interactions.xlsx: save it as .parquet, .csv or .tsv"),
    ("interactions.parquet/", "found interactions.parquet/, a directory (Spark writes one "
                              "part file per task): write the table as one file"),
])
def test_a_table_in_a_file_not_read_is_refused_naming_that_file(
        tmp_path: Path, found: str, expected: str) -> None:
    """Before: "missing file (no interactions{.parquet,.csv,.tsv} in …)", as if the directory
    held nothing for the table."""
    directory = _write(tmp_path / "data")
    plain = directory / "interactions.csv"
    if found.endswith("/"):
        (directory / found).mkdir()
        tables()["interactions"].to_parquet(directory / found / "part-00000.snappy.parquet")
        (directory / found / "_SUCCESS").touch()
    elif found.endswith(".gz"):
        (directory / found).write_bytes(gzip.compress(plain.read_bytes()))
    else:
        (directory / found).write_bytes(b"PK\x03\x04")
    plain.unlink()
    code, out = _validate(directory)
    assert code == 1, out
    assert "interactions: missing file" in out and expected in out, out


@pytest.mark.parametrize("name", ["Interactions.CSV", "interactions.Csv", "INTERACTIONS.csv"])
def test_a_file_name_in_another_case_is_read(tmp_path: Path, name: str) -> None:
    """Windows exports end in ``.CSV``; a case-insensitive file system (the user's laptop)
    found such a file and the cluster's Linux did not. Before: "missing file". A second file
    for the same table is still "ambiguous file"."""
    directory = _write(tmp_path / "data")
    (directory / "interactions.csv").rename(directory / name)
    code, out = _validate(directory)
    assert code == 0, out
    tables()["interactions"].to_csv(directory / "interactions.tsv", index=False, sep="\t")
    code, out = _validate(directory)
    assert code == 1 and "interactions: ambiguous file" in out and name in out, out


@pytest.mark.parametrize("factor,unit", [(1000, "milliseconds: divide by 1000"),
                                         (1_000_000, "microseconds: divide by 1000000")])
def test_timestamps_in_milliseconds_are_refused_saying_so(tmp_path: Path, factor: int,
                                                          unit: str) -> None:
    """Java and JavaScript clocks count milliseconds. Before: "timestamp range (unix seconds
    between …)" with 13-digit examples and no word on why."""
    inter = tables()["interactions"]
    inter["timestamp"] *= factor
    code, out = _validate(_write(tmp_path / "data", interactions=inter))
    assert code == 1, out
    assert "interactions.timestamp: timestamp range" in out
    assert f"the values look like {unit}" in out, out


def test_seconds_out_of_range_get_no_unit_hint(tmp_path: Path) -> None:
    """The hint is only given when every bad value, so divided, is a time in range."""
    inter = tables()["interactions"]
    inter.loc[0, "timestamp"] = 12
    code, out = _validate(_write(tmp_path / "data", interactions=inter))
    assert code == 1 and "timestamp range" in out, out
    assert "look like" not in out, out
