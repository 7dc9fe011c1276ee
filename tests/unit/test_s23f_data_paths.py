"""Three data paths found broken by session 23's helpers (defect hunt s23 F).

Before: ``save`` wrote every column of the item table ``fit`` was given, and a ``title`` (or
any other column) holding text and numbers, or a column named 0, failed in Arrow after a
successful fit ("Could not convert 'T1' with type str: tried to convert to int64"), the fit
lost. A time past 2262 (the 9999-12-31 "no end" placeholder) in an Arrow-backed timestamp or
date column (what pandas reads back from a file written from an Arrow-backed frame) crashed
``marquee data validate`` and the pipeline's ingest with pandas' OutOfBoundsDatetime. Spark's
legacy INT96 timestamps past 2262 wrapped in Arrow's reader: 9999-12-31 was reported as
-4852202632 (1816-03-29), and 2600-06-01 loaded as 2015-11-11, a valid time, in silence.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from marquee.commands.data import app
from recsys import Recommender
from recsys.data.errors import DataValidationError
from tests.unit.own_tables import tables
from tests.unit.small_recsys import SMALL, data  # noqa: F401  (the fixture)
from tests.unit.test_s23c_foreign_files import _ingest

runner = CliRunner()
PLACEHOLDER = 253_402_214_400  # 9999-12-31T00:00:00Z in unix seconds


def _validate(directory: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", str(directory)])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result.exit_code, " ".join(result.output.split())


def _times(seconds: list[int]) -> list[dt.datetime]:
    return [dt.datetime(1970, 1, 1) + dt.timedelta(seconds=s) for s in seconds]


def _write(directory: Path, interactions: pa.Table | pd.DataFrame, **options) -> Path:
    """``interactions`` (an Arrow table, or a frame pandas writes) and the other two tables."""
    directory.mkdir(parents=True)
    if isinstance(interactions, pa.Table):
        pq.write_table(interactions, directory / "interactions.parquet", **options)
    else:
        interactions.to_parquet(directory / "interactions.parquet", index=False)
    for name, frame in tables(n_items=6).items():
        if name != "interactions":
            frame.to_parquet(directory / f"{name}.parquet", index=False)
    return directory


def test_a_model_fitted_on_items_of_mixed_types_saves_and_loads(data, tmp_path) -> None:  # noqa: F811
    """What ``fit`` accepted, ``save`` writes: the item table of the contract (title as text;
    the caller's other columns are no part of the model, nothing reads them back) and the
    loaded model recommends the same lists."""
    torch.set_num_threads(1)
    items = data.items.copy()
    items["title"] = [f"T{i}" if i % 2 else i for i in range(len(items))]  # text and numbers
    items["source"] = [{"db": 1} if i % 2 else 3 for i in range(len(items))]
    items[0] = [1 + 2j] * len(items)  # a column named 0, of complex numbers
    rec = Recommender(SMALL).fit(data.interactions, data.users, items, progress=False)
    rec.save(tmp_path)
    back = Recommender.load(tmp_path)
    assert list(back.items.columns) == ["item_id", "title", "year", "genres"]
    assert back.items["title"].tolist()[:4] == ["0", "T1", "2", "T3"]
    assert back.items["genres"].tolist() == rec.items["genres"].tolist()
    assert rec.items["title"].tolist()[:2] == [0, "T1"]  # the fitted model itself unchanged
    users = rec.users["user_id"].tolist()[:40] + [10**9]
    for stages in ("full", "retrieval"):
        assert back.recommend(users, k=5, stages=stages).equals(
            rec.recommend(users, k=5, stages=stages))


@pytest.mark.parametrize("kind", [pa.timestamp("us"), pa.timestamp("ms", tz="UTC"),
                                  pa.date32()], ids=str)
def test_an_arrow_backed_far_future_time_is_a_range_finding(tmp_path, kind) -> None:
    """A file pandas wrote from an Arrow-backed frame reads back Arrow-backed; pandas turned
    its times into nanoseconds, where 9999-12-31 raised OutOfBoundsDatetime (a traceback)."""
    inter = tables(n_items=6)["interactions"]
    stamps = _times(inter["timestamp"].tolist())
    stamps[2] = dt.datetime(9999, 12, 31)
    column = pd.Series(pd.array(stamps, dtype=pd.ArrowDtype(pa.timestamp("us"))))
    if pa.types.is_date(kind):  # whole days: every other time falls on a midnight
        column = column.dt.floor("D")
    directory = _write(tmp_path / "data", inter.assign(timestamp=column.astype(
        pd.ArrowDtype(kind))))
    code, out = _validate(directory)
    assert code == 1, out
    assert ("interactions.timestamp: timestamp range (unix seconds between 631152000 "
            "(1990-01-01) and now + 1 day") in out
    assert f"1 bad row(s) at data row 3, e.g. [{PLACEHOLDER}]" in out
    with pytest.raises(DataValidationError, match=r"interactions\.timestamp: timestamp range"):
        _ingest(directory, tmp_path)


def test_spark_int96_times_are_read_as_written(tmp_path) -> None:
    """INT96 read in nanoseconds wrapped past 2262: 9999-12-31 was reported as -4852202632
    (1816), 2600-06-01 loaded as 2015-11-11 and passed. In-range INT96 times load exactly."""
    inter = tables(n_items=6)["interactions"]
    seconds = inter["timestamp"].tolist()
    arrow = pa.Table.from_pandas(inter.drop(columns="timestamp"), preserve_index=False)

    stamps = _times(seconds)
    stamps[2], stamps[4] = dt.datetime(9999, 12, 31), dt.datetime(2600, 6, 1)
    far = arrow.append_column("timestamp", pa.array(stamps, pa.timestamp("us")))
    directory = _write(tmp_path / "far", far, use_deprecated_int96_timestamps=True)
    assert pq.ParquetFile(directory / "interactions.parquet").schema.column(4).physical_type \
        == "INT96"
    code, out = _validate(directory)
    assert code == 1, out
    assert "interactions.timestamp: timestamp range" in out
    assert f"2 bad row(s) at data row 3, 5, e.g. [{PLACEHOLDER}, 19893945600]" in out  # 2600
    assert "-4852202632" not in out

    near = arrow.append_column("timestamp", pa.array(_times(seconds), pa.timestamp("us")))
    directory = _write(tmp_path / "near", near, use_deprecated_int96_timestamps=True)
    assert _validate(directory)[0] == 0
    got = _ingest(directory, tmp_path)["interactions"]
    assert sorted(got["timestamp"].tolist()) == sorted(seconds)
