"""The retrieval index: FAISS over the item embeddings, score = user_vec · item_vec.

Small catalogues get exact inner-product search (``IndexFlatIP``). Above
``exact_index_max_items`` the index is approximate (HNSW by default, IVF on request). Maximum
inner product search is turned into nearest-neighbour search with the usual extra dimension
(``sqrt(max_norm² − ‖x‖²)`` on items, 0 on queries), and the scores of the returned candidates
are recomputed exactly, so an approximate index only changes *which* items come back, never
their scores. At load, recall@k against exact search is measured on a sample of queries and
the search width (``efSearch`` / ``nprobe``) is raised until it reaches the target.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Literal

import faiss
import numpy as np

__all__ = ["IndexReport", "RetrievalIndex", "recall_at_k"]

log = logging.getLogger(__name__)

IndexKind = Literal["flat", "hnsw", "ivf"]


@dataclass(frozen=True)
class IndexReport:
    """What was built and how well it does, exposed by the runtime (and in ``/v1/models``)."""

    kind: str
    n_items: int
    dim: int
    k: int
    build_seconds: float
    recall: float  # recall@k against exact search on `sample` queries (1.0 for flat)
    sample: int
    search_width: int  # efSearch (hnsw), nprobe (ivf), 0 (flat)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of the exact top-k found by the approximate search (rows are queries)."""
    hits = [len(np.intersect1d(a[a >= 0], e[e >= 0])) / max(int((e >= 0).sum()), 1)
            for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits)) if hits else 1.0


class RetrievalIndex:
    """Top-k inner-product search over a fixed item matrix (row i = item row i)."""

    def __init__(self, embeddings: np.ndarray, *, kind: IndexKind, k: int,
                 hnsw_m: int = 32, hnsw_ef_construction: int = 80, ef_search: int = 256,
                 ivf_lists: int = 0, nprobe: int = 32, build_threads: int | None = None,
                 search_threads: int = 1, seed: int = 0) -> None:
        self.items = np.ascontiguousarray(embeddings, dtype=np.float32)
        n, d = self.items.shape
        self.kind: IndexKind = kind if n > 0 else "flat"
        self.k = k
        self._search_threads = search_threads
        started = time.perf_counter()
        faiss.omp_set_num_threads(build_threads or os.cpu_count() or 1)
        try:
            if self.kind == "flat":
                self._index = faiss.IndexFlatIP(d)
                self._index.add(self.items)
            else:
                aug = self._augment_items(self.items)
                if self.kind == "hnsw":
                    index = faiss.IndexHNSWFlat(d + 1, hnsw_m)
                    index.hnsw.efConstruction = hnsw_ef_construction
                    index.add(aug)
                    index.hnsw.efSearch = max(ef_search, k)
                else:
                    nlist = ivf_lists or max(16, int(4 * np.sqrt(n)))
                    nlist = min(nlist, max(1, n // 39))  # FAISS wants ≥ 39 points per list
                    quantizer = faiss.IndexFlatL2(d + 1)
                    index = faiss.IndexIVFFlat(quantizer, d + 1, nlist, faiss.METRIC_L2)
                    rng = np.random.default_rng(seed)
                    train = aug[rng.choice(n, size=min(n, nlist * 40), replace=False)]
                    index.train(train)
                    index.add(aug)
                    index.nprobe = min(nprobe, nlist)
                    self._quantizer = quantizer  # keep alive for the IVF index
                self._index = index
        finally:
            faiss.omp_set_num_threads(search_threads)
        self.build_seconds = time.perf_counter() - started
        self.report = IndexReport(kind=self.kind, n_items=n, dim=d, k=k,
                                  build_seconds=round(self.build_seconds, 3), recall=1.0,
                                  sample=0, search_width=self.search_width)

    # Building ---------------------------------------------------------------------------------
    @staticmethod
    def _augment_items(x: np.ndarray) -> np.ndarray:
        norms = np.einsum("ij,ij->i", x, x)
        extra = np.sqrt(np.maximum(norms.max(initial=0.0) - norms, 0.0)).astype(np.float32)
        return np.ascontiguousarray(np.hstack([x, extra[:, None]]), dtype=np.float32)

    @property
    def search_width(self) -> int:
        if self.kind == "hnsw":
            return int(self._index.hnsw.efSearch)
        if self.kind == "ivf":
            return int(self._index.nprobe)
        return 0

    def _set_width(self, width: int) -> None:
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = int(width)
        elif self.kind == "ivf":
            self._index.nprobe = int(min(width, self._index.nlist))

    def _max_width(self) -> int:
        if self.kind == "hnsw":
            return max(4096, self.k)
        if self.kind == "ivf":
            return int(self._index.nlist)
        return 0

    # Searching --------------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item rows for one query, best first, with exact inner-product scores."""
        idx, _ = self.search_batch(np.asarray(query, dtype=np.float32)[None, :], k)
        rows = idx[0]
        rows = rows[rows >= 0]
        scores = self.items[rows] @ np.asarray(query, dtype=np.float32)
        if self.kind != "flat":  # the graph/IVF order is approximate: sort by exact score
            order = np.argsort(-scores, kind="stable")
            rows, scores = rows[order], scores[order]
        return rows.astype(np.int64), scores.astype(np.float32)

    def search_batch(self, queries: np.ndarray, k: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        k = min(k or self.k, self.items.shape[0])
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if self.kind != "flat":
            q = np.ascontiguousarray(np.hstack([q, np.zeros((q.shape[0], 1), np.float32)]))
        dist, idx = self._index.search(q, k)
        return idx, dist

    def exact_batch(self, queries: np.ndarray, k: int | None = None) -> np.ndarray:
        """Exact top-k rows by brute force (numpy), for measuring recall."""
        k = min(k or self.k, self.items.shape[0])
        out = np.empty((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), 64):
            s = np.asarray(queries[start:start + 64], dtype=np.float32) @ self.items.T
            part = np.argpartition(-s, k - 1, axis=1)[:, :k]
            out[start:start + 64] = part
        return out

    # Calibration ------------------------------------------------------------------------------
    def calibrate(self, queries: np.ndarray, target_recall: float) -> IndexReport:
        """Measure recall@k on ``queries``; widen the search until it reaches the target."""
        queries = np.asarray(queries, dtype=np.float32)
        if self.kind == "flat" or len(queries) == 0:
            self.report = IndexReport(**{**self.report.as_dict(), "recall": 1.0,
                                         "sample": int(len(queries))})
            return self.report
        exact = self.exact_batch(queries)
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        try:
            while True:
                approx, _ = self.search_batch(queries)
                recall = recall_at_k(approx, exact)
                width = self.search_width
                log.info("index %s width=%d recall@%d=%.4f", self.kind, width, self.k, recall)
                if recall >= target_recall or width >= self._max_width():
                    break
                self._set_width(max(width + 1, int(width * 1.5)))
        finally:
            faiss.omp_set_num_threads(self._search_threads)
        self.report = IndexReport(**{**self.report.as_dict(), "recall": round(recall, 4),
                                     "sample": int(len(queries)),
                                     "search_width": self.search_width})
        return self.report
