"""Leakage-safe train / validation / test splits of the interactions table.

* :func:`temporal_split`: one global time cutoff per boundary, so no validation or test event
  precedes any training event (what a model trained today and served tomorrow sees).
* :func:`per_user_temporal_split`: each user's last events go to test (leave-last-out style);
  every held-out event of a user is no earlier than that user's training events.
* :func:`per_user_random_split`: a seeded per-user random split (the 75/25 stratified split of
  Microsoft Recommenders' ``python_stratified_split``).

Per-user splits keep users with fewer than ``min_events`` events entirely in train. Rows keep
their columns and dtypes; indices are reset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Split", "temporal_split", "per_user_temporal_split", "per_user_random_split"]


@dataclass(frozen=True, eq=False)
class Split:
    """Three disjoint parts of one interactions table."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _check_fracs(*fracs: float) -> None:
    for frac in fracs:
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"split fractions must be in [0, 1), got {frac}")
    if sum(fracs) >= 1.0:
        raise ValueError(f"split fractions must leave room for training, got {fracs}")


def _take(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    return frame.loc[mask].reset_index(drop=True)


def temporal_split(interactions: pd.DataFrame, val_frac: float = 0.1,
                   test_frac: float = 0.1) -> Split:
    """Global time split: train < val cutoff <= val < test cutoff <= test.

    The cutoffs are the timestamps at the ``1 - val_frac - test_frac`` and ``1 - test_frac``
    quantiles of the events; events that share a cutoff timestamp all go to the later part, so
    ``train.timestamp.max() < val.timestamp.min()`` and likewise for test (when non-empty).
    """
    _check_fracs(val_frac, test_frac)
    ts = interactions["timestamp"].to_numpy()
    n = len(ts)
    if n == 0:
        empty = interactions.iloc[0:0].reset_index(drop=True)
        return Split(empty, empty.copy(), empty.copy())
    ordered = np.sort(ts, kind="stable")

    def cutoff(frac: float) -> float:
        k = int(round(n * (1.0 - frac)))
        return ordered[k] if k < n else np.inf  # nothing held out for frac == 0

    test_cut = cutoff(test_frac)
    val_cut = min(cutoff(val_frac + test_frac), test_cut)
    train = ts < val_cut
    test = ts >= test_cut
    val = ~train & ~test
    return Split(_take(interactions, train), _take(interactions, val), _take(interactions, test))


def _per_user_positions(interactions: pd.DataFrame, order: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """For rows visited in ``order`` (grouped by user): each row's count of later rows of the
    same user, and the user's event count; both indexed by original row position."""
    users = interactions["user_id"].to_numpy()[order]
    n = len(users)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if n else np.array([], int)
    sizes = np.diff(np.r_[starts, n])
    count = np.repeat(sizes, sizes)
    rank = np.arange(n) - np.repeat(starts, sizes)
    from_end = np.empty(n, dtype=np.int64)
    total = np.empty(n, dtype=np.int64)
    from_end[order] = count - 1 - rank
    total[order] = count
    return from_end, total


def _held_out(from_end: np.ndarray, total: np.ndarray, test_frac: float, val_frac: float,
              min_events: int) -> tuple[np.ndarray, np.ndarray]:
    eligible = total >= max(min_events, 2 + (val_frac > 0))
    n_test = np.where(eligible & (test_frac > 0),
                      np.maximum(1, np.round(total * test_frac)), 0).astype(np.int64)
    n_val = np.where(eligible & (val_frac > 0),
                     np.maximum(1, np.round(total * val_frac)), 0).astype(np.int64)
    # keep at least one training event per eligible user
    overflow = np.maximum(0, n_test + n_val - (total - 1))
    n_val = np.maximum(0, n_val - overflow)
    test = from_end < n_test
    val = ~test & (from_end < n_test + n_val)
    return test, val


def per_user_temporal_split(interactions: pd.DataFrame, test_frac: float = 0.25,
                            val_frac: float = 0.0, min_events: int = 3) -> Split:
    """Each user's most recent ``test_frac`` of events go to test, the ones before those
    (``val_frac``) to validation, the rest to train. Ties in time are broken by item id."""
    _check_fracs(val_frac, test_frac)
    order = np.lexsort((interactions["item_id"].to_numpy(), interactions["timestamp"].to_numpy(),
                        interactions["user_id"].to_numpy()))
    from_end, total = _per_user_positions(interactions, order)
    test, val = _held_out(from_end, total, test_frac, val_frac, min_events)
    train = ~test & ~val
    return Split(_take(interactions, train), _take(interactions, val), _take(interactions, test))


def per_user_random_split(interactions: pd.DataFrame, test_frac: float = 0.25, seed: int = 42,
                          val_frac: float = 0.0, min_events: int = 3) -> Split:
    """Per user, a seeded random ``test_frac`` of events go to test (and ``val_frac`` to
    validation). The result depends only on the rows and the seed, not on their order."""
    _check_fracs(val_frac, test_frac)
    canonical = np.lexsort((interactions["item_id"].to_numpy(),
                            interactions["timestamp"].to_numpy(),
                            interactions["user_id"].to_numpy()))
    keys = np.empty(len(interactions))
    keys[canonical] = np.random.default_rng(seed).random(len(interactions))
    order = np.lexsort((keys, interactions["user_id"].to_numpy()))
    from_end, total = _per_user_positions(interactions, order)
    test, val = _held_out(from_end, total, test_frac, val_frac, min_events)
    train = ~test & ~val
    return Split(_take(interactions, train), _take(interactions, val), _take(interactions, test))
