"""Ingest coarsens personal data: buckets and regions out, raw age and zip code never."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.data import AGE_BUCKETS, INTERACTIONS, ITEMS, USERS, RawDataset, ingest
from recsys.data.ingest import age_bucket, zip_region
from recsys.data.validate import check_dataset


@pytest.fixture()
def raw() -> RawDataset:
    users = pd.DataFrame({
        "user_id": [1, 2, 3, 4, 5, 6],
        "age": [7, 18, 33, 56, 0, 45],
        "gender": ["M", "f", "F", "", "x", "M"],
        "occupation": ["Technician", "student", None, "writer", "none", "  Artist "],
        "zip_code": ["85711", "T8H1N", "", "02139-4307", None, "E2A4H"],
    }).astype({"gender": "string", "occupation": "string", "zip_code": "string"})
    interactions = pd.DataFrame({"user_id": [1, 2, 6], "item_id": [1, 1, 2],
                                 "rating": pd.array([5, 3, 1], dtype="float32"),
                                 "timestamp": [874965758, 874965759, 874965760]})
    items = pd.DataFrame({"item_id": [1, 2], "title": ["Toy Story", "GoldenEye"],
                          "year": [1995, 1995],
                          "genres": ["Animation|Children's|Comedy", "Action"]}).astype(
        {"title": "string", "genres": "string"})
    return RawDataset(interactions, users, items)


def test_ingest_never_outputs_raw_age_or_zip(raw: RawDataset) -> None:
    ds = ingest(raw)
    for frame in ds.tables().values():
        assert "age" not in frame.columns and "zip_code" not in frame.columns
    raw_values = set(raw.users["zip_code"].dropna()) - {""}
    assert not raw_values & set(ds.users.astype(str).to_numpy().ravel())


def test_ingest_produces_contract_columns_and_dtypes(raw: RawDataset) -> None:
    ds = ingest(raw)
    for frame, spec in ((ds.interactions, INTERACTIONS), (ds.users, USERS), (ds.items, ITEMS)):
        assert list(frame.columns) == spec.names
        for column in spec.columns:
            expected = column.dtype
            assert frame[column.name].dtype == expected, column.name
    assert ds.interactions["event"].tolist() == ["rating"] * 3
    assert check_dataset(ds) == []


def test_users_are_coarsened(raw: RawDataset) -> None:
    users = ingest(raw).users.set_index("user_id")
    assert users["age_bucket"].tolist() == ["<18", "18-24", "25-34", "56+", "unknown", "45-49"]
    assert users["region"].tolist() == ["US-8", "non-US", "unknown", "US-0", "unknown", "non-US"]
    assert users["gender"].tolist() == ["M", "F", "F", "U", "U", "M"]
    assert users["occupation"].tolist() == ["technician", "student", "unknown", "writer", "none",
                                            "artist"]


@pytest.mark.parametrize(("age", "bucket"), [
    (1, "<18"), (17, "<18"), (18, "18-24"), (24, "18-24"), (25, "25-34"), (34, "25-34"),
    (35, "35-44"), (45, "45-49"), (49, "45-49"), (50, "50-55"), (55, "50-55"), (56, "56+"),
    (99, "56+"), (0, "unknown"), (-3, "unknown"), (None, "unknown"), ("n/a", "unknown"),
])
def test_age_bucket_edges(age: object, bucket: str) -> None:
    assert age_bucket(pd.Series([age], dtype=object)).tolist() == [bucket]
    assert bucket in AGE_BUCKETS


@pytest.mark.parametrize(("zip_code", "region"), [
    ("55455", "US-5"), ("00501", "US-0"), ("98101-1234", "US-9"), ("K7L5J", "non-US"),
    ("V3N 4P2", "non-US"), ("", "unknown"), (None, "unknown"),
])
def test_zip_region(zip_code: str | None, region: str) -> None:
    assert zip_region(pd.Series([zip_code], dtype=object)).tolist() == [region]
