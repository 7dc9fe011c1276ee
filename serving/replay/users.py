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
    """One replayed user per user in the held-out interactions (in order of first event).

    ``user_id``, ``item_id`` and ``timestamp`` are read as the data contract reads them (an
    ISO time or a pandas timestamp is unix seconds): a value that is none of these, or is
    missing, is a ValueError naming the column and the value, not a traceback from ``int()``
    or a user silently dropped by the grouping."""
    from recsys.data.coerce import coerce_raw_frame
    from recsys.data.errors import DataValidationError

    if holdout.empty:
        return []
    missing = _missing_columns(holdout)
    if missing:
        raise ValueError(f"holdout: {missing}")
    try:
        frame = coerce_raw_frame(holdout[list(_COLUMNS.names)], _COLUMNS)
    except DataValidationError as exc:
        raise ValueError(f"holdout: {_one_line(exc)}") from None
    return _users(frame, order, seed)


def _users(holdout: pd.DataFrame, order: str, seed: int) -> list[ReplayUser]:
    """:func:`users_from_holdout` of a frame already cast to the contract."""
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


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _missing_columns(frame: pd.DataFrame) -> str:
    """What is wrong when ``frame`` lacks a column a replay reads ("" when none): the names
    missing and those it has, with the rename for a name that differs only by case, spaces
    or underscores (``User_ID``), as ``marquee data validate`` says it."""
    from recsys.data.findings import missing_columns

    names = list(_COLUMNS.names)
    findings = missing_columns(_COLUMNS.name, names, frame.columns, len(frame))
    if not findings:
        return ""
    renames = [f.detail for f in findings if not f.detail.startswith("expected columns")]
    return "; ".join([f"not an interactions table: no column "
                      f"{', '.join(sorted(f.column for f in findings))} (it has "
                      f"{', '.join(map(str, frame.columns))})", *renames])


def _table_file(path: Path, field: str) -> Path:
    """The file ``--interactions`` or ``--holdout`` names: the path itself, or in a directory
    the interactions file as ``marquee data validate DIR`` finds it
    (``interactions.{parquet,csv,tsv}``, the name in any case)."""
    from marquee.errors import InvalidArgumentError
    from recsys.data.coerce import find_table_file

    if not path.is_dir():
        return path
    found, problems = find_table_file(path, _COLUMNS.name)
    if found is None:
        raise InvalidArgumentError(field, str(path), "; ".join(f.describe() for f in problems))
    return found


def _read(path: str | Path, field: str) -> pd.DataFrame:
    """The interactions in ``path`` (a file or a dataset directory) cast to the contract, read
    as the data layer reads a user's files: a CSV or TSV by its name (UTF-8, its separator and
    NUL bytes checked), anything else as Parquet by its Arrow types. Every problem is one
    :class:`InvalidArgumentError` naming the option, the file, and the column and value."""
    import pyarrow as pa

    from marquee.errors import InvalidArgumentError, error_text
    from recsys.data.coerce import coerce_raw_frame, read_table_file
    from recsys.data.errors import DataValidationError
    from recsys.data.parquet_table import read_parquet_table

    file = _table_file(Path(path), field)
    try:
        frame, problems = (read_table_file(file, _COLUMNS)
                           if file.suffix.lower() in (".csv", ".tsv", ".parquet")
                           else read_parquet_table(file, _COLUMNS))
    except pa.ArrowException as exc:  # any other name is read as Parquet: say so
        raise InvalidArgumentError(field, str(file), "not a readable Parquet or CSV table: "
                                   f"{error_text(exc)} (a name ending in .csv or .tsv is read "
                                   "as text)") from None
    if problems or frame is None:  # the file as a whole, or values the reader could not decode
        reason = _one_line("; ".join(f.describe() for f in problems))
        if frame is None:
            reason = f"not a readable Parquet or CSV table: {reason}"
        raise InvalidArgumentError(field, str(file), reason)
    missing = _missing_columns(frame)
    if missing:
        raise InvalidArgumentError(field, str(file), missing)
    # Ids and times as the data contract reads them (an ISO time or a Parquet timestamp is
    # unix seconds): a value that is none of these, or missing, is named on one error line,
    # not a traceback from int() or a user silently dropped by the grouping.
    try:
        return coerce_raw_frame(frame[list(_COLUMNS.names)], _COLUMNS)
    except DataValidationError as exc:
        raise InvalidArgumentError(field, str(file), _one_line(exc)) from None


def load_users(interactions: str | Path, holdout: str | Path | None = None,
               test_frac: float = 0.25, order: str = "time", seed: int = 0) -> list[ReplayUser]:
    """From a held-out file, or from all interactions split per user in time (last events).
    Either may be a CSV, TSV or Parquet file, or a dataset directory holding
    ``interactions.{parquet,csv,tsv}``."""
    if holdout is not None:
        return _users(_read(holdout, "holdout"), order, seed)
    from recsys.data.split import per_user_temporal_split

    split = per_user_temporal_split(_read(interactions, "interactions"), test_frac=test_frac)
    return _users(split.test, order, seed)


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
