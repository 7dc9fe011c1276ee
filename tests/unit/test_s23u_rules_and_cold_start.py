"""``Recommender.recommend`` with business rules and cold start on inputs a user can give
(defect hunt s23 T).

Before: a rule that gave one candidate a NaN or infinite score (a missing boost, a "pin this
item" rule) turned every score of the list into NaN once freshness or diversity was on, and put
NaN into the frame otherwise; a rule that forgot its ``return`` failed with Python's "cannot
unpack non-iterable NoneType object", naming no rule. Cold users (popular in their segment)
were answered from the first 1,000 items of the popularity ranking only, so when rules or
unavailable items left fewer than k of those, a cold user got fewer than k items (none at all)
while warm users, completed from the whole catalogue, got k.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsys import Recommender
from tests.unit.small_recsys import SMALL, data  # noqa: F401  (the fixture)

PLAIN = {**SMALL, "ranker": {"enabled": False}}
RERANKED = {**PLAIN, "rerank": {"diversity": 0.5, "freshness": 0.5}}
NEW = 1_100  # items added to the catalogue after the events: no training events at all
SHELF = 1_110  # the "new arrivals" shelf: item ids above it, past the first 1,000 popular


@pytest.fixture(scope="module")
def reranked(data):  # noqa: F811
    torch.set_num_threads(1)
    return Recommender(RERANKED).fit(data.interactions, data.users, data.items, progress=False)


def _nan_boost(cand: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = scores.copy()
    out[cand % 7 == 0] = np.nan  # a boost looked up in a table that misses some items
    return cand, out


def _pin_first(cand: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = scores.copy()
    out[cand == cand.min()] = np.inf  # "always show this item first"
    return cand, out


def _bury_last(cand: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = scores.copy()
    out[cand == cand.min()] = -np.inf
    return cand, out


@pytest.mark.parametrize("rule", [_nan_boost, _pin_first, _bury_last])
@pytest.mark.parametrize("which", ["reranked", "plain"])
def test_a_rule_giving_a_score_that_is_not_a_number_is_named(reranked, data, rule,  # noqa: F811
                                                              which):
    rec = reranked
    if which == "plain":  # neither freshness nor diversity: NaN landed in the frame as is
        rec = Recommender(PLAIN).fit(data.interactions, data.users, data.items, progress=False)
    rec.rules = [rule]
    try:
        with pytest.raises(ValueError, match=f"business rule {rule.__name__}: .*not finite"):
            rec.recommend(data.users["user_id"].tolist()[:5], k=5)
    finally:
        rec.rules = []
    rec.rules = [lambda c, s: (c, s + np.float32(1.0))]  # a finite re-score is still fine
    try:
        df = rec.recommend(data.users["user_id"].tolist()[:5], k=5)
    finally:
        rec.rules = []
    assert len(df) == 25 and np.isfinite(df["score"]).all()


def test_a_rule_that_returns_nothing_is_named(reranked, data):  # noqa: F811
    def adults_only(cand, scores):
        cand, scores = cand[cand > 0], scores[cand > 0]  # forgot the return

    reranked.rules = [adults_only]
    try:
        with pytest.raises(ValueError, match="business rule adults_only: expected .*item rows, "
                                             "scores.*got NoneType"):
            reranked.recommend([1, 2], k=5)
    finally:
        reranked.rules = []


@pytest.fixture(scope="module")
def big_catalogue(data):  # noqa: F811
    """The small world plus 1,100 new items nobody has watched yet (ids 61..1160)."""
    new = pd.DataFrame({"item_id": np.arange(61, 61 + NEW, dtype=np.int64),
                        "title": [f"New #{i}" for i in range(NEW)],
                        "year": np.full(NEW, 2024, dtype=np.int64),
                        "genres": ["Drama"] * NEW})
    items = pd.concat([data.items.astype({"title": object, "genres": object}), new],
                      ignore_index=True)
    torch.set_num_threads(1)
    rec = Recommender(PLAIN).fit(data.interactions, data.users, items, progress=False)
    return rec, items


@pytest.mark.parametrize("how", ["rule", "unavailable", "rule-after-load"])
def test_cold_users_get_k_items_from_the_whole_catalogue(big_catalogue, data, how,  # noqa: F811
                                                         tmp_path):
    rec, items = big_catalogue
    if how == "rule-after-load":
        rec.save(tmp_path)
        rec = Recommender.load(tmp_path)
    counts = data.interactions.groupby("user_id").size()
    cold_known = int(counts[counts < rec.config.cold_start_events].index[0])
    warm = int(counts[counts >= 20].index[0])
    users = [warm, cold_known, 10_000]  # 10_000: a user the model has never seen
    shelf = items["item_id"].to_numpy()[items["item_id"].to_numpy() > SHELF]

    def new_arrivals(cand, scores):
        keep = rec.item_ids[cand] > SHELF
        return cand[keep], scores[keep]

    if how != "unavailable":
        rec.rules = [new_arrivals]
    else:
        rec.config = rec.config.model_copy(update={"rerank": rec.config.rerank.model_copy(
            update={"exclude_items": items["item_id"][items["item_id"] <= SHELF].tolist()})})
    try:
        df = rec.recommend(users, k=10)
    finally:
        rec.rules = []
        rec.config = rec.config.model_copy(update={"rerank": rec.config.rerank.model_copy(
            update={"exclude_items": []})})
    sizes = df.groupby("user_id").size().reindex(users, fill_value=0).to_dict()
    assert sizes == {warm: 10, cold_known: 10, 10_000: 10}, sizes
    assert df["item_id"].isin(shelf).all(), df
    for user, g in df.groupby("user_id"):
        assert g["rank"].tolist() == list(range(1, 11)), user
        assert g["item_id"].is_unique and np.all(np.diff(g["score"].to_numpy()) <= 0), g
