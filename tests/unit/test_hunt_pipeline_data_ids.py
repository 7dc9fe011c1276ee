"""64-bit ids (an event system's user ids, ~1e18) survive ingest exactly. Before: every integer
column went through float64, which holds integers exactly only up to 2**53; ids above were
rounded to the nearest double, so the model knew each user under an id the product never
sends (everyone served as a cold-start user), and ids less than ~256 apart merged (reported as
a duplicate ``user_id`` the file does not have)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kfp.dsl import Dataset

from components.factory import build_components
from recsys.data.errors import DataValidationError
from recsys.data.synth import generate
from recsys.data.validate import validate_directory

C = build_components()
BIG = np.random.default_rng(0).integers(10**18, 9 * 10**18, size=40, dtype=np.int64) | 1


def _write(directory: Path, fmt: str, user_ids: np.ndarray) -> pd.DataFrame:
    ds = generate(40, 25, 400, seed=3)
    mapping = dict(zip(ds.users["user_id"].to_numpy(), user_ids, strict=True))
    users = ds.users.assign(user_id=ds.users["user_id"].map(mapping).astype("int64"))
    inter = ds.interactions.assign(
        user_id=ds.interactions["user_id"].map(mapping).astype("int64"))
    directory.mkdir(parents=True)
    for name, frame in (("interactions", inter), ("users", users), ("items", ds.items)):
        if fmt == "csv":
            frame.to_csv(directory / f"{name}.csv", index=False)
        else:
            frame.to_parquet(directory / f"{name}.parquet", index=False)
    return users


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_ids_above_two_to_the_53_are_kept_exactly(tmp_path: Path, fmt: str) -> None:
    users = _write(tmp_path / "data", fmt, BIG)
    out = validate_directory(tmp_path / "data")
    assert sorted(out.users["user_id"]) == sorted(users["user_id"])
    assert set(out.interactions["user_id"]) <= set(users["user_id"])
    assert out.users["user_id"].dtype == "int64"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_neighbouring_64_bit_ids_stay_distinct(tmp_path: Path, fmt: str) -> None:
    ids = np.arange(1, 41, dtype=np.int64) + 1_500_000_000_000_000_000
    _write(tmp_path / "data", fmt, ids)
    out = validate_directory(tmp_path / "data")  # before: "user_id must be unique", 40 rows
    assert sorted(out.users["user_id"]) == ids.tolist()


def test_the_ingest_step_writes_the_ids_it_read(tmp_path: Path) -> None:
    users = _write(tmp_path / "data", "csv", BIG)
    dataset = Dataset(name="dataset", uri=str(tmp_path / "dataset"))
    C.ingest.python_func(source=str(tmp_path / "data"), dataset=dataset,
                         home=str(tmp_path / "home"))
    written = pd.read_parquet(Path(dataset.path) / "users.parquet")
    assert sorted(written["user_id"]) == sorted(users["user_id"])


def test_an_id_beyond_int64_is_named_not_wrapped(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    _write(directory, "csv", np.arange(1, 41, dtype=np.int64))
    users = pd.read_csv(directory / "users.csv", dtype=str)
    users.loc[0, "user_id"] = "18446744073709551615"
    users.to_csv(directory / "users.csv", index=False)
    with pytest.raises(DataValidationError) as caught:
        validate_directory(directory)
    finding = next(f for f in caught.value.report
                   if (f.table, f.column, f.rule) == ("users", "user_id", "integer"))
    assert finding.examples == ["18446744073709551615"]
