"""Embedding drift of user embeddings, with Evidently's embedding drift methods called
directly (in a Report they run a TSNE for the plot: 40-80 s here; the methods alone take
about a second). The methods modify the frames they receive, so they get copies.

Embeddings come from an ``EmbeddingSource``; ``RecommenderEmbeddings`` computes them with the
bundle's recommender (``recsys.Recommender``): the reference from a sample of training users,
the current window from the users it served, at the time they were served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa

from monitoring.drift.config import EmbeddingConfig
from monitoring.drift.summary import EmbeddingResult

__all__ = ["EmbeddingSource", "RecommenderEmbeddings", "embedding_drift", "evidently_method"]


@runtime_checkable
class EmbeddingSource(Protocol):
    def reference(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Up to ``n`` reference user embeddings, float [rows, dim]."""
        ...

    def current(self, window: pa.Table, n: int, rng: np.random.Generator) -> np.ndarray:
        """Up to ``n`` embeddings of users served in ``window``, float [rows, dim]."""
        ...


class RecommenderEmbeddings:
    """User embeddings from the bundle's recommender (loaded on first use)."""

    def __init__(self, bundle_dir: Path) -> None:
        self.bundle_dir = Path(bundle_dir)
        self._rec = None

    @property
    def rec(self):  # noqa: ANN201 - recsys.Recommender, imported lazily
        if self._rec is None:
            from recsys import Recommender

            self._rec = Recommender.load(self.bundle_dir)
        return self._rec

    def _embed(self, user_ids: np.ndarray, ts: np.ndarray | None) -> np.ndarray:
        rec = self.rec
        rows = []
        for i, uid in enumerate(user_ids):
            state = rec.user_state(int(uid), ts=None if ts is None else float(ts[i]))
            rows.append(rec.user_embedding(state))
        return np.asarray(rows, dtype=np.float64)

    def reference(self, n: int, rng: np.random.Generator) -> np.ndarray:
        ids = self.rec.users["user_id"].to_numpy()
        take = ids if ids.size <= n else rng.choice(ids, n, replace=False)
        return self._embed(take, None)

    def current(self, window: pa.Table, n: int, rng: np.random.Generator) -> np.ndarray:
        uid = window.column("user_id").to_numpy()
        ts = window.column("ts").to_numpy() if "ts" in window.column_names else None
        idx = np.arange(uid.size) if uid.size <= n else rng.choice(uid.size, n, replace=False)
        return self._embed(uid[idx], None if ts is None else ts[idx])


def evidently_method(cfg: EmbeddingConfig):  # noqa: ANN201 - an Evidently DriftMethod
    from evidently.legacy.metrics.data_drift import embedding_drift_methods as m

    return {"mmd": m.mmd, "distance": m.distance, "model": m.model,
            "ratio": m.ratio}[cfg.method](threshold=cfg.threshold)


def embedding_drift(source: EmbeddingSource | None, window: pa.Table, cfg: EmbeddingConfig,
                    rng: np.random.Generator) -> EmbeddingResult:
    base = dict(method=cfg.method, threshold=cfg.threshold)
    if source is None:
        return EmbeddingResult(**base, skipped="no embedding source (the bundle's recommender "
                               "could not be loaded)")
    ref = np.asarray(source.reference(cfg.sample_rows, rng), dtype=np.float64)
    cur = np.asarray(source.current(window, cfg.sample_rows, rng), dtype=np.float64)
    if ref.ndim != 2 or cur.ndim != 2 or ref.shape[1] != cur.shape[1] or not len(ref) \
            or not len(cur):
        return EmbeddingResult(**base, skipped=f"unusable embeddings: reference {ref.shape}, "
                               f"current {cur.shape}")
    cols = [f"e{i}" for i in range(ref.shape[1])]
    score, drifted, _ = evidently_method(cfg)(pd.DataFrame(cur.copy(), columns=cols),
                                              pd.DataFrame(ref.copy(), columns=cols))
    return EmbeddingResult(**base, score=float(score), drifted=bool(drifted),
                           rows_reference=len(ref), rows_current=len(cur))
