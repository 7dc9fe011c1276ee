"""Contract validation: every broken rule is reported by table, column and rule name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recsys.data import Dataset, DataValidationError
from recsys.data.findings import Finding
from recsys.data.synth import generate
from recsys.data.validate import (
    check_dataset,
    coerce_raw_frame,
    validate_dataset,
    validate_directory,
)

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture()
def good() -> Dataset:
    return generate(40, 30, 400, seed=3)


def _with(ds: Dataset, **tables: pd.DataFrame) -> Dataset:
    return Dataset(**{**ds.tables(), **tables})


def _only(report: list[Finding], table: str, column: str, rule: str) -> Finding:
    hits = [f for f in report if (f.table, f.column, f.rule) == (table, column, rule)]
    assert len(hits) == 1, f"expected one {table}.{column} '{rule}' finding in {report}"
    return hits[0]


def _fail(ds: Dataset) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        validate_dataset(ds, now=NOW)
    return info.value


def test_generated_data_is_valid(good: Dataset) -> None:
    assert check_dataset(good, now=NOW) == []
    validate_dataset(good, now=NOW)  # does not raise


def test_missing_column_is_named(good: Dataset) -> None:
    err = _fail(_with(good, items=good.items.drop(columns=["genres"])))
    finding = _only(err.report, "items", "genres", "missing column")
    assert "items.genres: missing column" in str(err)
    assert "found ['item_id', 'title', 'year']" in finding.detail


def test_negative_and_zero_ids_are_reported_with_examples(good: Dataset) -> None:
    inter = good.interactions.copy()
    inter.loc[[0, 1], "item_id"] = [-7, 0]
    err = _fail(_with(good, interactions=inter))
    finding = _only(err.report, "interactions", "item_id", "positive id")
    assert finding.bad_count == 2 and finding.examples == [-7, 0]
    assert "interactions.item_id: positive id" in str(err)


def test_non_integer_ids_are_reported(good: Dataset) -> None:
    users = good.users.copy()
    users["user_id"] = users["user_id"].astype(object)
    users.loc[0, "user_id"] = "u-17"
    users.loc[1, "user_id"] = 2.5
    err = _fail(_with(good, users=users))
    finding = _only(err.report, "users", "user_id", "integer")
    assert finding.bad_count == 2 and finding.examples == ["u-17", 2.5]
    _only(err.report, "users", "user_id", "dtype")


def test_wrong_dtype_is_reported_even_when_values_are_fine(good: Dataset) -> None:
    inter = good.interactions.astype({"rating": "float64", "event": object})
    err = _fail(_with(good, interactions=inter))
    assert "expected float32, got float64" in _only(err.report, "interactions", "rating",
                                                    "dtype").detail
    assert "expected string, got object" in _only(err.report, "interactions", "event",
                                                  "dtype").detail


def test_value_ranges_events_and_vocabularies(good: Dataset) -> None:
    inter = good.interactions.copy()
    inter.loc[0, "rating"] = 6.5
    inter.loc[1, "timestamp"] = 86_400  # 1970
    inter.loc[2, "timestamp"] = int(NOW) + 3 * 86_400  # the future
    inter.loc[3, "event"] = "purchase"
    users = good.users.copy()
    users.loc[0, "age_bucket"] = "33"
    users.loc[1, "occupation"] = "Engineer"
    items = good.items.copy()
    items.loc[0, "genres"] = "Drama|Space Opera"
    err = _fail(_with(good, interactions=inter, users=users, items=items))
    assert _only(err.report, "interactions", "rating", "rating range").examples == [6.5]
    assert _only(err.report, "interactions", "timestamp", "timestamp range").bad_count == 2
    assert _only(err.report, "interactions", "event", "allowed values").examples == ["purchase"]
    assert _only(err.report, "users", "age_bucket", "allowed values").examples == ["33"]
    assert _only(err.report, "users", "occupation", "lower case").examples == ["Engineer"]
    assert _only(err.report, "items", "genres", "allowed values").examples == [
        "Drama|Space Opera"]


def test_duplicate_rows_and_duplicate_keys(good: Dataset) -> None:
    inter = pd.concat([good.interactions, good.interactions.iloc[[5, 6]]], ignore_index=True)
    users = pd.concat([good.users, good.users.iloc[[0]]], ignore_index=True)
    err = _fail(_with(good, interactions=inter, users=users))
    dup = _only(err.report, "interactions", "*", "duplicate rows")
    row = good.interactions.iloc[5]
    assert dup.bad_count == 2
    assert f"user_id={row.user_id}, item_id={row.item_id}, timestamp={row.timestamp}" in \
        dup.examples[0]
    assert _only(err.report, "users", "user_id", "unique key").examples == [1]
    assert "interactions: duplicate rows (same user_id, item_id, timestamp, event)" in str(err)


def test_unknown_users_and_items_are_reported(good: Dataset) -> None:
    inter = good.interactions.copy()
    inter.loc[0, "user_id"] = 9_999
    inter.loc[1, "item_id"] = 8_888
    err = _fail(_with(good, interactions=inter))
    assert _only(err.report, "interactions", "user_id", "known user").examples == [9_999]
    assert _only(err.report, "interactions", "item_id", "known item").examples == [8_888]


def test_empty_table_is_reported(good: Dataset) -> None:
    err = _fail(_with(good, items=good.items.iloc[0:0]))
    _only(err.report, "items", "*", "non-empty")
    _only(err.report, "interactions", "item_id", "known item")


def test_report_keeps_at_most_five_examples(good: Dataset) -> None:
    inter = good.interactions.copy()
    inter.loc[:19, "rating"] = [6.0 + i for i in range(20)]
    finding = _only(_fail(_with(good, interactions=inter)).report, "interactions", "rating",
                    "rating range")
    assert finding.bad_count == 20 and len(finding.examples) == 5


# --- raw external files -----------------------------------------------------------------------


def test_coerce_raw_frame_parses_text_ids_and_iso_timestamps() -> None:
    raw = pd.DataFrame({"user_id": ["1", "2"], "item_id": ["10", "11.0"], "rating": ["4", "0"],
                        "timestamp": ["2020-01-01T00:00:00Z", "1577836801"],
                        "event": ["rating", "click"]})
    out = coerce_raw_frame(raw, "interactions")
    assert out["timestamp"].tolist() == [1_577_836_800, 1_577_836_801]
    assert [str(t) for t in out.dtypes] == ["int64", "int64", "float32", "int64", "string"]


def test_coerce_raw_frame_reports_unparseable_timestamps_instead_of_crashing() -> None:
    raw = pd.DataFrame({"user_id": ["1", "2", "x"], "item_id": [1, 2, 3],
                        "rating": [1.0, 2.0, 3.0], "timestamp": ["yesterday", "12/31/99 noon",
                                                                 "1577836800"],
                        "event": ["rating"] * 3})
    with pytest.raises(DataValidationError) as info:
        coerce_raw_frame(raw, "interactions")
    ts = _only(info.value.report, "interactions", "timestamp", "parseable timestamp")
    assert ts.examples == ["yesterday", "12/31/99 noon"]
    assert _only(info.value.report, "interactions", "user_id", "integer").examples == ["x"]
    assert "interactions.timestamp: parseable timestamp" in str(info.value)


def _write_tables(ds: Dataset, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    ds.interactions.to_csv(directory / "interactions.csv", index=False)
    ds.users.to_parquet(directory / "users.parquet", index=False)
    ds.items.to_csv(directory / "items.csv", index=False)
    return directory


def test_validate_directory_round_trips_a_good_dataset(good: Dataset, tmp_path: Path) -> None:
    out = validate_directory(_write_tables(good, tmp_path), now=NOW)
    assert out.fingerprint() == good.fingerprint()


def test_validate_directory_reports_empty_files_and_bad_cells_together(
        good: Dataset, tmp_path: Path) -> None:
    directory = _write_tables(good, tmp_path)
    (directory / "items.csv").write_text("")
    text = (directory / "interactions.csv").read_text().splitlines()
    cells = text[1].split(",")
    cells[3] = "not-a-time"
    text[1] = ",".join(cells)
    text.append(text[2])  # a duplicate row
    (directory / "interactions.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DataValidationError) as info:
        validate_directory(directory, now=NOW)
    report = info.value.report
    assert "items.csv is empty" in _only(report, "items", "*", "empty file").detail
    assert _only(report, "interactions", "timestamp", "parseable timestamp").examples == [
        "not-a-time"]
    _only(report, "interactions", "*", "duplicate rows")
    assert not any(f.column == "timestamp" and f.rule == "dtype" for f in report)


def test_header_only_file_is_an_empty_table(good: Dataset, tmp_path: Path) -> None:
    directory = _write_tables(good, tmp_path)
    (directory / "users.parquet").unlink()
    (directory / "users.csv").write_text("user_id,age_bucket,gender,occupation,region\n")
    with pytest.raises(DataValidationError) as info:
        validate_directory(directory, now=NOW)
    _only(info.value.report, "users", "*", "non-empty")
    assert _only(info.value.report, "interactions", "user_id", "known user").bad_count == len(
        good.interactions)
