"""Replayed users: who they are and what they will interact with next (their held-out events).

A replayed user asks the router for recommendations and clicks a recommended item when it is
among that user's future interactions — so online click-through reflects real preferences,
not a simulator's guess. Optional position bias: position i (0-based) is examined with
probability ``1 / (i + 1) ** position_bias`` (0 = every position is seen).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ["ReplayUser", "users_from_holdout", "load_users", "clicks_for"]


@dataclass(frozen=True)
class ReplayUser:
    user_id: int
    future: frozenset[int]
    first_ts: int = 0


def users_from_holdout(holdout: pd.DataFrame, *, order: str = "time",
                       seed: int = 0) -> list[ReplayUser]:
    """One replayed user per user in the held-out interactions (in order of first event)."""
    if holdout.empty:
        return []
    grouped = holdout.groupby("user_id", sort=False)
    firsts = grouped["timestamp"].min()
    items = grouped["item_id"].agg(lambda s: frozenset(int(x) for x in s))
    users = [ReplayUser(int(u), items[u], int(firsts[u])) for u in items.index]
    if order == "time":
        users.sort(key=lambda u: (u.first_ts, u.user_id))
    elif order == "random":
        random.Random(seed).shuffle(users)
    else:
        raise ValueError(f"order must be time or random, got {order!r}")
    return users


def load_users(interactions: str | Path, holdout: str | Path | None = None,
               test_frac: float = 0.25, order: str = "time", seed: int = 0) -> list[ReplayUser]:
    """From a held-out file, or from all interactions split per user in time (last events)."""
    def read(path: str | Path) -> pd.DataFrame:
        p = Path(path)
        if p.is_dir():
            p = p / "interactions.parquet"
        return pd.read_csv(p) if p.suffix == ".csv" else pd.read_parquet(p)

    if holdout is not None:
        return users_from_holdout(read(holdout), order=order, seed=seed)
    from recsys.data.split import per_user_temporal_split

    split = per_user_temporal_split(read(interactions), test_frac=test_frac)
    return users_from_holdout(split.test, order=order, seed=seed)


def clicks_for(items: Sequence[int], future: frozenset[int], rng: random.Random,
               position_bias: float = 0.0) -> list[int]:
    """The recommended items this user clicks."""
    out = []
    for pos, item in enumerate(items):
        if item in future and (position_bias <= 0 or rng.random() < 1.0 / (pos + 1) ** position_bias):
            out.append(item)
    return out
