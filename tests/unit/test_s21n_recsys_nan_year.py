"""A missing release year (NaN in a float ``year`` column) is an unknown year, said so
explicitly: no numpy "invalid value encountered in cast" warning (session 21, helper N)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from recsys.recommender import YEAR_BUCKETS, Recommender, year_buckets
from tests.unit.small_recsys import SMALL, data  # noqa: F401 - fixture


def test_fit_with_missing_years_is_silent_and_buckets_them_as_unknown(data) -> None:  # noqa: F811
    items = data.items.copy()
    items["year"] = items["year"].astype("float64")
    missing = items.index[[0, 3, 7]]
    items.loc[missing, "year"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rec = Recommender(SMALL).fit(data.interactions, data.users, items, progress=False)
    rows = rec.item_index.lookup(items["item_id"].to_numpy())
    item_year = rec.model.item_year.numpy()[rows]
    assert (item_year[[0, 3, 7]] == 0).all()  # unknown, like the contract's year 0
    known = items["year"].notna().to_numpy() & (items["year"].fillna(0).to_numpy() > 0)
    assert (item_year[known] >= 1).all() and (item_year[known] < YEAR_BUCKETS).all()


def test_year_buckets_treats_non_finite_and_non_positive_years_as_unknown() -> None:
    years = np.array([np.nan, np.inf, -np.inf, 0.0, -3.0, 1919.0, 1920.0, 1995.0, 1e300])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = year_buckets(years)
    assert got.tolist() == [0, 0, 0, 0, 0, 1, 1, 16, YEAR_BUCKETS - 1]
    ints = pd.Series([0, 1920, 1995, 2100], dtype="int64").to_numpy()
    assert year_buckets(ints).tolist() == [0, 1, 16, YEAR_BUCKETS - 1]
