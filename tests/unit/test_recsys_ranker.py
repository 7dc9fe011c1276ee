"""The ranking stage: held-out labels, training rows, online = offline scores, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.config import RankerConfig, RecommenderConfig
from recsys.data.synth import generate
from recsys.models.rank_features import FEATURES
from recsys.models.ranker import Ranker, RankExamples, holdout
from recsys.recommender import Recommender

@pytest.fixture(scope="module")
def data(tiny_data):
    return tiny_data


@pytest.fixture(scope="module")
def rec(tiny_rec) -> Recommender:
    return tiny_rec


def _events(n_per_user: dict[int, int]) -> pd.DataFrame:
    rows = [(u, 100 * u + j, 1_000 + j) for u, n in n_per_user.items() for j in range(n)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_temporal_holdout_labels_each_users_last_events_and_rolls_back() -> None:
    inter = _events({1: 10, 2: 2}).sample(frac=1.0, random_state=0)
    rest, held = holdout(inter, 0.2, "temporal", seed=0)
    assert sorted(held["item_id"]) == [108, 109]  # user 1's last two; user 2 too short
    assert rest["timestamp"].max() <= held["timestamp"].min()
    assert set(rest["item_id"]) | set(held["item_id"]) == set(inter["item_id"])
    rest1, held1 = holdout(inter, 0.2, "temporal", seed=0, fold=1)
    assert sorted(held1["item_id"]) == [106, 107]
    assert not set(rest1["item_id"]) & {106, 107, 108, 109}  # the future is dropped


def test_random_holdout_is_seeded_and_per_user() -> None:
    inter = _events({1: 20, 2: 20})
    a = holdout(inter, 0.25, "random", seed=3)[1]
    b = holdout(inter, 0.25, "random", seed=3)[1]
    c = holdout(inter, 0.25, "random", seed=3, fold=1)[1]
    assert a.equals(b) and not a["item_id"].equals(c["item_id"])
    assert a.groupby("user_id").size().tolist() == [5, 5]


def test_lists_without_a_positive_are_dropped() -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    ex = RankExamples(x, np.array([0, 1, 0, 0, 0, 1], np.float32), np.array([2, 2, 2]))
    kept = ex.with_positives()
    assert kept.groups.tolist() == [2, 2]
    assert kept.x[:, 0].tolist() == [0, 2, 8, 10]


def test_ranker_learns_a_planted_signal() -> None:
    rng = np.random.default_rng(0)
    n_lists, size = 200, 20
    x = rng.normal(size=(n_lists * size, len(FEATURES))).astype(np.float32)
    signal = x[:, FEATURES.index("cooc_score")] + 0.3 * rng.normal(size=x.shape[0])
    y = np.zeros(x.shape[0], np.float32)
    for g in range(n_lists):  # the top 2 of every list by the signal are the positives
        sl = slice(g * size, (g + 1) * size)
        y[sl][np.argsort(-signal[sl])[:2]] = 1.0
    cfg = RankerConfig(n_estimators=50, early_stopping_rounds=0, num_leaves=7)
    ranker = Ranker(cfg).fit_examples(RankExamples(x, y, np.full(n_lists, size)))
    pred = ranker._predict(x, threads=1).reshape(n_lists, size)
    top = np.argmax(pred, axis=1)
    # chance is 0.1; 0.75–0.9 across BLAS/OpenMP set-ups, so the bar is set well above chance
    assert y.reshape(n_lists, size)[np.arange(n_lists), top].mean() > 0.6
    assert ranker.feature_importance()["cooc_score"] > 0.5


def test_ranker_was_trained_on_held_out_candidates(rec: Recommender) -> None:
    report = rec.ranker.report
    assert report["ranker_lists"] > 50
    assert 0 < report["ranker_positives"] < report["ranker_rows"]
    assert 0 < report["ranker_candidate_recall"] <= 1


def test_online_scores_equal_offline_scores(rec: Recommender, data) -> None:
    users = data.users["user_id"].to_numpy()[:8]
    rows, cand, sc = rec.candidates(users, 40)
    offline = rec.ranker.score_batch(rec, rows, users, cand, sc)
    for j, user in enumerate(users):
        state = rec.user_state(int(user))
        np.testing.assert_allclose(rec.rank(state, cand[j], sc[j]), offline[j], rtol=1e-6)
        x_on = rec.rank_ctx.features(rec.state_view(state), cand[j], sc[j])
        x_off = rec.rank_ctx.features(rec.user_view(int(rows[j])), cand[j], sc[j])
        np.testing.assert_array_equal(x_on, x_off)
        assert np.isfinite(x_on).all() and x_on.shape == (40, len(FEATURES))


def test_features_of_an_unknown_user_without_history(rec: Recommender) -> None:
    state = rec.user_state(10**9)
    cand = np.arange(30)
    scores = rec.rank(state, cand, np.linspace(1, 0, 30).astype(np.float32))
    assert scores.shape == (30,) and np.isfinite(scores).all()


def test_ranker_round_trips_through_text(rec: Recommender, tmp_path: Path) -> None:
    rec.ranker.save(tmp_path)
    assert (tmp_path / "ranker.txt").read_text().startswith("tree")
    loaded = Ranker.load(tmp_path, rec.config.ranker)
    x = np.random.default_rng(1).normal(size=(50, len(FEATURES))).astype(np.float32)
    np.testing.assert_array_equal(loaded._predict(x, 1), rec.ranker._predict(x, 1))


def test_full_model_reranks_retrieval(rec: Recommender, data) -> None:
    users = data.users["user_id"].to_numpy()[:30]
    full = rec.recommend(users, k=10)
    retrieval = rec.recommend(users, k=10, stages="retrieval")
    assert set(full["user_id"]) == set(retrieval["user_id"])
    assert not full["item_id"].equals(retrieval["item_id"])  # the ranker changes the order


def test_ranker_can_be_switched_off(rec: Recommender) -> None:
    cfg = RecommenderConfig.model_validate({**rec.config.model_dump(),
                                            "ranker": {"enabled": False}})
    data = generate(60, 40, 1_500, seed=2)
    rec = Recommender(cfg).fit(data.interactions, data.users, data.items, progress=False)
    assert rec.ranker is None
    state = rec.user_state(int(data.users["user_id"].iat[0]))
    sc = np.array([0.3, 0.2, 0.1], np.float32)
    assert rec.rank(state, np.arange(3), sc).tolist() == pytest.approx(sc.tolist())


def test_the_time_local_ease_setting_reaches_the_ranker_feature(rec: Recommender, data) -> None:
    import copy

    from recsys.models.item_item import ItemItem

    inter = rec.indexed(data.interactions)
    local = copy.copy(rec)
    local.config = rec.config.model_copy(update={"ranker": rec.config.ranker.model_copy(
        update={"ease_time_share": 0.2, "ease_time_scale": 3.0})})
    got = local.build_rank_context(inter).item_item.weights
    u, i = inter["user_row"].to_numpy(np.int64), inter["item_row"].to_numpy(np.int64)
    order = np.lexsort((inter["timestamp"].to_numpy(), u))
    expected = ItemItem.fit(u[order], i[order], len(rec.user_index), len(rec.item_ids),
                            lam=rec.config.ranker.ease_lambda, time_share=0.2,
                            time_scale=3.0).weights
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    plain = rec.build_rank_context(inter).item_item.weights
    assert np.abs(got - plain).max() > 1e-3  # the setting changed the feature
