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
    """Item rows ranked by training count, globally and per (age_bucket, gender) segment."""

    def __init__(self, global_rank: np.ndarray, segments: dict[str, np.ndarray],
                 counts: np.ndarray):
        self.global_rank = global_rank
        self.segments = segments
        self.counts = counts

    @staticmethod
    def key(age_bucket: object, gender: object) -> str:
        return f"{age_bucket}|{gender}"

    @classmethod
    def build(cls, item_rows: np.ndarray, seg_keys: np.ndarray, n_items: int,
              min_events: int = 50, top: int = 1000) -> SegmentPopularity:
        counts = np.bincount(item_rows, minlength=n_items).astype(np.float64)
        global_rank = np.argsort(-counts, kind="stable")[:top]
        segments: dict[str, np.ndarray] = {}
        frame = pd.DataFrame({"seg": seg_keys, "item": item_rows})
        for seg, part in frame.groupby("seg"):
            if len(part) >= min_events:
                c = np.bincount(part["item"].to_numpy(), minlength=n_items).astype(np.float64)
                # Smooth the segment towards the global ranking.
                score = c / c.sum() + 0.2 * counts / counts.sum()
                segments[str(seg)] = np.argsort(-score, kind="stable")[:top]
        return cls(global_rank.astype(np.int64), segments, counts)

    def top(self, seg: str | None, k: int, exclude: set[int] | np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        ranked = self.segments.get(seg or "", self.global_rank)
        if exclude is not None and len(exclude):
            ex = np.fromiter(exclude, dtype=np.int64) if isinstance(exclude, set) else exclude
            ranked = ranked[~np.isin(ranked, ex)]
        picked = ranked[:k]
        scores = np.log1p(self.counts[picked]).astype(np.float32)
        return picked, scores
