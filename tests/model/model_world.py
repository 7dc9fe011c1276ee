"""A small world with planted tastes, the tiny model configuration and the serving path,
shared by the model tests.

Each of the 6 genres has 40 single-genre movies; each user is loyal to one genre (90% of
their events), so a good model must learn "more of the same genre". Time runs forward per user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.recommender import Recommender

WORLD_GENRES = ("Sci-Fi", "Horror", "Comedy", "Drama", "Western", "Animation")
ITEMS_PER_GENRE = 40
N_USERS = 360
EVENTS_PER_USER = 30
HELD_OUT = 5  # each user's last events, kept out of training

TINY = {
    "seed": 7,
    "retrieval": {"dim": 16, "epochs": 4, "batch_size": 256, "history_len": 20, "lr": 0.01},
    "ranker": {"n_candidates": 60, "n_estimators": 40, "early_stopping_rounds": 0,
               "folds": 1, "num_leaves": 7, "min_child_samples": 10},
}


@dataclass(frozen=True)
class World:
    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    train: pd.DataFrame
    held: pd.DataFrame
    taste: pd.Series  # user_id → loyal genre

    def items_of(self, genre: str) -> np.ndarray:
        return self.items.loc[self.items["genres"] == genre, "item_id"].to_numpy()


def make_world(seed: int = 0) -> World:
    rng = np.random.default_rng(seed)
    genres = np.repeat(WORLD_GENRES, ITEMS_PER_GENRE)
    n_items = genres.size
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1, dtype=np.int64),
                          "title": [f"movie {i}" for i in range(1, n_items + 1)],
                          "year": rng.integers(1960, 2000, n_items).astype(np.int64),
                          "genres": genres})
    users = pd.DataFrame({
        "user_id": np.arange(1, N_USERS + 1, dtype=np.int64),
        "age_bucket": rng.choice(["18-24", "25-34", "35-44"], N_USERS),
        "gender": rng.choice(["M", "F"], N_USERS),
        "occupation": rng.choice(["student", "engineer", "artist"], N_USERS),
        "region": rng.choice(["US-0", "US-9"], N_USERS)})
    taste = pd.Series(np.asarray(WORLD_GENRES)[np.arange(N_USERS) % len(WORLD_GENRES)],
                      index=users["user_id"])
    popularity = 1.0 / np.arange(1, ITEMS_PER_GENRE + 1) ** 0.8  # a long tail within a genre
    rows = []
    for u in users["user_id"]:
        own = np.flatnonzero(genres == taste[u])
        p_own = popularity / popularity.sum()
        n_own = rng.binomial(EVENTS_PER_USER, 0.9)
        picks = np.r_[rng.choice(own, n_own, replace=False, p=p_own),
                      rng.choice(np.flatnonzero(genres != taste[u]), EVENTS_PER_USER - n_own,
                                 replace=False)]
        rng.shuffle(picks)
        start = 1_600_000_000 + int(rng.integers(0, 86_400 * 30))
        ts = start + np.sort(rng.integers(0, 86_400 * 20, picks.size))
        rows.append(pd.DataFrame({"user_id": u, "item_id": picks + 1, "timestamp": ts}))
    inter = pd.concat(rows, ignore_index=True)
    inter["rating"] = np.float32(4.0)
    inter["event"] = pd.array(["rating"] * len(inter), dtype="string")
    inter = inter[["user_id", "item_id", "rating", "timestamp", "event"]]
    order = inter.sort_values(["user_id", "timestamp"])
    last = order.groupby("user_id").cumcount(ascending=False) < HELD_OUT
    return World(inter, users, items, order[~last].reset_index(drop=True),
                 order[last].reset_index(drop=True), taste)


def online_top(rec: Recommender, user_id: int, k: int = 10, history: list[int] | None = None,
               context: dict | None = None, ts: float | None = None) -> np.ndarray:
    """The serving path (exact search instead of FAISS): item ids of the final top-k."""
    state = rec.user_state(user_id, history=history, ts=ts, context=context)
    scores = rec.item_embeddings() @ rec.user_embedding(state)
    scores[rec.seen_idx(state)] = -np.inf
    cand = np.argsort(-scores, kind="stable")[:rec.config.ranker.n_candidates]
    ranked = rec.rank(state, cand, scores[cand])
    idx, _ = rec.rerank(state, cand, ranked, k)
    return rec.item_ids[idx]
