"""The serving runtime: one loaded bundle, its retrieval index, and ``recommend``.

``recommend(user_id, k, context, history)`` runs the stages of the multi-stage recommender
on one request: features (online state) → retrieve (FAISS, ≥ ``candidates`` items, seen items
excluded) → rank → re-rank. Each stage has a time budget; a stage that raises or overruns
ends the request with the popularity fallback (``fallback=True``). Users the recommender calls
cold (unknown, or too little history) and that bring no history get popularity as well
(``cold_start=True``), never an error. The model's unavailable items (its re-rank config's
``exclude_items``) never appear, and do not shorten a list below ``k``.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from recsys.rerank import isin_small
from serving import metrics
from serving.runtime.index import IndexReport, RetrievalIndex
from serving.runtime.online import BundleHistory, HistorySource
from serving.settings import ServingSettings

__all__ = ["Recommendation", "OnlineRecommender", "Runtime", "StageBudgets"]

log = logging.getLogger(__name__)


class OnlineRecommender(Protocol):
    """What the runtime needs of ``recsys.Recommender`` (docs/CONTRACTS.md, online API)."""

    version: str
    item_ids: np.ndarray

    def item_embeddings(self) -> np.ndarray: ...
    def user_state(self, user_id: int, history: list[int] | None = None,
                   ts: float | None = None, context: dict | None = None,
                   demographics: Mapping[str, str] | None = None) -> Any: ...
    def user_embedding(self, state: Any) -> np.ndarray: ...
    def rank(self, state: Any, cand_idx: np.ndarray, retrieval_scores: np.ndarray
             ) -> np.ndarray: ...
    def rerank(self, state: Any, cand_idx: np.ndarray, scores: np.ndarray, k: int
               ) -> tuple[np.ndarray, np.ndarray]: ...
    def popular(self, state: Any, k: int, exclude: set[int] | None = None
                ) -> tuple[np.ndarray, np.ndarray]: ...
    def features(self, state: Any) -> dict[str, object]: ...
    def seen_idx(self, state: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class Recommendation:
    items: list[int]
    scores: list[float]
    model_version: str
    request_id: str
    cold_start: bool
    fallback: bool
    features: dict[str, object]
    fallback_reason: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StageBudgets:
    retrieve_ms: float = 50.0
    rank_ms: float = 50.0
    rerank_ms: float = 20.0


class _NullMetric:
    """Stands in for a metric child while the runtime warms up."""

    def observe(self, value: float) -> None:
        return None

    def inc(self, value: float = 1.0) -> None:
        return None


class _StageFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Runtime:
    """A loaded model version, ready to answer ``recommend`` in-process (thread-safe reads)."""

    def __init__(self, rec: OnlineRecommender, *, candidates: int = 200,
                 index: RetrievalIndex | None = None, budgets: StageBudgets | None = None,
                 history: HistorySource | None = None, bundle_uri: str | None = None,
                 bundle_dir: str | None = None, cold_start_popular: bool = False) -> None:
        self.rec = rec
        self.cold_start_popular = cold_start_popular
        self.version = str(rec.version)
        self.item_ids = np.asarray(rec.item_ids, dtype=np.int64)
        self.n_items = len(self.item_ids)
        self.candidates = max(1, min(candidates, self.n_items))
        self.index = index or RetrievalIndex(rec.item_embeddings(), kind="flat", k=self.candidates)
        self.budgets = budgets or StageBudgets()
        self.history = history or BundleHistory()
        self.bundle_uri = bundle_uri
        self.bundle_dir = bundle_dir
        self.unavailable = _unavailable_rows(rec, self.item_ids)
        self._lat = {s: metrics.STAGE_LATENCY.labels(self.version, s) for s in metrics.STAGES}
        self._cold = metrics.COLD_STARTS.labels(self.version)
        self._scores = metrics.SCORES.labels(self.version)
        metrics.INDEX_RECALL.labels(self.version).set(self.index.report.recall)
        metrics.MODEL_READY.labels(self.version).set(1)

    # Construction -----------------------------------------------------------------------------
    @classmethod
    def build(cls, rec: OnlineRecommender, settings: ServingSettings, *,
              history: HistorySource | None = None, bundle_uri: str | None = None,
              bundle_dir: str | None = None, calibration_queries: np.ndarray | None = None
              ) -> Runtime:
        """Build the index the settings ask for and calibrate it on a sample of queries."""
        emb = np.asarray(rec.item_embeddings(), dtype=np.float32)
        n = emb.shape[0]
        # unset: the model's own pool and cold-start answer, as Recommender.recommend uses them
        wanted = settings.candidates or _model_setting(rec, "ranker", "n_candidates", 200)
        cold_start = settings.cold_start_strategy or getattr(rec, "cold_start_strategy", "model")
        candidates = max(1, min(wanted, n))
        kind = settings.index_kind
        if kind == "auto":
            kind = "flat" if n <= settings.exact_index_max_items else "ivf"
        index = RetrievalIndex(emb, kind=kind, k=candidates, hnsw_m=settings.hnsw_m,
                               hnsw_ef_construction=settings.hnsw_ef_construction,
                               ef_search=settings.hnsw_ef_search, ivf_lists=settings.ivf_lists,
                               nprobe=settings.ivf_nprobe, search_threads=settings.index_threads)
        if kind != "flat":
            queries = calibration_queries
            if queries is None:
                queries = _sample_queries(rec, settings.recall_sample)
            index.calibrate(queries, settings.target_recall)
        log.info("model %s: index %s", rec.version, index.report)
        return cls(rec, candidates=candidates, index=index,
                   budgets=StageBudgets(settings.budget_retrieve_ms, settings.budget_rank_ms,
                                        settings.budget_rerank_ms),
                   history=history, bundle_uri=bundle_uri, bundle_dir=bundle_dir,
                   cold_start_popular=cold_start == "popular")

    @property
    def index_report(self) -> IndexReport:
        return self.index.report

    def warm_up(self, n_users: int = 3) -> None:
        """Run the request path for a few known users and one unknown, recording no metric
        and with no stage budget, so that the first real requests do not pay first-call
        costs (measured: ~30 ms against 4–5 ms, once over the rank budget, so a fallback)."""
        saved = self._lat, self._cold, self._scores, self.budgets
        null = _NullMetric()
        self._lat = dict.fromkeys(saved[0], null)
        self._cold = self._scores = null
        self.budgets = StageBudgets(math.inf, math.inf, math.inf)
        try:
            ids = getattr(self.rec, "user_ids", None)
            users = getattr(self.rec, "users", None)
            if ids is None and users is not None and "user_id" in getattr(users, "columns", ()):
                ids = users["user_id"].to_numpy()
            known = [] if ids is None else np.asarray(ids)[:n_users].tolist()
            for user in [*known, 2**62]:
                self.recommend(int(user), 10)
        finally:
            self._lat, self._cold, self._scores, self.budgets = saved

    # Serving ----------------------------------------------------------------------------------
    def recommend(self, user_id: int, k: int = 10, context: Mapping[str, Any] | None = None,
                  history: list[int] | None = None, request_id: str | None = None,
                  ts: float | None = None, demographics: Mapping[str, str] | None = None
                  ) -> Recommendation:
        """Top-``k`` items for one user; never raises for an unknown user.

        The request time is ``ts``, else a numeric ``context["ts"]`` (unix seconds, so a replay
        or a comparison between servers is deterministic), else now. ``demographics`` describe
        a user the model has no record of (``Recommender.user_state``).
        """
        t0 = time.perf_counter()
        request_id = request_id or uuid.uuid4().hex
        if ts is None and context and isinstance(context.get("ts"), int | float) \
                and not isinstance(context.get("ts"), bool):
            ts = float(context["ts"])
        ts = time.time() if ts is None else ts
        timings: dict[str, float] = {}
        if history is None:
            history = self.history.history(user_id)
        ctx = dict(context) if context else None
        state = self.rec.user_state(user_id, history=history, ts=ts, context=ctx,
                                    demographics=demographics)
        cold = bool(getattr(state, "cold_start", False))
        seen = np.asarray(self.rec.seen_idx(state), dtype=np.int64)
        feats = self.rec.features(state)
        t_feat = time.perf_counter()
        timings["features"] = (t_feat - t0) * 1e3

        fallback_reason: str | None = None
        if cold and self.cold_start_popular:
            idx, scores = self._popular(state, k, seen)
        else:
            try:
                idx, scores = self._pipeline(state, k, seen, timings)
            except _StageFailed as exc:
                fallback_reason = exc.reason
                metrics.FALLBACKS.labels(self.version, exc.reason).inc()
                idx, scores = self._popular(state, k, seen)
        total = time.perf_counter() - t0
        timings["total"] = total * 1e3
        self._lat["features"].observe(t_feat - t0)
        self._lat["total"].observe(total)
        if cold:
            self._cold.inc()
        items = self.item_ids[idx].tolist()
        score_list = [float(s) for s in scores]
        for s in score_list:
            self._scores.observe(s)
        return Recommendation(items=items, scores=score_list, model_version=self.version,
                              request_id=request_id, cold_start=cold,
                              fallback=fallback_reason is not None, features=feats,
                              fallback_reason=fallback_reason, timings_ms=timings)

    def _stage(self, name: str, started: float, budget_ms: float,
               timings: dict[str, float]) -> float:
        now = time.perf_counter()
        elapsed = now - started
        timings[name] = elapsed * 1e3
        self._lat[name].observe(elapsed)
        if elapsed * 1e3 > budget_ms:
            raise _StageFailed(f"{name}_timeout")
        return now

    def _pipeline(self, state: Any, k: int, seen: np.ndarray, timings: dict[str, float]
                  ) -> tuple[np.ndarray, np.ndarray]:
        b = self.budgets
        t = time.perf_counter()
        try:
            query = np.asarray(self.rec.user_embedding(state), dtype=np.float32)
            # At least k candidates: a k above the candidates setting still gets k items.
            n_cand = max(self.candidates, min(k, self.n_items))
            want = min(self.n_items, n_cand + int(seen.size) + int(self.unavailable.size))
            cand, cand_scores = self.index.search(query, want)
            if seen.size:
                keep = ~isin_small(cand, seen)
                cand, cand_scores = cand[keep], cand_scores[keep]
            pool = self._pool_size(cand, n_cand, k)
            cand, cand_scores = cand[:pool], cand_scores[:pool]
        except Exception:  # noqa: BLE001 - any stage failure degrades to popularity
            log.exception("retrieve failed")
            raise _StageFailed("retrieve_error") from None
        if cand.size == 0:
            raise _StageFailed("retrieve_empty")
        t = self._stage("retrieve", t, b.retrieve_ms, timings)
        try:
            ranked = np.asarray(self.rec.rank(state, cand, cand_scores), dtype=np.float32)
        except Exception:  # noqa: BLE001
            log.exception("rank failed")
            raise _StageFailed("rank_error") from None
        t = self._stage("rank", t, b.rank_ms, timings)
        try:
            idx, scores = self.rec.rerank(state, cand, ranked, k)
        except Exception:  # noqa: BLE001
            log.exception("rerank failed")
            raise _StageFailed("rerank_error") from None
        self._stage("rerank", t, b.rerank_ms, timings)
        return np.asarray(idx, dtype=np.int64), np.asarray(scores, dtype=np.float64)

    def _pool_size(self, cand: np.ndarray, n_cand: int, k: int) -> int:
        """How many of the retrieved candidates (best first) go on to rank and re-rank:
        ``n_cand``, or more when the re-ranker's removal of unavailable items would leave
        fewer than ``k`` of them (a pool of exactly ``n_cand`` keeps the answer the offline
        ``Recommender.recommend`` gives)."""
        if not self.unavailable.size or cand.size <= n_cand:
            return n_cand
        available = np.cumsum(~isin_small(cand, self.unavailable))
        if available[n_cand - 1] >= k:
            return n_cand
        return int(min(np.searchsorted(available, k) + 1, cand.size))

    def _popular(self, state: Any, k: int, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx, scores = self.rec.popular(state, k, exclude=set(seen.tolist()) if seen.size else None)
        return np.asarray(idx, dtype=np.int64), np.asarray(scores, dtype=np.float64)

    def close(self) -> None:
        close = getattr(self.history, "close", None)
        if close is not None:
            close()
        metrics.MODEL_READY.labels(self.version).set(0)


def _model_setting(rec: OnlineRecommender, section: str, name: str, default: Any) -> Any:
    """``rec.config.<section>.<name>`` when the recommender has it, else ``default``."""
    value = getattr(getattr(getattr(rec, "config", None), section, None), name, None)
    return default if value is None else value


def _unavailable_rows(rec: OnlineRecommender, item_ids: np.ndarray) -> np.ndarray:
    """Item rows of the model's unavailable items (its re-rank config's ``exclude_items``),
    which the re-ranker removes from every list."""
    ids = _model_setting(rec, "rerank", "exclude_items", None) or []
    if not len(ids) or not item_ids.size:
        return np.zeros(0, dtype=np.int64)
    wanted = np.asarray(ids, dtype=np.int64)
    order = np.argsort(item_ids, kind="stable")
    pos = np.clip(np.searchsorted(item_ids[order], wanted), 0, item_ids.size - 1)
    found = item_ids[order][pos] == wanted
    return np.unique(order[pos[found]]).astype(np.int64)


def _sample_queries(rec: OnlineRecommender, n: int, seed: int = 0) -> np.ndarray:
    """User vectors of a sample of known users, for measuring recall at load.

    Falls back to perturbed item vectors when the recommender does not list its users.
    """
    rng = np.random.default_rng(seed)
    user_ids = getattr(rec, "user_ids", None)
    users = getattr(rec, "users", None)
    if user_ids is None and users is not None and "user_id" in getattr(users, "columns", ()):
        user_ids = users["user_id"].to_numpy()
    if user_ids is not None and len(user_ids):
        chosen = rng.choice(np.asarray(user_ids), size=min(n, len(user_ids)), replace=False)
        return np.stack([np.asarray(rec.user_embedding(rec.user_state(int(u))), np.float32)
                         for u in chosen])
    emb = np.asarray(rec.item_embeddings(), dtype=np.float32)
    rows = rng.choice(len(emb), size=min(n, len(emb)), replace=False)
    noise = rng.normal(scale=float(emb.std()) * 0.5, size=(len(rows), emb.shape[1]))
    return (emb[rows] + noise).astype(np.float32)
