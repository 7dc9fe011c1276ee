"""Compiled loops for the two rank features that are bound by memory latency, with numpy twins.

Per request the ranker features gather from tables of the whole catalogue; two of those
gathers cost most of the features' time at 100k+ items because numpy's way of doing them
walks memory at random:

* ``count_before``: events of each candidate up to a few times. ``np.searchsorted`` over all
  events (one sorted key per event) binary-searches the whole array, ~20 cache misses a key;
  the compiled loop searches only the candidate's own run of keys.
* ``column_scores``: the item–item weights from a history into each candidate, read from the
  candidates' columns (≤ top-k entries each) and matched against the sorted history.

Each function gives the same numbers as its numpy twin (integer counts exactly; weight sums
to float rounding), and falls back to it without numba. ``tests/unit/test_recsys_online_fast.py``
checks both against naive references.
"""

from __future__ import annotations

import numpy as np

__all__ = ["column_scores", "count_before", "warm"]

_KERNELS: dict[str, object] = {}
_NO_NUMBA = object()


def _compiled(name: str):
    """The compiled kernel ``name`` (compiled on first use), or None without numba."""
    if not _KERNELS:
        try:
            import numba
        except ImportError:
            _KERNELS["_none"] = _NO_NUMBA
            return None

        @numba.njit(nogil=True, cache=False)
        def count_before(keys, offsets, cand, shifted, rel, out):  # pragma: no cover
            for j in range(cand.size):
                c = cand[j]
                lo0, hi0 = offsets[c], offsets[c + 1]
                for r in range(rel.size):
                    target = shifted[j] + rel[r]
                    lo, hi = lo0, hi0
                    while lo < hi:  # first key > target (searchsorted side="right")
                        mid = (lo + hi) >> 1
                        if keys[mid] <= target:
                            lo = mid + 1
                        else:
                            hi = mid
                    out[r, j] = lo - lo0

        @numba.njit(nogil=True, cache=False)
        def column_scores(indptr, indices, data, cand, seen, counts, tail_seen, tail_counts,
                          full, part):  # pragma: no cover
            for j in range(cand.size):
                c = cand[j]
                total = 0.0
                recent = 0.0
                for e in range(indptr[c], indptr[c + 1]):
                    row = indices[e]
                    lo, hi = 0, seen.size
                    while lo < hi:
                        mid = (lo + hi) >> 1
                        if seen[mid] < row:
                            lo = mid + 1
                        else:
                            hi = mid
                    if lo < seen.size and seen[lo] == row:
                        w = np.float64(data[e])
                        total += counts[lo] * w
                        lo, hi = 0, tail_seen.size
                        while lo < hi:
                            mid = (lo + hi) >> 1
                            if tail_seen[mid] < row:
                                lo = mid + 1
                            else:
                                hi = mid
                        if lo < tail_seen.size and tail_seen[lo] == row:
                            recent += tail_counts[lo] * w
                full[j] = total
                part[j] = recent

        _KERNELS.update(count_before=count_before, column_scores=column_scores)
    kernel = _KERNELS.get(name)
    return None if kernel is None or kernel is _NO_NUMBA else kernel


def count_before(keys: np.ndarray, offsets: np.ndarray, cand: np.ndarray, shift: int,
                 rel: np.ndarray) -> np.ndarray:
    """int64 [len(rel), n_cand]: keys ≤ ``(cand << shift) + rel[r]`` within each candidate's
    run ``keys[offsets[c]:offsets[c + 1]]`` (``keys`` sorted, runs by item)."""
    cand = np.ascontiguousarray(cand, dtype=np.int64)
    rel = np.ascontiguousarray(rel, dtype=np.int64)
    shifted = cand << shift
    kernel = _compiled("count_before")
    if kernel is None:
        return count_before_numpy(keys, offsets, cand, shift, rel)
    out = np.empty((rel.size, cand.size), dtype=np.int64)
    kernel(keys, offsets, cand, shifted, rel, out)
    return out


def count_before_numpy(keys: np.ndarray, offsets: np.ndarray, cand: np.ndarray, shift: int,
                       rel: np.ndarray) -> np.ndarray:
    targets = (cand.astype(np.int64) << shift)[None, :] + np.asarray(rel, np.int64)[:, None]
    pos = np.searchsorted(keys, targets.ravel(), side="right").reshape(targets.shape)
    return pos - offsets[cand][None, :]


def column_scores(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, cand: np.ndarray,
                  history: np.ndarray, tail: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(full, recent)`` [n_cand]: sums of the column entries of each candidate whose
    row is in ``history`` (times its occurrences), and in ``history[-tail:]``."""
    cand = np.ascontiguousarray(cand, dtype=np.int64)
    kernel = _compiled("column_scores")
    if kernel is None:
        return column_scores_numpy(indptr, indices, data, cand, history, tail)
    seen, counts = np.unique(history, return_counts=True)
    recent = history[history.size - tail:] if tail else history[:0]
    tail_seen, tail_counts = np.unique(recent, return_counts=True)
    full = np.empty(cand.size, dtype=np.float64)
    part = np.empty(cand.size, dtype=np.float64)
    kernel(indptr, indices, data, cand, seen.astype(np.int64), counts.astype(np.float64),
           tail_seen.astype(np.int64), tail_counts.astype(np.float64), full, part)
    return full.astype(np.float32), part.astype(np.float32)


def column_scores_numpy(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                        cand: np.ndarray, history: np.ndarray, tail: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    zeros = np.zeros(cand.size, dtype=np.float32)
    starts = indptr[cand]
    lens = indptr[cand + 1] - starts
    total = int(lens.sum())
    if total == 0 or history.size == 0:
        return zeros, zeros.copy()
    offsets = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(total)
    rows, vals = indices[offsets], data[offsets].astype(np.float64)
    owner = np.repeat(np.arange(cand.size), lens)

    def weigh(items: np.ndarray) -> np.ndarray:
        if items.size == 0:
            return zeros
        seen, counts = np.unique(items, return_counts=True)
        pos = np.minimum(np.searchsorted(seen, rows), seen.size - 1)
        w = np.where(seen[pos] == rows, counts[pos], 0) * vals
        return np.bincount(owner, weights=w, minlength=cand.size).astype(np.float32)

    return weigh(history), weigh(history[history.size - tail:] if tail else history[:0])


def warm() -> None:
    """Compile the kernels now (a model server calls this at load, not on a request)."""
    one = np.zeros(1, dtype=np.int64)
    count_before(np.zeros(1, np.int64), np.array([0, 1], np.int64), one, 32, one)
    for index_type in (np.int32, np.int64):
        column_scores(np.array([0, 1], index_type), np.zeros(1, index_type),
                      np.ones(1, np.float32), one, one, 1)
