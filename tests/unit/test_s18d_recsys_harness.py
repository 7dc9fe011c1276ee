"""Session 18 (D): the recommender library scored by an engineer's own harness.

Each test goes through the public API (``Recommender.fit`` / ``recommend`` / the online
``rerank`` and ``popular``) and failed on the code before its fix.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.recommender import Recommender
from tests.unit.small_recsys import SMALL, data  # noqa: F401 - a fixture



@pytest.fixture(scope="module")
def unavailable(data):
    return data.items["item_id"].to_numpy()[:30].tolist()


@pytest.fixture(scope="module")
def rec_excl(data, unavailable):
    """Half the catalogue unavailable, 10 candidates: k=15 needs more than the pool."""
    return Recommender(dict(SMALL, rerank={"exclude_items": unavailable})).fit(
        data.interactions, data.users, data.items, progress=False)


@pytest.mark.parametrize("stages", ["full", "retrieval"])
def test_k_above_n_candidates_with_unavailable_items_still_gets_k(data, unavailable, rec_excl,
                                                                   stages):
    k = 15
    users = data.users["user_id"].to_numpy()
    out = rec_excl.recommend(users, k=k, stages=stages)
    seen = data.interactions.groupby("user_id")["item_id"].agg(set)
    catalogue = set(data.items["item_id"].tolist()) - set(unavailable)
    sizes = out.groupby("user_id").size()
    for u in users:
        available = catalogue - seen.get(u, set())
        got = out[out["user_id"] == u]
        assert len(got) == min(k, len(available)), (u, len(got), len(available))
        assert set(got["item_id"]) <= available
        assert not got["item_id"].duplicated().any()
        assert (np.diff(got["score"].to_numpy()) <= 0).all()
        assert got["rank"].tolist() == list(range(1, len(got) + 1))
    assert (sizes == k).sum() > 0.9 * len(users)


def test_same_events_in_another_row_order_fit_the_same_model(data):
    users = data.users["user_id"].to_numpy()
    a = Recommender(SMALL).fit(data.interactions, data.users, data.items, progress=False)
    shuffled = data.interactions.sample(frac=1.0, random_state=3).reset_index(drop=True)
    b = Recommender(SMALL).fit(shuffled, data.users, data.items, progress=False)
    pd.testing.assert_frame_equal(a.recommend(users, k=10), b.recommend(users, k=10))


@pytest.mark.parametrize("convert", [
    lambda ts: ts * 1000,
    lambda ts: pd.to_datetime(ts, unit="s").where(ts.index % 7 != 0),  # datetimes: NaT refused
    lambda ts: ts.astype("float64").where(ts.index % 7 != 0),
], ids=["milliseconds", "datetime64 with NaT", "missing"])
def test_timestamps_not_in_unix_seconds_are_refused_naming_the_column(data, convert):
    inter = data.interactions.assign(timestamp=convert(data.interactions["timestamp"]))
    with pytest.raises(ValueError, match=r"interactions\.timestamp"):
        Recommender(SMALL).fit(inter, data.users, data.items, progress=False)


def test_business_rules_apply_to_batch_online_and_cold_lists(data, rec_excl, unavailable):
    ids = rec_excl.item_ids
    calls = []

    def no_odd_items(rows: np.ndarray, scores: np.ndarray):
        calls.append(rows.size)
        keep = ids[rows] % 2 == 0
        return rows[keep], scores[keep]

    users = np.r_[data.users["user_id"].to_numpy()[:20], 10_000_001]  # the last one: cold
    before = rec_excl.recommend(users, k=5)
    rec_excl.rules = [no_odd_items]
    try:
        out = rec_excl.recommend(users, k=5)
        state = rec_excl.user_state(int(users[0]))
        cand = np.arange(len(ids))
        online, _ = rec_excl.rerank(state, cand, -cand.astype(np.float32), 5)
        cold, _ = rec_excl.popular(rec_excl.user_state(10_000_001), 5)
    finally:
        rec_excl.rules = []
    assert calls
    assert (out["item_id"] % 2 == 0).all()
    # A filtering rule works within the candidate pool: lists can get shorter, never longer.
    assert out.groupby("user_id").size().le(5).all() and out["user_id"].nunique() == users.size
    assert not out["item_id"].isin(unavailable).any()
    assert (ids[online] % 2 == 0).all() and online.size == 5
    assert (ids[cold] % 2 == 0).all() and cold.size == 5
    assert (before["item_id"] % 2 == 1).any()  # the rule had something to remove
    pd.testing.assert_frame_equal(rec_excl.recommend(users, k=5), before)  # rules off again


def test_metrics_count_a_repeated_item_once_and_coverage_stays_a_share():
    from recsys.metrics import evaluate, per_user_metrics

    # User 1's list holds item 11 twice (e.g. user id 1 passed twice to recommend); of the
    # relevant items {11, 13} only one was found.
    recs = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [11, 11, 20, 21],
                         "rank": [1, 2, 1, 2]})
    truth = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [11, 13, 22]})
    train = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [10, 20, 30]})
    m = per_user_metrics(recs, truth, 2).loc[1]
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)
    assert m["ndcg"] == pytest.approx(1.0 / (1.0 + 1.0 / np.log2(3.0)))
    assert m["map"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx(1.0)
    out = evaluate(recs, truth, train, k_values=(2,))
    # Items 11, 20, 21 of the catalogue {10, 11, 20, 21, 30} (train and lists together).
    assert out["coverage_at_2"] == pytest.approx(3 / 5)
    assert out["recall_at_2"] == pytest.approx(0.25)
