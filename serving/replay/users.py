"""Replayed users: who they are and what they will interact with next (their held-out events).

A replayed user asks the router for recommendations and clicks a recommended item when it is
among that user's future interactions — so online click-through reflects real preferences,
not a simulator's guess. The click model (:class:`ClickModel`) is a position-based model:
position i (0-based) is examined with probability ``1 / (i + 1) ** position_bias`` (0 = every
position is seen); an examined relevant item (one of the user's future interactions) is
clicked with probability ``relevant_click``, an examined irrelevant one with ``noise_click``.
The defaults (1, 0) click every examined relevant item and nothing else.

:func:`sample_stream` turns the held-out users into a stream of visits drawn with
replacement, for experiments that need more visits than there are users.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.schema import INTERACTIONS, TableSpec

__all__ = ["ReplayUser", "ClickModel", "users_from_holdout", "load_users", "sample_stream",
           "clicks_for"]


#: The columns a replay reads, with the interactions contract's types.
_COLUMNS = TableSpec("interactions", tuple(INTERACTIONS.column(c) for c in
                                           ("user_id", "item_id", "timestamp")),
                     key=("user_id", "item_id", "timestamp"),
                     sort_keys=("user_id", "timestamp", "item_id"))


@dataclass(frozen=True)
class ReplayUser:
    user_id: int
    future: frozenset[int]
    first_ts: int = 0


@dataclass(frozen=True)
class ClickModel:
    """Position-based click model: P(click at i) = examine(i) · (relevant_click if relevant
    else noise_click), independently per position."""

    position_bias: float = 0.0
    relevant_click: float = 1.0
    noise_click: float = 0.0

    def __post_init__(self) -> None:
        if self.position_bias < 0:
            raise ValueError(f"position_bias must be >= 0, got {self.position_bias}")
        for name in ("relevant_click", "noise_click"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")

    def examine(self, k: int) -> np.ndarray:
        # (i + 1) ** -b, not 1 / (i + 1) ** b: a steep bias underflows to 0, not overflows
        return np.arange(1, k + 1, dtype=float) ** -self.position_bias

    def probabilities(self, items: Sequence[int], future: frozenset[int]) -> np.ndarray:
        """P(click) of each position of ``items``."""
        relevant = np.fromiter((i in future for i in items), dtype=bool, count=len(items))
        return self.examine(len(items)) * np.where(relevant, self.relevant_click,
                                                   self.noise_click)

    def clicks(self, items: Sequence[int], future: frozenset[int],
               rng: random.Random) -> list[int]:
        out = []
        for pos, item in enumerate(items):
            p = self.relevant_click if item in future else self.noise_click
            if p <= 0:
                continue
            if self.position_bias > 0:
                p *= (pos + 1.0) ** -self.position_bias  # see examine()
            if p >= 1 or rng.random() < p:
                out.append(item)
        return out


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
    def read(path: str | Path, field: str) -> pd.DataFrame:
        import pyarrow as pa

        from marquee.errors import InvalidArgumentError, error_text
        from recsys.data.coerce import coerce_raw_frame
        from recsys.data.errors import DataValidationError
        from recsys.data.parquet import read_parquet

        p = Path(path)
        if p.is_dir():
            p = p / "interactions.parquet"
        try:
            frame = pd.read_csv(p) if p.suffix == ".csv" else read_parquet(p)
        except (pa.ArrowException, pd.errors.ParserError, pd.errors.EmptyDataError,
                UnicodeDecodeError) as exc:  # named on one error line, not a traceback
            raise InvalidArgumentError(field, str(path), "not a readable Parquet or CSV "
                                       f"table: {error_text(exc)}") from None
        missing = sorted({"user_id", "item_id", "timestamp"} - set(frame.columns))
        if missing:
            raise InvalidArgumentError(
                field, str(p), f"not an interactions table: no column "
                f"{', '.join(missing)} (it has {', '.join(map(str, frame.columns))})")
        # Ids and times as the data contract reads them (an ISO time or a Parquet timestamp
        # is unix seconds): a value that is none of these, or missing, is named on one error
        # line, not a traceback from int() or a user silently dropped by the grouping.
        try:
            return coerce_raw_frame(frame[list(_COLUMNS.names)], _COLUMNS)
        except DataValidationError as exc:
            raise InvalidArgumentError(field, str(p), " ".join(str(exc).split())) from None

    if holdout is not None:
        return users_from_holdout(read(holdout, "holdout"), order=order, seed=seed)
    from recsys.data.split import per_user_temporal_split

    split = per_user_temporal_split(read(interactions, "interactions"), test_frac=test_frac)
    return users_from_holdout(split.test, order=order, seed=seed)


def sample_stream(users: Sequence[ReplayUser], n: int, seed: int = 0) -> list[ReplayUser]:
    """``n`` visits drawn uniformly with replacement from ``users``."""
    if not users:
        raise ValueError("no users to sample from")
    rng = random.Random(seed)
    return [users[rng.randrange(len(users))] for _ in range(n)]


def clicks_for(items: Sequence[int], future: frozenset[int], rng: random.Random,
               position_bias: float = 0.0, relevant_click: float = 1.0,
               noise_click: float = 0.0) -> list[int]:
    """The recommended items this user clicks (see :class:`ClickModel`)."""
    return ClickModel(position_bias, relevant_click, noise_click).clicks(items, future, rng)
