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

__all__ = ["column_scores", "count_before", "merge_columns", "rank_features_kernel"]

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
        def upper_bound(a, lo, hi, x):  # pragma: no cover
            # first i in [lo, hi) with a[i] > x (searchsorted side="right")
            while lo < hi:
                mid = (lo + hi) >> 1
                if a[mid] <= x:
                    lo = mid + 1
                else:
                    hi = mid
            return lo

        @numba.njit(nogil=True, cache=False)
        def contains(a, x):  # pragma: no cover
            # index of x in the sorted a, or -1 (searchsorted side="left")
            lo, hi = 0, a.size
            while lo < hi:
                mid = (lo + hi) >> 1
                if a[mid] < x:
                    lo = mid + 1
                else:
                    hi = mid
            return lo if lo < a.size and a[lo] == x else -1

        @numba.njit(nogil=True, cache=False)
        def count_before(keys, offsets, cand, shifted, rel, out):  # pragma: no cover
            for j in range(cand.size):
                lo0, hi0 = offsets[cand[j]], offsets[cand[j] + 1]
                for r in range(rel.size):
                    out[r, j] = upper_bound(keys, lo0, hi0, shifted[j] + rel[r]) - lo0

        @numba.njit(nogil=True, cache=False)
        def column_scores(indptr, indices, data, cand, seen, counts, tail_seen, tail_counts,
                          full, part):  # pragma: no cover
            for j in range(cand.size):
                c = cand[j]
                total = 0.0
                recent = 0.0
                for e in range(indptr[c], indptr[c + 1]):
                    row = indices[e]
                    at = contains(seen, row)
                    if at >= 0:
                        w = np.float64(data[e])
                        total += counts[at] * w
                        at = contains(tail_seen, row)
                        if at >= 0:
                            recent += tail_counts[at] * w
                full[j] = total
                part[j] = recent

        @numba.njit(nogil=True, cache=False)
        def pairwise_sum(a, lo, n):  # pragma: no cover
            # numpy's float32 ``add.reduce`` (pairwise, 8 accumulators, blocks of 128), so
            # means and deviations come out bit for bit as numpy's
            if n < 8:
                res = np.float32(-0.0)
                for i in range(lo, lo + n):
                    res += a[i]
                return res
            if n <= 128:
                r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
                r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
                i = 8
                m = n - n % 8
                while i < m:
                    r0 += a[lo + i]
                    r1 += a[lo + i + 1]
                    r2 += a[lo + i + 2]
                    r3 += a[lo + i + 3]
                    r4 += a[lo + i + 4]
                    r5 += a[lo + i + 5]
                    r6 += a[lo + i + 6]
                    r7 += a[lo + i + 7]
                    i += 8
                res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
                while i < n:
                    res += a[lo + i]
                    i += 1
                return res
            n2 = n // 2
            n2 -= n2 % 8
            return pairwise_sum(a, lo, n2) + pairwise_sum(a, lo + n2, n - n2)

        @numba.njit(nogil=True, cache=False)
        def mean32(a):  # pragma: no cover - ``a.mean()`` of a float32 array
            return (np.float32(0.0) + pairwise_sum(a, 0, a.size)) / np.float32(a.size)

        @numba.njit(nogil=True, cache=False)
        def signal_columns(x, out, c_value, c_rank, c_z):  # pragma: no cover
            # value, rank (0 = largest, stable) and z-score within the list, as _rank and _z
            n = x.size
            order = np.argsort(-x, kind="mergesort")
            mean = mean32(x)
            dev = np.empty(n, np.float32)
            for j in range(n):
                d = x[j] - mean
                dev[j] = d * d
            var = (np.float32(0.0) + pairwise_sum(dev, 0, n)) / np.float32(n)
            denom = np.float32(np.sqrt(var)) + np.float32(1e-6)
            for j in range(n):
                out[j, c_value] = x[j]
                out[j, c_z] = (x[j] - mean) / denom
                out[order[j], c_rank] = np.float32(j)

        @numba.njit(nogil=True, cache=False)
        def history_table(hist, tail):  # pragma: no cover
            # open addressing: item -> (occurrences in hist, occurrences in its last ``tail``)
            size = 16
            while size < 2 * hist.size:
                size *= 2
            keys = np.full(size, -1, np.int64)
            full = np.zeros(size, np.float64)
            recent = np.zeros(size, np.float64)
            mask = size - 1
            for i in range(hist.size):
                item = hist[i]
                h = ((item * np.int64(-7046029254386353131)) >> 32) & mask
                while keys[h] != -1 and keys[h] != item:
                    h = (h + 1) & mask
                keys[h] = item
                full[h] += 1.0
                if i >= hist.size - tail:
                    recent[h] += 1.0
            return keys, full, recent, mask

        @numba.njit(nogil=True, cache=False)
        def merged_through(indptr, packed, cand, keys, full, recent, mask, scores, hist,
                           bitmap):  # pragma: no cover - both models at once
            # ``bitmap``: one bit per item, all clear (left clear on return); the history's
            # bits are set, so the ~98% of column entries outside the history cost one bit
            # test (a predictable branch) instead of a hash probe.
            # packed [nnz, 3] int32: row, weight bits of model 0, of model 1 (0: not an entry
            # of that model); per model the entries keep their column order, so the sums are
            # those of ``column_scores`` to the last bit. The candidates' columns are random
            # reads: their starts are loaded first, in a loop of independent loads.
            n = cand.size
            starts = np.empty(n + 1, np.int64)
            ends = np.empty(n, np.int64)
            for j in range(n):
                starts[j] = indptr[cand[j]]
                ends[j] = indptr[cand[j] + 1]
            touch = np.int32(0)
            for j in range(n):
                if ends[j] > starts[j]:
                    touch ^= packed[starts[j], 0] ^ packed[ends[j] - 1, 0]
            starts[n] = touch  # keeps the touching loop
            for i in range(hist.size):
                bitmap[hist[i] >> 6] |= np.uint64(1) << np.uint64(hist[i] & 63)
            for j in range(n):
                t0, p0, t1, p1 = 0.0, 0.0, 0.0, 0.0
                for e in range(starts[j], ends[j]):
                    row = np.int64(packed[e, 0])
                    if (bitmap[row >> 6] >> np.uint64(row & 63)) & np.uint64(1) == 0:
                        continue
                    h = ((row * np.int64(-7046029254386353131)) >> 32) & mask
                    while keys[h] != -1 and keys[h] != row:
                        h = (h + 1) & mask
                    if keys[h] == row:
                        w0 = np.float64(np.int32(packed[e, 1]).view(np.float32))
                        w1 = np.float64(np.int32(packed[e, 2]).view(np.float32))
                        if w0 != 0.0:
                            t0 += full[h] * w0
                            if recent[h] > 0.0:
                                p0 += recent[h] * w0
                        if w1 != 0.0:
                            t1 += full[h] * w1
                            if recent[h] > 0.0:
                                p1 += recent[h] * w1
                scores[0, j] = np.float32(t0)
                scores[1, j] = np.float32(p0)
                scores[2, j] = np.float32(t1)
                scores[3, j] = np.float32(p1)
            for i in range(hist.size):
                bitmap[hist[i] >> 6] = np.uint64(0)

        @numba.njit(nogil=True, cache=False)
        def rank_features(out, cols, cand, r, hist, tail, indptr, packed, bitmap, given,
                          pop_log, time_keys, item_offsets, shift, rel, t, t0, first_ts, years,
                          genres_bool, seg_row, mean_rating, consts, share):  # pragma: no cover
            # Every column of RankContext.features but the two dot products, straight into
            # ``out`` (float32 [n, n_features]); ``cols``: the columns in the order below.
            n = cand.size
            signal_columns(r, out, cols[0], cols[1], cols[3])
            rmax = r[0]
            for j in range(n):
                rmax = max(rmax, r[j])
            for j in range(n):
                out[j, cols[2]] = rmax - r[j]
            scores = np.zeros((4, n), np.float32)
            if given.shape[0] == 4:
                scores[:] = given
            elif hist.size:
                keys, full, recent, mask = history_table(hist, tail)
                merged_through(indptr, packed, cand, keys, full, recent, mask, scores,
                               hist, bitmap)
            for m in range(2):
                base = 4 + 4 * m
                signal_columns(scores[2 * m], out, cols[base], cols[base + 1], cols[base + 2])
                for j in range(n):
                    out[j, cols[base + 3]] = scores[2 * m + 1, j]
            # popularity: events up to each time within the candidate's own run of keys
            low = (np.int64(1) << shift) - 1
            n_win = rel.size - 1
            for j in range(n):
                c = cand[j]
                lo0, hi0 = item_offsets[c], item_offsets[c + 1]
                now = 0
                for k in range(rel.size):
                    count = upper_bound(time_keys, lo0, hi0, (c << shift) + rel[k]) - lo0
                    if k == 0:
                        now = count
                    else:
                        out[j, cols[12 + k]] = np.float32(np.log1p(np.float64(now - count)))
                out[j, cols[12]] = pop_log[c]
                if now > 0:
                    last = time_keys[max(lo0 + now - 1, 0)]
                    last_t = (last & low) + t0
                    out[j, cols[13 + n_win]] = np.float32(
                        np.log1p(max(t - np.float64(last_t), 0.0) / 86_400.0))
                else:
                    out[j, cols[13 + n_win]] = np.float32(-1.0)
                first = first_ts[c]
                if first >= 0 and now > 0:
                    out[j, cols[14 + n_win]] = np.float32(
                        np.log1p(max(t - np.float64(first), 0.0) / 86_400.0))
                else:
                    out[j, cols[14 + n_win]] = np.float32(-1.0)
            # content: year against the history's, genres' share of the history
            base = 15 + n_win
            n_hy = 0
            hy = np.empty(hist.size, np.float32)
            for i in range(hist.size):
                y = years[hist[i]]
                if y > 0:
                    hy[n_hy] = y
                    n_hy += 1
            hy_mean = mean32(hy[:n_hy]) if n_hy else np.float32(0.0)
            n_genres = genres_bool.shape[1]
            counts = np.zeros(n_genres, np.int64)
            for i in range(hist.size):
                for g in range(n_genres):
                    counts[g] += genres_bool[hist[i], g]
            for g in range(n_genres):
                share[g] = np.float32(counts[g] / hist.size) if hist.size else np.float32(0.0)
            for j in range(n):
                c = cand[j]
                y = years[c]
                out[j, cols[base]] = y
                out[j, cols[base + 1]] = y - hy_mean if (n_hy and y > 0) else np.float32(0.0)
                best = np.float32(0.0)
                for g in range(n_genres):
                    if genres_bool[c, g] and share[g] > best:
                        best = share[g]
                out[j, cols[base + 2]] = best
                out[j, cols[base + 3]] = seg_row[c] if seg_row.size else np.float32(0.0)
                out[j, cols[base + 4]] = mean_rating[c]
                for k in range(consts.size):
                    out[j, cols[base + 5 + k]] = np.float32(consts[k])

        _KERNELS.update(count_before=count_before, column_scores=column_scores,
                        rank_features=rank_features)
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


def merge_columns(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two sparse weight matrices' columns as one: ``(indptr, packed)``, ``packed`` int32
    [nnz, 3] = row, bits of ``a``'s float32 weight, of ``b``'s (0.0 where it has no entry),
    rows ascending within a column (as in the sorted by-column copy ``column_scores`` reads,
    so each model's entries keep its order)."""
    import scipy.sparse as sp

    n_rows, n_cols = a.shape
    parts = []
    for k, m in enumerate((a, b)):
        m = sp.coo_matrix(m)
        w = np.zeros((m.nnz, 2), dtype=np.float32)
        w[:, k] = m.data
        parts.append((m.col.astype(np.int64) * n_rows + m.row, w))
    key = np.concatenate([parts[0][0], parts[1][0]])
    w = np.concatenate([parts[0][1], parts[1][1]])
    uniq, inverse = np.unique(key, return_inverse=True)
    merged = np.zeros((uniq.size, 2), dtype=np.float32)
    np.add.at(merged, inverse, w)  # a key occurs at most once per model: a copy, not a sum
    packed = np.empty((uniq.size, 3), dtype=np.int32)
    packed[:, 0] = uniq % n_rows
    packed[:, 1:] = merged.view(np.int32)
    indptr = np.r_[0, np.cumsum(np.bincount(uniq // n_rows, minlength=n_cols))].astype(np.int64)
    return indptr, packed


def rank_features_kernel():
    """The compiled kernel behind ``RankContext.features`` (None without numba)."""
    return _compiled("rank_features")

