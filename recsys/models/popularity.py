"""Most-popular baselines: global and per demographic segment (the cold-start fallback)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["PopularityRecommender", "SegmentPopularity"]


class PopularityRecommender:
    """Recommends the most frequent training items a user has not seen."""

    def fit(self, interactions: pd.DataFrame, users: pd.DataFrame | None = None,
            items: pd.DataFrame | None = None) -> PopularityRecommender:
        counts = interactions["item_id"].value_counts()
        self.ranked_items = counts.index.to_numpy(dtype=np.int64)
        self.ranked_counts = counts.to_numpy(dtype=np.float64)
        self.seen = interactions.groupby("user_id")["item_id"].agg(lambda s: set(s.tolist()))
        return self

    def recommend(self, user_ids: list[int] | np.ndarray, k: int = 10,
                  exclude_seen: bool = True) -> pd.DataFrame:
        rows: list[tuple[int, int, float, int]] = []
        head = self.ranked_items[: k + 2000]
        for u in np.asarray(user_ids, dtype=np.int64):
            seen = self.seen.get(int(u), set()) if exclude_seen else set()
            picked = [i for i in head if int(i) not in seen][:k]
            rows += [(int(u), int(i), float(k - r), r + 1) for r, i in enumerate(picked)]
        return pd.DataFrame(rows, columns=["user_id", "item_id", "score", "rank"])


class SegmentPopularity:
    """Item rows ranked by recent popularity, globally and per (age_bucket, gender) segment.

    Counts are weighted by ``0.5 ** (age / half_life)`` where age is the time from the event
    to the last training event, so the ranking says what is watched *lately*; a segment's
    share is smoothed towards the global one. This is the cold-start answer.
    """

    def __init__(self, global_rank: np.ndarray, segments: dict[str, np.ndarray],
                 counts: np.ndarray):
        self.global_rank = global_rank
        self.segments = segments
        self.counts = counts

    @staticmethod
    def key(age_bucket: object, gender: object) -> str:
        return f"{age_bucket}|{gender}"

    @classmethod
    def build(cls, item_rows: np.ndarray, seg_codes: np.ndarray, seg_names: list[str],
              n_items: int,
              ts: np.ndarray | None = None, half_life_days: float = 30.0,
              min_events: int = 50, top: int = 1000, smoothing: float = 0.2
              ) -> SegmentPopularity:
        counts = np.bincount(item_rows, minlength=n_items).astype(np.float64)
        if ts is not None and ts.size and half_life_days > 0:
            age_days = (ts.max() - ts).astype(np.float64) / 86_400.0
            weight = 0.5 ** (age_days / half_life_days)
        else:
            weight = np.ones(item_rows.size)
        recent = np.bincount(item_rows, weights=weight, minlength=n_items)
        global_rank = np.argsort(-(recent + 1e-9 * counts), kind="stable")[:top]
        segments: dict[str, np.ndarray] = {}
        codes, names = np.asarray(seg_codes, dtype=np.int64), list(seg_names)
        n_seg = len(names)
        share = recent / max(recent.sum(), 1e-12)
        sizes = np.bincount(codes, minlength=n_seg)
        seg_counts = np.bincount(codes * n_items + item_rows, weights=weight,
                                 minlength=n_seg * n_items).reshape(n_seg, n_items)
        for j, seg in enumerate(names):
            if sizes[j] >= min_events:
                c = seg_counts[j]
                score = c / max(c.sum(), 1e-12) + smoothing * share
                segments[str(seg)] = np.argsort(-score, kind="stable")[:top]
        return cls(global_rank.astype(np.int64), segments, counts)

    def top(self, seg: str | None, k: int, exclude: set[int] | np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item rows of the segment (global when unknown) and decreasing scores.

        The rankings hold the first ``top`` items (1,000) only; when excluded items leave
        fewer than k of them, the rest of the catalogue follows by training count, so that
        a cold user gets k items whenever k items that are not excluded exist (as warm
        users do), not fewer or none."""
        ranked = self.segments.get(seg or "", self.global_rank)
        ex = None
        if exclude is not None and len(exclude):
            ex = np.fromiter(exclude, dtype=np.int64) if isinstance(exclude, set) else exclude
        picked = ranked[~np.isin(ranked, ex)][:k] if ex is not None else ranked[:k]
        if picked.size < k and ranked.size < self.counts.size:
            rest = np.argsort(-self.counts, kind="stable")
            rest = rest[~np.isin(rest, ranked)]
            if ex is not None:
                rest = rest[~np.isin(rest, ex)]
            picked = np.concatenate([picked, rest[:k - picked.size]]).astype(np.int64)
        scores = (1.0 / np.log2(np.arange(picked.size) + 2.0)).astype(np.float32)
        return picked, scores
