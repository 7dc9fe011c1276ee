"""Drift statistics on numpy, with Evidently's definitions, sized for a million rows.

Evidently computes the same numbers through pandas several times over; here each is computed
once from the cheapest sufficient statistic:

* ``wasserstein`` (normed): W1(reference, current) / max(std(reference), 0.001).
  Integer-valued features (hour, weekday, history length) → exact, from value counts over
  every row. Continuous features → exact W1 between the reference and a random sample of the
  window (``sample_rows``); when that score lies within ``exact_margin`` of the threshold it
  is recomputed on every row, so a verdict never hangs on the sample.
* ``jensenshannon``: scipy's Jensen-Shannon distance (natural log) between the category
  frequencies (categorical features; every row, from value counts), or between histograms
  binned as Evidently bins numeric features (Sturges bins over both, or one bin per value
  when the reference has ≤ 20 distinct values).
* any other Evidently stat-test name: Evidently's own implementation, on the reference and
  a sample of the window.

Verdicts follow Evidently: drifted when ``score >= threshold``. Both distances are scale-free:
values past ~1e144, whose spread's squares or differences would overflow float64 (a normed
Wasserstein of 0 or NaN, "no drift", for a window five spreads away), are scaled by one power
of two first (:func:`unit_scale`), which changes neither score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.spatial import distance

__all__ = ["FeatureScore", "Counts", "wasserstein_norm", "jensenshannon_counts", "value_counts",
           "to_float", "score_numeric", "score_categorical", "w1_sorted",
           "jensenshannon_numeric", "evidently_stattest", "finite", "unit_scale",
           "SPREAD_FLOOR"]

Counts = Mapping[object, int]
#: Evidently's floor under the reference's spread in the normed Wasserstein distance
SPREAD_FLOOR = 0.001

_MAX_INT_RANGE = 1_000_000
#: Magnitude from which values are scaled down before a spread or a difference is taken:
#: squares of deviations overflow float64 past ~1.3e154, and a sum of them sooner.
_HUGE = 2.0 ** 480


@dataclass(frozen=True)
class FeatureScore:
    score: float
    drifted: bool
    rows_reference: int
    rows_current: int  # rows the score was computed from
    exact: bool        # False when computed on a sample of the window


def finite(x: np.ndarray) -> np.ndarray:
    """Float64 view without NaN and ±inf (Evidently drops them before testing)."""
    x = np.asarray(x, dtype=np.float64)
    mask = np.isfinite(x)
    return x if mask.all() else x[mask]


def _finite_sides(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sides without NaN and ±inf (:func:`finite`); a ValueError naming the side left
    with no value (nothing to compare)."""
    kept = []
    for side, x in (("reference", ref), ("current window", cur)):
        k = finite(x)
        if k.size == 0:
            n = np.size(x)
            raise ValueError(f"the {side} has no finite value"
                             + (f" (all {n:,} values are NaN or ±inf)" if n else ""))
        kept.append(k)
    return kept[0], kept[1]


def unit_scale(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Both (finite, non-empty) sides times 2**-e, and e, when their magnitude reaches
    ``_HUGE`` (else as they are, e = 0). A power of two scales exactly, so W1 / std and the
    histogram bins are the same as on the values themselves, without overflow."""
    top = max(float(np.max(np.abs(ref))), float(np.max(np.abs(cur))))
    if top < _HUGE:
        return ref, cur, 0
    e = math.frexp(top)[1]
    return np.ldexp(ref, -e), np.ldexp(cur, -e), e


def _integer_grid(ref: np.ndarray, cur: np.ndarray) -> tuple[float, int] | None:
    """(lowest value, number of unit steps) when both hold small-range integers only."""
    lo = min(ref.min(), cur.min())
    hi = max(ref.max(), cur.max())
    if hi - lo > _MAX_INT_RANGE:
        return None
    if not (np.array_equal(ref, np.floor(ref)) and np.array_equal(cur, np.floor(cur))):
        return None
    return float(lo), int(hi - lo)


def _w1_integer(ref: np.ndarray, cur: np.ndarray, lo: float, steps: int) -> float:
    cr = np.bincount((ref - lo).astype(np.int64), minlength=steps + 1)
    cc = np.bincount((cur - lo).astype(np.int64), minlength=steps + 1)
    fr = np.cumsum(cr) / ref.size
    fc = np.cumsum(cc) / cur.size
    return float(np.abs(fr - fc)[:-1].sum())  # unit spacing between grid points


def w1_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """First Wasserstein distance of two sorted samples: the integral of |F_u - F_v|
    (scipy.stats.wasserstein_distance's formula, without re-sorting)."""
    both = np.concatenate([u, v])
    both.sort(kind="stable")  # two sorted runs: a linear merge
    cu = np.searchsorted(u, both[:-1], side="right") / u.size
    cv = np.searchsorted(v, both[:-1], side="right") / v.size
    return float(np.sum(np.abs(cu - cv) * np.diff(both)))


def wasserstein_norm(ref: np.ndarray, cur: np.ndarray, threshold: float, *,
                     sample_rows: int, exact_margin: float,
                     rng: np.random.Generator) -> FeatureScore:
    """Evidently's normed Wasserstein distance (numeric features)."""
    ref, cur = _finite_sides(ref, cur)
    ref, cur, e = unit_scale(ref, cur)
    norm = max(float(np.std(ref)), math.ldexp(SPREAD_FLOOR, -e))
    grid = _integer_grid(ref, cur)
    if grid is not None:
        score = _w1_integer(ref, cur, *grid) / norm
        return FeatureScore(score, score >= threshold, ref.size, cur.size, True)
    exact = cur.size <= sample_rows
    sample = cur if exact else cur[rng.choice(cur.size, sample_rows, replace=False)]
    ref_sorted = np.sort(ref)
    score = w1_sorted(ref_sorted, np.sort(sample)) / norm
    if not exact and abs(score - threshold) < exact_margin:
        score, exact, sample = w1_sorted(ref_sorted, np.sort(cur)) / norm, True, cur
    return FeatureScore(float(score), bool(score >= threshold), ref.size, sample.size, exact)


def jensenshannon_counts(ref: Counts, cur: Counts, threshold: float) -> FeatureScore:
    """Evidently's Jensen-Shannon distance between category frequencies."""
    keys = list(set(ref) | set(cur))
    n_ref, n_cur = sum(ref.values()), sum(cur.values())
    for side, n in (("reference", n_ref), ("current window", n_cur)):
        if n == 0:
            raise ValueError(f"the {side} has no non-null value")
    p = np.array([ref.get(k, 0) for k in keys], dtype=np.float64) / n_ref
    q = np.array([cur.get(k, 0) for k in keys], dtype=np.float64) / n_cur
    score = float(distance.jensenshannon(p, q))
    return FeatureScore(score, score >= threshold, n_ref, n_cur, True)


def jensenshannon_numeric(ref: np.ndarray, cur: np.ndarray, threshold: float) -> FeatureScore:
    """Evidently's Jensen-Shannon distance for a numeric feature (its binning rule)."""
    ref, cur = _finite_sides(ref, cur)
    if np.unique(ref).size > 20:
        ref, cur, _ = unit_scale(ref, cur)  # hi - lo of values near ±1.8e308 is inf
        lo, hi = min(ref.min(), cur.min()), max(ref.max(), cur.max())
        n_bins = int(np.ceil(np.log2(ref.size + cur.size) + 1.0)) if hi > lo else 1
        edges = np.linspace(lo, hi, n_bins + 1)
        p = np.histogram(ref, edges)[0] / ref.size
        q = np.histogram(cur, edges)[0] / cur.size
        score = float(distance.jensenshannon(p, q))
        return FeatureScore(score, score >= threshold, ref.size, cur.size, True)
    rv, rc = np.unique(ref, return_counts=True)
    cv, cc = np.unique(cur, return_counts=True)
    return jensenshannon_counts(dict(zip(rv.tolist(), rc.tolist())),
                                dict(zip(cv.tolist(), cc.tolist())), threshold)


def evidently_stattest(method: str, ref: np.ndarray, cur: np.ndarray, kind: str,
                       threshold: float, *, sample_rows: int,
                       rng: np.random.Generator) -> FeatureScore:
    """Any Evidently stat test by name, on the reference and a sample of the window."""
    import pandas as pd
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    ctype = ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical
    if kind == "numeric":
        ref, cur = _finite_sides(ref, cur)
    exact = len(cur) <= sample_rows
    if not exact:
        cur = np.asarray(cur)[rng.choice(len(cur), sample_rows, replace=False)]
    r, c = pd.Series(ref).dropna(), pd.Series(cur).dropna()
    test = get_stattest(r, c, ctype, method)
    res = test(r, c, ctype, threshold)
    return FeatureScore(float(res.drift_score), bool(res.drifted), len(r), len(c), exact)


def value_counts(col) -> dict:
    """Non-null value → count of a pyarrow (chunked) array."""
    import pyarrow.compute as pc

    vc = pc.value_counts(col)  # dictionary-encoded columns are counted on their indices
    return {v: c for v, c in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())
            if v is not None}


def to_float(col) -> np.ndarray:
    """A pyarrow numeric (chunked) array as float64 numpy, nulls as NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pc.cast(col, pa.float64())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.to_numpy(zero_copy_only=False)


def score_numeric(method: str, ref: np.ndarray, cur: np.ndarray, threshold: float, *,
                  sample_rows: int, exact_margin: float,
                  rng: np.random.Generator) -> FeatureScore:
    if method == "wasserstein":
        return wasserstein_norm(ref, cur, threshold, sample_rows=sample_rows,
                                exact_margin=exact_margin, rng=rng)
    if method == "jensenshannon":
        return jensenshannon_numeric(ref, cur, threshold)
    return evidently_stattest(method, ref, cur, "numeric", threshold, sample_rows=sample_rows,
                              rng=rng)


def score_categorical(method: str, ref: Counts, cur: Counts, threshold: float, *,
                      sample_rows: int, rng: np.random.Generator) -> FeatureScore:
    if method == "jensenshannon":
        return jensenshannon_counts(ref, cur, threshold)

    def expand(counts: Counts) -> np.ndarray:
        keys = list(counts)
        return np.repeat(np.array(keys, dtype=object), [counts[k] for k in keys])

    return evidently_stattest(method, expand(ref), expand(cur), "categorical", threshold,
                              sample_rows=sample_rows, rng=rng)
