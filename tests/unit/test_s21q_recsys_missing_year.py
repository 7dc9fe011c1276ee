"""A missing release year, ``<NA>`` in a nullable ``Int64`` column or NaN in a float one, is
the contract's unknown year 0 everywhere ``fit`` and ``recommend`` use years: the year
buckets, the request and ranker features and the re-ranking's freshness (session 21,
helper Q)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from recsys.recommender import Recommender
from tests.unit.small_recsys import SMALL, data  # noqa: F401 - fixture

MISSING = [0, 3, 7, 11, 20, 33]
CONFIG = {**SMALL, "rerank": {"freshness": 0.5}}


def _fit(data, year: pd.Series) -> Recommender:  # noqa: F811
    items = data.items.assign(year=year)
    return Recommender(CONFIG).fit(data.interactions, data.users, items, progress=False)


@pytest.fixture(scope="module")
def with_zero(data):  # noqa: F811
    year = data.items["year"].copy()
    year.iloc[MISSING] = 0
    return _fit(data, year)


@pytest.mark.parametrize("dtype", ["Int64", "float64"])
def test_missing_years_fit_and_recommend_as_year_zero(data, with_zero, dtype) -> None:  # noqa: F811
    year = data.items["year"].astype(dtype)
    year.iloc[MISSING] = pd.NA if dtype == "Int64" else np.nan
    rec = _fit(data, year)
    assert np.isfinite(rec.feature_ctx.years).all()
    np.testing.assert_array_equal(rec.feature_ctx.years, with_zero.feature_ctx.years)
    np.testing.assert_array_equal(rec.model.item_year.numpy(), with_zero.model.item_year.numpy())
    np.testing.assert_array_equal(rec.rank_ctx.years, with_zero.rank_ctx.years)  # item_year
    users = data.users["user_id"].tolist()[:40]
    got = rec.recommend(users, k=10)
    assert len(got) == 400 and np.isfinite(got["score"].to_numpy()).all()
    pdt.assert_frame_equal(got, with_zero.recommend(users, k=10))
