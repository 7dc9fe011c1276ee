"""``Recommender`` on calls an evaluation harness can make (defect hunt s21 C).

Before: a refit that failed (timestamps in milliseconds, a ranker with too little data) left
the new tables next to the old embeddings, so the next ``recommend`` raised ``IndexError`` or
answered from a model that no longer existed; ``recommend`` before ``fit`` raised
``AttributeError: ... 'user_index'``; empty tables fitted "fine" and then failed in the
ranker with a message that named neither, or in ``recommend`` with an ``IndexError``;
``Recommender("")`` / ``Recommender(0)`` silently used the defaults and ``Recommender("x")``
failed later with an ``AttributeError``; datetime or complex ``user_ids`` were turned into
some other user's id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsys import Recommender
from recsys.recommender import NotFittedError
from tests.unit.small_recsys import SMALL, data  # noqa: F401  (the fixture)

PLAIN = {**SMALL, "ranker": {"enabled": False}}


@pytest.fixture(scope="module")
def rec(data):  # noqa: F811
    torch.set_num_threads(1)
    return Recommender(SMALL).fit(data.interactions, data.users, data.items, progress=False)


@pytest.mark.parametrize("bad", ["milliseconds", "ranker-without-data"])
def test_a_refit_that_fails_leaves_the_fitted_model_as_it_was(data, bad):  # noqa: F811
    torch.set_num_threads(1)
    rec = Recommender(SMALL).fit(data.interactions, data.users, data.items, progress=False)
    users = [1, 2, 3, 10_000]
    before = rec.recommend(users, k=5)
    inter, items = data.interactions, data.items[data.items["item_id"] <= 30]
    if bad == "milliseconds":
        inter = inter.assign(timestamp=inter["timestamp"] * 1000)
    else:  # one user of 30 items: the ranker has nothing to learn from
        inter = inter[(inter["user_id"] == 1) & (inter["item_id"] <= 30)]
    with pytest.raises(ValueError):
        rec.fit(inter, data.users, items, progress=False)
    assert len(rec.item_index) == len(data.items)
    pd.testing.assert_frame_equal(rec.recommend(users, k=5), before)


def test_recommend_before_fit_names_the_missing_fit():
    with pytest.raises(NotFittedError, match="not fitted yet.*fit\\("):
        Recommender(SMALL).recommend([1, 2], k=5)
    with pytest.raises(ValueError):  # what the contract promises for a refused call
        Recommender(SMALL).recommend([1], k=5)


@pytest.mark.parametrize("table", ["interactions", "items", "interactions+users"])
@pytest.mark.parametrize("config", [SMALL, PLAIN], ids=["ranker", "no-ranker"])
def test_fit_on_an_empty_table_names_it(data, table, config):  # noqa: F811
    inter, users, items = data.interactions, data.users, data.items
    if table.startswith("interactions"):
        inter = inter.iloc[:0]
    if table.endswith("users"):
        users = users.iloc[:0]
    if table == "items":
        items = items.iloc[:0]
    name = table.split("+")[0]
    with pytest.raises(ValueError, match=f"^{name}: no rows"):
        Recommender(config).fit(inter, users, items, progress=False)


def test_fit_names_interactions_that_match_no_item(data):  # noqa: F811
    items = data.items.assign(item_id=data.items["item_id"] + 10_000)
    with pytest.raises(ValueError, match="interactions: none of the 3000 events is of an item"):
        Recommender(PLAIN).fit(data.interactions, data.users, items, progress=False)


@pytest.mark.parametrize("config", ["", 0, "config.yaml", [("seed", 1)]])
def test_a_config_that_is_not_one_is_refused(config):
    with pytest.raises(TypeError, match="config: expected a RecommenderConfig"):
        Recommender(config)


def test_config_as_a_mapping_or_none_still_works():
    from types import MappingProxyType

    assert Recommender(MappingProxyType({"seed": 7})).config.seed == 7
    assert Recommender(None).config.seed == Recommender().config.seed


@pytest.mark.parametrize("user_ids", [
    np.array(["2020-01-01"], dtype="datetime64[D]"),
    np.array([1], dtype="timedelta64[s]"),
    np.array([1 + 0j]),
], ids=["datetime64", "timedelta64", "complex"])
def test_user_ids_of_a_non_integer_dtype_are_refused(rec, user_ids):
    with pytest.raises(ValueError, match="user_ids: expected integer user ids, got dtype"):
        rec.recommend(user_ids, k=3)


def test_edge_requests_still_answer(rec, data):  # noqa: F811
    n_items = len(data.items)
    out = rec.recommend(pd.Series([1, 1, 10_000], index=[7, 8, 9]), k=n_items + 5,
                        exclude_seen=False)
    assert out.groupby("user_id").size().to_dict() == {1: 2 * n_items, 10_000: n_items}
    assert list(out["rank"][:n_items]) == list(range(1, n_items + 1))
    assert (np.diff(out["score"].to_numpy()[:n_items]) <= 1e-6).all()
