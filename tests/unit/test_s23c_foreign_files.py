"""A user's own tables as other tools write them (Spark, DuckDB, Polars, Hive; spreadsheets and
scripts for CSV), through ``marquee data validate`` and the pipeline's ingest step: the values
written to the contract tables are the values the file holds, or the file is refused naming
the table, column, rule and rows. Before: a ``list<string>`` of genres was refused as
"allowed values" showing numpy reprs; a struct title was loaded as the text "{'a': 1}"; bytes
not in UTF-8 crashed ingest with a UnicodeDecodeError; a Parquet column named twice was an
Arrow error listing internal fields; float32 ids and timestamps loaded already rounded
(1000001000 became 1000001024); an ISO date-time without an offset after one with "+02:00"
was read two hours early; a NUL byte cut a CSV value short ("Am\\x00lie" loaded as "Am")."""

from __future__ import annotations

import decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kfp.dsl import Dataset
from typer.testing import CliRunner

from components.factory import build_components
from marquee.commands.data import app
from recsys.data.files import read_dataset
from tests.unit.own_tables import tables

runner = CliRunner()
C = build_components()


def _tables() -> dict[str, pd.DataFrame]:
    return tables(n_items=6)


def _write(directory: Path, **arrow: pa.Table) -> Path:
    """The tables as pyarrow writes them from pandas, except those given as Arrow tables."""
    directory.mkdir(parents=True)
    for name, frame in _tables().items():
        table = arrow.get(name, pa.Table.from_pandas(frame, preserve_index=False))
        pq.write_table(table, directory / f"{name}.parquet")
    return directory


def _validate(directory: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", str(directory)])
    return result.exit_code, " ".join(result.output.split())


def _ingest(directory: Path, tmp_path: Path) -> dict[str, pd.DataFrame]:
    """The contract tables the pipeline's ingest step writes for ``directory``, read back."""
    out = tmp_path / "out"
    C.ingest.python_func(source=str(directory), home=str(tmp_path / "home"),
                         dataset=Dataset(name="dataset", uri=str(out)))
    return read_dataset(out).tables()


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def test_tables_as_spark_duckdb_and_polars_write_them_are_read_exactly(tmp_path: Path) -> None:
    """Microsecond UTC timestamps, narrow and unsigned ids, decimal ratings, large and
    dictionary-encoded strings, columns in another order with one more, several row groups,
    and genres as a list of names (joined with "|"; before, refused as 'allowed values')."""
    want = _tables()
    inter, users, items = want["interactions"], want["users"], want["items"]
    spark_inter = pa.table({
        "event": pa.array(inter["event"], pa.large_string()).dictionary_encode(),
        "timestamp": pa.array(inter["timestamp"] * 10**6).cast(pa.timestamp("us", tz="UTC")),
        "user_id": pa.array(inter["user_id"], pa.int32()),
        "item_id": pa.array(inter["item_id"], pa.uint32()),
        "rating": pa.array([decimal.Decimal(f"{r:.1f}") for r in inter["rating"]],
                           pa.decimal128(3, 1)),
        "session_id": pa.array(["s1", "s1", "s2", "s2", "s3", "s3"]),
    })
    spark_users = pa.table({
        "user_id": pa.array(users["user_id"], pa.int16()),
        **{c: pa.array(users[c], pa.large_string()) for c in ("age_bucket", "gender", "region")},
        "occupation": pa.array(users["occupation"]).dictionary_encode(),
    })
    spark_items = pa.table({
        "item_id": pa.array(items["item_id"], pa.int64()),
        "title": pa.array(items["title"], pa.large_string()),
        "year": pa.array(items["year"], pa.int16()),
        "genres": pa.array([g.split("|") for g in items["genres"]], pa.list_(pa.string())),
    })
    directory = tmp_path / "spark"
    directory.mkdir()
    pq.write_table(spark_inter, directory / "interactions.parquet", row_group_size=2)
    pq.write_table(spark_users, directory / "users.parquet")
    pq.write_table(spark_items, directory / "items.parquet")

    code, out = _validate(directory)
    assert code == 0, out
    got = _ingest(directory, tmp_path)
    assert got["items"]["genres"].tolist() == ["Action|Comedy", "Romance", "Comedy", "Drama",
                                               "Drama", "unknown"]
    for name, frame in want.items():
        pd.testing.assert_frame_equal(got[name], frame.astype(got[name].dtypes.to_dict()),
                                      check_like=False)
    assert got["interactions"]["rating"].dtype == np.float32
    assert got["interactions"]["timestamp"].tolist() == inter["timestamp"].tolist()


@pytest.mark.parametrize("table,column,values,stored", [
    ("items", "title", pa.array([{"a": 1}] * 6), "struct<a: int64>"),
    ("users", "user_id", pa.array([[1], [2], [3]]), "list<element: int64>"),
    *([("users", "user_id", pa.array([bytes([i]) * 16 for i in (1, 2, 3)], pa.uuid()),
        "extension<arrow.uuid>")] if hasattr(pa, "uuid") else []),  # pyarrow >= 18
    ("interactions", "event", pa.array([["rating"]] * 6), "list<element: string>"),
])
def test_a_column_of_a_type_holding_no_such_value_is_refused_naming_it(
        tmp_path: Path, table: str, column: str, values: pa.Array, stored: str) -> None:
    """A struct title was loaded as its repr "{'a': 1}"; a list of one id was an 'integer'
    finding showing the ids themselves as the bad values."""
    frame = pa.Table.from_pandas(_tables()[table], preserve_index=False)
    directory = _write(tmp_path / "data", **{table: _replace(frame, column, values)})
    code, out = _validate(directory)
    assert code == 1, out
    assert (f"{table}.{column}: column type ({table}.parquet stores {column} as {stored}: "
            "expected") in out
    assert "1 problem(s)" in out, out


def test_text_stored_as_bytes_is_decoded_or_refused_naming_the_rows(tmp_path: Path) -> None:
    """Hive and Impala store text without Parquet's UTF-8 annotation: pandas gets bytes.
    UTF-8 bytes are the text; Latin-1 ones crashed ingest with a UnicodeDecodeError."""
    items = _tables()["items"]
    frame = pa.Table.from_pandas(items, preserve_index=False)
    utf8 = _replace(frame, "title", pa.array([t.encode() for t in items["title"]], pa.binary()))
    got = _ingest(_write(tmp_path / "utf8", items=utf8), tmp_path)
    assert got["items"]["title"].tolist() == items["title"].tolist()  # "Amélie" included

    latin1 = _replace(frame, "title", pa.array([t.encode("latin-1") for t in items["title"]],
                                               pa.binary()))
    code, out = _validate(_write(tmp_path / "latin1", items=latin1))
    assert code == 1, out
    assert ("items.title: encoding (items.parquet stores title as bytes that are not UTF-8 "
            "text: write it as UTF-8 strings); 1 bad row(s) at data row 2, "
            """e.g. ["b'Am\\\\xe9lie'"]""") in out, out


def test_a_parquet_column_named_twice_is_refused_naming_it(tmp_path: Path) -> None:
    """pyarrow writes two columns of one name; reading it was an Arrow error listing
    internal fields (__fragment_index, …) as a 'readable file' finding."""
    frame = pa.Table.from_pandas(_tables()["items"], preserve_index=False)
    twice = frame.append_column("title", pa.array(["old"] * 6))
    code, out = _validate(_write(tmp_path / "data", items=twice))
    assert code == 1, out
    assert "items.title: duplicate column (items.parquet has 2 columns named 'title': " \
           "keep one)" in out
    assert "__fragment_index" not in out


def test_ids_and_timestamps_rounded_by_a_float_type_are_refused(tmp_path: Path) -> None:
    """float32 holds whole numbers exactly only below 2**24: timestamps saved in it were
    loaded rounded (1000001000 as 1000001024), user 16777217 as user 16777216."""
    t = _tables()
    inter = pa.Table.from_pandas(t["interactions"], preserve_index=False)
    inter = _replace(inter, "timestamp",
                     pa.array(t["interactions"]["timestamp"].to_numpy(np.float32)))
    code, out = _validate(_write(tmp_path / "stamps", interactions=inter))
    assert code == 1, out
    assert ("interactions.timestamp: precision (stored as float32, which tells whole numbers "
            "apart only below 2**24 (16777216)") in out
    assert "1000001024.0" in out
    assert "store timestamp as int64 seconds or a timestamp" in out

    big = 16_777_217
    frames = {k: v.copy() for k, v in t.items()}
    frames["users"]["user_id"] = frames["users"]["user_id"].replace(1, big)
    frames["interactions"]["user_id"] = frames["interactions"]["user_id"].replace(1, big)
    users = pa.Table.from_pandas(frames["users"], preserve_index=False)
    users = _replace(users, "user_id", pa.array(frames["users"]["user_id"].to_numpy(np.float32)))
    directory = tmp_path / "ids"
    directory.mkdir()
    pq.write_table(users, directory / "users.parquet")
    for name in ("interactions", "items"):
        frames[name].to_parquet(directory / f"{name}.parquet", index=False)
    code, out = _validate(directory)
    assert code == 1, out
    assert "users.user_id: precision (stored as float32" in out
    assert "at data row 1, e.g. [16777216.0]" in out


def test_iso_times_without_an_offset_are_utc_beside_ones_with_one(tmp_path: Path) -> None:
    """pandas gave a date-time without an offset the offset of the last one before it that
    had one: "2001-09-09T01:03:20" after "…+02:00" was read as 23:03:20 UTC the day before."""
    t = _tables()
    stamps = ["2001-09-09T03:46:40+02:00", "2001-09-09T01:03:20", "2001-09-09 02:20:00Z",
              "2001-09-09", "2001-09-09T01:53:20.000-01:00", "2001-09-09T02:10:00.5"]
    want = [1_000_000_000, 999_997_400, 1_000_002_000, 999_993_600, 1_000_004_000, 1_000_001_400]
    directory = tmp_path / "data"
    directory.mkdir()
    t["interactions"].assign(timestamp=stamps).to_csv(directory / "interactions.csv",
                                                      index=False)
    t["users"].to_csv(directory / "users.csv", index=False)
    t["items"].to_csv(directory / "items.csv", index=False)
    got = _ingest(directory, tmp_path)
    assert got["interactions"]["timestamp"].tolist() == want


@pytest.mark.parametrize("table,data,expected", [
    ("items", "item_id,title,year,genres\n10,A,1995,Action\n11,Am\x00lie,2001,Romance\n"
              "12,B,1990,Comedy\n13,C,1999,Drama\n14,D,1986,Drama\n15,E,0,unknown\n",
     "items: encoding (items.csv holds a NUL byte (0x00) at offset 48, line 3: save it as UTF-8 "
     "text (Excel: 'CSV UTF-8'))"),
    ("interactions", None,
     "interactions: encoding (interactions.csv holds a NUL byte (0x00) at offset 1, line 1; it "
     "looks like UTF-16 without a byte-order mark, Excel's 'Unicode Text': save it as UTF-8"),
])
def test_a_nul_byte_refuses_a_csv_naming_where(tmp_path: Path, table: str, data: str | None,
                                               expected: str) -> None:
    """pandas ends a value at a NUL byte: "Am\\x00lie" was loaded as the title "Am". A file
    saved as UTF-16 without a byte-order mark was 'missing column' five times, naming the
    columns 'u', 'Unnamed: 1', …"""
    directory = tmp_path / "data"
    directory.mkdir()
    for name, frame in _tables().items():
        frame.to_csv(directory / f"{name}.csv", index=False)
    text = data if data is not None else _tables()[table].to_csv(index=False)
    (directory / f"{table}.csv").write_bytes(
        text.encode("utf-8" if data is not None else "utf-16-le"))
    code, out = _validate(directory)
    assert code == 1, out
    assert expected in out, out
    assert "1 problem(s)" in out, out


def test_csv_as_spreadsheets_and_scripts_write_it_is_read_exactly(tmp_path: Path) -> None:
    """A guard of what already held: a UTF-8 byte-order mark, Windows line ends, a quoted
    title holding the separator, ISO times with offsets and blank lines at the end."""
    t = _tables()
    directory = tmp_path / "data"
    directory.mkdir()
    items = t["items"].assign(title=["Bird, The (1980)", 'Say "Hi"', "B", "C", "D", "E"])
    (directory / "items.csv").write_bytes(
        b"\xef\xbb\xbf" + items.to_csv(index=False, lineterminator="\r\n").encode()
        + b"\r\n\r\n")
    offsets = pd.to_datetime(t["interactions"]["timestamp"], unit="s", utc=True) \
        .dt.tz_convert("Europe/Berlin").map(lambda ts: ts.isoformat())
    t["interactions"].assign(timestamp=offsets).to_csv(directory / "interactions.tsv",
                                                       index=False, sep="\t")
    t["users"].to_csv(directory / "users.csv", index=False)
    got = _ingest(directory, tmp_path)
    assert got["items"]["title"].tolist() == items["title"].tolist()
    assert got["interactions"]["timestamp"].tolist() == t["interactions"]["timestamp"].tolist()
    assert "+02:00" in offsets.iloc[0]
