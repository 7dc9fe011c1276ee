"""Behaviour of the fitted recommender: minimum functionality, invariance, direction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.config import RecommenderConfig
from recsys.metrics import per_user_metrics
from recsys.recommender import Recommender
from tests.model.model_world import TINY, World, make_world, online_top


def _genre_share(world: World, item_ids: np.ndarray, genre: str) -> float:
    g = world.items.set_index("item_id").loc[item_ids, "genres"]
    return float((g == genre).mean())


def test_a_user_who_only_watches_scifi_is_shown_mostly_scifi(world: World,
                                                             fitted: Recommender) -> None:
    scifi = world.items_of("Sci-Fi")[:10].tolist()
    top = online_top(fitted, user_id=10**7, history=scifi)  # a new user, history only
    assert _genre_share(world, top, "Sci-Fi") >= 0.7
    assert not set(top) & set(scifi)  # nothing already watched


def test_stored_users_get_their_own_genre(world: World, fitted: Recommender) -> None:
    users = world.users["user_id"].to_numpy()[:60]
    recs = fitted.recommend(users, k=10)
    share = recs.assign(genre=recs["item_id"].map(world.items.set_index("item_id")["genres"]),
                        taste=recs["user_id"].map(world.taste))
    assert (share["genre"] == share["taste"]).mean() >= 0.7


def test_an_irrelevant_context_change_does_not_reorder_the_list(world: World,
                                                                fitted: Recommender) -> None:
    ts = 1_602_000_000.0
    for user in world.users["user_id"].to_numpy()[:20]:
        plain = online_top(fitted, int(user), ts=ts)
        noisy = online_top(fitted, int(user), ts=ts,
                           context={"device": "tv", "page": "home", "campaign": "spring"})
        assert plain.tolist() == noisy.tolist()


def test_more_history_does_not_make_results_worse_on_average(world: World,
                                                             fitted: Recommender) -> None:
    users = world.users["user_id"].to_numpy()[::3]
    train = world.train.groupby("user_id")["item_id"].agg(list)
    rows_short, rows_long = [], []
    for user in users:
        for rows, history in ((rows_short, train[user][:3]), (rows_long, train[user])):
            top = online_top(fitted, 10**7 + int(user), history=history)  # no id: history only
            rows.append(pd.DataFrame({"user_id": user, "item_id": top,
                                      "rank": np.arange(1, top.size + 1)}))
    held = world.held[world.held["user_id"].isin(users)]
    short = per_user_metrics(pd.concat(rows_short), held, 10)["ndcg"].mean()
    long = per_user_metrics(pd.concat(rows_long), held, 10)["ndcg"].mean()
    assert long >= short


def test_save_and_load_give_identical_recommendations(world: World, fitted: Recommender,
                                                      tmp_path: Path) -> None:
    fitted.save(tmp_path)
    loaded = Recommender.load(tmp_path)
    users = world.users["user_id"].to_numpy()[:40]
    a, b = fitted.recommend(users, k=10), loaded.recommend(users, k=10)
    assert a["item_id"].tolist() == b["item_id"].tolist()
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5, atol=1e-6)
    for user in users[:5]:
        assert online_top(fitted, int(user)).tolist() == online_top(loaded, int(user)).tolist()
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))


def test_cold_users_get_popular_items_of_their_segment(world: World,
                                                      fitted: Recommender) -> None:
    unknown = fitted.user_state(10**8)
    assert unknown.cold_start and not unknown.known
    recs = fitted.recommend([10**8], k=10)
    assert len(recs) == 10 and recs["rank"].tolist() == list(range(1, 11))
    # a user with three events is cold too: answered from popularity, seen items excluded
    user = int(world.users["user_id"].iat[0])
    few = world.train[world.train["user_id"] == user]["item_id"].tolist()[:3]
    state = fitted.user_state(user, history=few)
    assert state.cold_start
    idx, scores = fitted.popular(state, 10)
    assert idx.size == 10 and not set(fitted.item_ids[idx]) & set(few)
    assert np.all(np.diff(scores) <= 0)


def test_new_items_get_vectors_from_their_metadata() -> None:
    world = make_world(seed=1)
    new = pd.DataFrame({"item_id": [9001, 9002], "title": ["new sci-fi", "new horror"],
                        "year": [1999, 1999], "genres": ["Sci-Fi", "Horror"]})
    items = pd.concat([world.items, new], ignore_index=True)
    cfg = RecommenderConfig.model_validate({**TINY, "ranker": {"enabled": False},
                                            "retrieval": {**TINY["retrieval"],
                                                          "item_id_dropout": 0.2}})
    rec = Recommender(cfg).fit(world.train, world.users, items, progress=False)
    emb = rec.item_embeddings()
    rows = rec.item_index.lookup([9001, 9002])
    for genre, row, other in (("Sci-Fi", rows[0], rows[1]), ("Horror", rows[1], rows[0])):
        members = rec.item_index.lookup(world.items_of(genre))
        centre = emb[members].mean(axis=0)
        assert emb[row] @ centre > emb[other] @ centre
    state = rec.user_state(10**7, history=world.items_of("Sci-Fi")[:10].tolist())
    q = rec.user_embedding(state)
    assert emb[rows[0]] @ q > emb[rows[1]] @ q
