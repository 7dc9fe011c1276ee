"""Prediction drift: what the model returns, against what it returned at training time.

* ``score``: the top score of each request (``scores[0]``) against the reference's ``score``.
* ``item_popularity``: log1p(train count) of every recommended item.
* ``genre_mix``: genres of every recommended item (an item counts once per genre).

Each is computed on a random sample of at most ``sample_rows`` requests (all their items).

The last two need the bundle's item tables and a reference of recommendations: the bundle's
``reference/predictions.parquet`` or a baseline window of payload logs. Without them the
check is reported as skipped, with the reason, rather than guessed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from monitoring.drift.config import PredictionConfig
from monitoring.drift.stats import score_categorical, score_numeric, to_float
from monitoring.drift.summary import PredictionResult
from monitoring.errors import MonitoringInputError

__all__ = ["ItemLookup", "prediction_drift", "top_scores", "recommended_items"]


class ItemLookup:
    """item_id → log popularity and genres, through dense id → row tables."""

    def __init__(self, items: pd.DataFrame | None, popularity: pd.DataFrame | None) -> None:
        self.log_pop = self.pop_index = None
        self.genre_index = self.genre_matrix = self.genres = None
        if popularity is not None and len(popularity):
            ids = popularity["item_id"].to_numpy(np.int64)
            self.pop_index = self._index(ids)
            self.log_pop = np.log1p(popularity["count"].to_numpy(np.float64))
        if items is not None and len(items):
            self.genre_index = self._index(items["item_id"].to_numpy(np.int64))
            split = items["genres"].fillna("").astype(str).str.split("|")
            self.genres = sorted({g for gs in split for g in gs if g})
            index = {g: i for i, g in enumerate(self.genres)}
            self.genre_matrix = np.zeros((len(items), len(self.genres)), dtype=np.int64)
            for row, gs in enumerate(split):
                for g in gs:
                    if g:
                        self.genre_matrix[row, index[g]] = 1

    @staticmethod
    def _index(ids: np.ndarray) -> np.ndarray:
        table = np.full(int(ids.max(initial=0)) + 2, -1, dtype=np.int64)
        table[ids[ids >= 0]] = np.flatnonzero(ids >= 0)
        return table

    @staticmethod
    def _rows(index: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        """Rows of known ids (unknown and out-of-range ids dropped)."""
        w = np.where((wanted >= 0) & (wanted < index.size), wanted, index.size - 1)
        rows = index[w]
        return rows[rows >= 0]

    def log_popularity(self, item_ids: np.ndarray) -> np.ndarray | None:
        if self.pop_index is None:
            return None
        return self.log_pop[self._rows(self.pop_index, item_ids)]

    def genre_counts(self, item_ids: np.ndarray) -> dict[str, int] | None:
        if self.genre_index is None:
            return None
        rows = self._rows(self.genre_index, item_ids)
        per_row = np.bincount(rows, minlength=self.genre_matrix.shape[0])
        totals = per_row @ self.genre_matrix
        return {g: int(c) for g, c in zip(self.genres, totals) if c}


def top_scores(table: pa.Table) -> np.ndarray:
    """``scores[0]`` of every request that returned something."""
    return _first(table.column("scores"))


def _first(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    flat = to_float(pc.list_flatten(arr))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return flat[starts[lengths > 0]]


def recommended_items(table: pa.Table) -> np.ndarray:
    flat = pc.list_flatten(table.column("items"))
    return np.asarray(pc.cast(flat, pa.int64()).to_numpy(), dtype=np.int64)


def _score(name: str, compute):  # noqa: ANN001, ANN202 - a FeatureScore
    """``compute()``; what it cannot score (a model that returns NaN scores, no list with an
    item) is bad input naming the prediction metric, as for a feature (exit 2)."""
    try:
        return compute()
    except (ValueError, TypeError, pa.ArrowInvalid) as exc:
        raise MonitoringInputError(f"prediction drift {name!r}: {exc}") from exc


def prediction_drift(cfg: PredictionConfig, window: pa.Table, reference_scores: np.ndarray | None,
                     reference_predictions: pa.Table | None, lookup: ItemLookup, *,
                     sample_rows: int, exact_margin: float,
                     rng: np.random.Generator) -> list[PredictionResult]:
    out: list[PredictionResult] = []
    if window.num_rows > sample_rows:  # every request carries k items: a sample suffices
        window = window.take(np.sort(rng.choice(window.num_rows, sample_rows, replace=False)))
    c = cfg.score
    if "scores" not in window.column_names:
        out.append(PredictionResult(name="score", method=c.method, threshold=c.threshold,
                                    skipped="the window has no scores column"))
    elif reference_scores is None:
        out.append(PredictionResult(name="score", method=c.method, threshold=c.threshold,
                                    skipped="the reference has no score column"))
    else:
        cur = _first(window.column("scores"))
        s = _score("score", lambda: score_numeric(
            c.method, reference_scores, cur, c.threshold, sample_rows=sample_rows,
            exact_margin=exact_margin, rng=rng))
        out.append(PredictionResult(name="score", method=c.method, threshold=c.threshold,
                                    score=s.score, drifted=s.drifted,
                                    rows_reference=s.rows_reference, rows_current=s.rows_current))

    items_skip = None
    if "items" not in window.column_names:
        items_skip = "the window has no items column"
    elif reference_predictions is None:
        items_skip = ("no reference recommendations (bundle reference/predictions.parquet or "
                      "--baseline-since)")
    cur_items = recommended_items(window) if items_skip is None else None
    ref_items = recommended_items(reference_predictions) if items_skip is None else None

    c = cfg.item_popularity
    skip = items_skip or (None if lookup.pop_index is not None else "the bundle has no "
                          "model/popularity.parquet")
    if skip:
        out.append(PredictionResult(name="item_popularity", method=c.method,
                                    threshold=c.threshold, skipped=skip))
    else:
        s = _score("item_popularity", lambda: score_numeric(
            c.method, lookup.log_popularity(ref_items), lookup.log_popularity(cur_items),
            c.threshold, sample_rows=sample_rows, exact_margin=exact_margin, rng=rng))
        out.append(PredictionResult(name="item_popularity", method=c.method,
                                    threshold=c.threshold, score=s.score, drifted=s.drifted,
                                    rows_reference=s.rows_reference, rows_current=s.rows_current))

    c = cfg.genre_mix
    skip = items_skip or (None if lookup.genre_index is not None else "the bundle has no "
                          "model/items.parquet")
    if skip:
        out.append(PredictionResult(name="genre_mix", method=c.method, threshold=c.threshold,
                                    skipped=skip))
    else:
        s = _score("genre_mix", lambda: score_categorical(
            c.method, lookup.genre_counts(ref_items), lookup.genre_counts(cur_items),
            c.threshold, sample_rows=sample_rows, rng=rng))
        out.append(PredictionResult(name="genre_mix", method=c.method, threshold=c.threshold,
                                    score=s.score, drifted=s.drifted,
                                    rows_reference=s.rows_reference, rows_current=s.rows_current))
    return out
