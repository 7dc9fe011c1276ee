"""Schema vocabularies and the dataset fingerprint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from recsys.data import AGE_BUCKETS, GENRES, Dataset, read_dataset, write_dataset
from recsys.data.synth import generate

REPO = Path(__file__).resolve().parents[2]


def test_vocabularies_match_the_contract() -> None:
    assert GENRES == ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
                      "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
                      "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
    assert AGE_BUCKETS == ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+", "unknown")


def test_fingerprint_ignores_row_order_and_survives_parquet(tmp_path: Path) -> None:
    ds = generate(200, 50, 2_000, seed=3)
    shuffled = Dataset(ds.interactions.sample(frac=1.0, random_state=0),
                       ds.users.iloc[::-1], ds.items.sample(frac=1.0, random_state=1))
    assert shuffled.fingerprint() == ds.fingerprint()
    write_dataset(ds, tmp_path)
    assert read_dataset(tmp_path).fingerprint() == ds.fingerprint()
    assert len(ds.fingerprint()) == 64


def test_fingerprint_changes_with_any_value_or_dtype() -> None:
    ds = generate(200, 50, 2_000, seed=3)
    base = ds.fingerprint()
    inter = ds.interactions.copy()
    inter.loc[0, "rating"] = inter.loc[0, "rating"] + 1
    assert Dataset(inter, ds.users, ds.items).fingerprint() != base
    items = ds.items.copy()
    items.loc[3, "title"] = items.loc[3, "title"] + "!"
    assert Dataset(ds.interactions, ds.users, items).fingerprint() != base
    as_float = ds.interactions.astype({"timestamp": "float64"})
    assert Dataset(as_float, ds.users, ds.items).fingerprint() != base


def test_fingerprint_is_stable_across_processes() -> None:
    code = ("from recsys.data.synth import generate; "
            "print(generate(200, 50, 2_000, seed=3).fingerprint())")
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, cwd=REPO, check=True)
        digests.add(out.stdout.strip())
    assert digests == {generate(200, 50, 2_000, seed=3).fingerprint()}


def test_conformed_casts_to_contract_dtypes() -> None:
    ds = generate(20, 10, 100, seed=1)
    loose = Dataset(ds.interactions.astype({"user_id": "int32", "event": object}),
                    ds.users.astype({"gender": object}), ds.items)
    fixed = loose.conformed()
    assert fixed.interactions["user_id"].dtype == "int64"
    assert isinstance(fixed.interactions["event"].dtype, pd.StringDtype)
    assert fixed.fingerprint() == ds.fingerprint()
