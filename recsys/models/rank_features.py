"""Features of (user, candidate) pairs for the ranker, one code path offline and online.

:class:`RankContext` holds the item-side tables built from the training interactions (the
item–item model, per-item event times, popularity per demographic segment, mean ratings) and
computes the feature matrix of one user's candidates with :meth:`RankContext.features`. The
offline path (ranker training, batch recommendations) loops over users and calls the same
method the model server calls per request, so training and serving cannot disagree.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.models.item_item import ItemItem
from recsys.models.rank_kernels import count_before, rank_features_kernel

__all__ = ["FEATURES", "RankContext", "UserView"]

DAY = 86_400.0
WINDOWS_DAYS = (7, 30)
RECENT = 5  # most recent history items for the "recent" features
TIME_SHIFT = 32

FEATURES: tuple[str, ...] = (
    "retrieval_score", "retrieval_rank", "retrieval_gap", "retrieval_z",
    "cooc_score", "cooc_rank", "cooc_z", "cooc_recent",
    "session_score", "session_rank", "session_z", "session_recent", "emb_sim_recent",
    "pop_log", *(f"pop_{w}d_log" for w in WINDOWS_DAYS), "days_since_item_event",
    "item_age_days", "item_year", "year_gap", "genre_affinity", "genre_max_share",
    "segment_lift", "item_mean_rating", "history_length_log",
    "age", "gender", "hour_of_day", "day_of_week",
)
# The columns the compiled kernel fills, in its order (all but the two dot products).
_KERNEL_COLUMNS = np.array([FEATURES.index(name) for name in (
    "retrieval_score", "retrieval_rank", "retrieval_gap", "retrieval_z",
    "cooc_score", "cooc_rank", "cooc_z", "cooc_recent",
    "session_score", "session_rank", "session_z", "session_recent",
    "pop_log", *(f"pop_{w}d_log" for w in WINDOWS_DAYS), "days_since_item_event",
    "item_age_days", "item_year", "year_gap", "genre_max_share", "segment_lift",
    "item_mean_rating", "history_length_log", "age", "gender", "hour_of_day", "day_of_week",
)], dtype=np.int64)
_EMB_SIM, _GENRE_AFFINITY = FEATURES.index("emb_sim_recent"), FEATURES.index("genre_affinity")
_NO_SCORES = np.zeros((0, 0), dtype=np.float32)
_NO_SEGMENT = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class UserView:
    """What the ranker knows about a user: history (item rows, time order), time, segment."""

    history: np.ndarray
    ts: float
    demo: np.ndarray  # int64 [4] codes: age, gender, occupation, region
    segment: int  # row of the segment table, -1 when unknown


class RankContext:
    """Item-side tables of the ranker features, built from training interactions."""

    def __init__(self, item_item: ItemItem, session: ItemItem, item_vecs: np.ndarray, genres: np.ndarray,
                 years: np.ndarray, counts: np.ndarray, time_keys: np.ndarray,
                 item_offsets: np.ndarray, t0: int, first_ts: np.ndarray,
                 mean_rating: np.ndarray, segment_share: np.ndarray, segment_keys: list[str]):
        self.item_item = item_item
        self.session = session
        self.item_vecs = item_vecs.astype(np.float32)
        g = genres.astype(np.float32)
        self.genres = g / np.maximum(g.sum(axis=1, keepdims=True), 1.0)
        self.genres_bool = genres.astype(bool)
        self.years = years.astype(np.float32)
        self.counts = counts.astype(np.float32)
        self.pop_log = np.log1p(self.counts)
        self.time_keys = time_keys
        self.item_offsets = item_offsets
        self.t0 = int(t0)
        self.first_ts = first_ts
        self.mean_rating = mean_rating.astype(np.float32)
        self.segment_share = segment_share.astype(np.float32)  # [n_segments, n_items], log lift
        self.segment_keys = list(segment_keys)
        self._segment_index = {k: i for i, k in enumerate(self.segment_keys)}
        self._merged: tuple | None = None  # both sparse models' columns, merged (kernel input)
        self._no_columns = (np.zeros(1, np.int64), np.zeros((0, 3), np.int32))
        self._scratch = threading.local()

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, user_row: np.ndarray, item_row: np.ndarray, ts: np.ndarray,
              rating: np.ndarray, user_segment: np.ndarray, segment_keys: list[str],
              n_users: int, n_items: int, genres: np.ndarray, years: np.ndarray,
              item_vecs: np.ndarray, ease_lambda: float = 250.0, session_window: int = 10,
              dense_max_items: int = 8000, seed: int = 0, ease_time_share: float = 1.0,
              ease_time_scale: float = 5.0) -> RankContext:
        """``user_segment``: segment row per user row (into ``segment_keys``)."""
        order = np.lexsort((ts, user_row))
        u, i, t = user_row[order], item_row[order], ts[order]
        item_item = ItemItem.fit(u, i, n_users, n_items, lam=ease_lambda,
                                 dense_max_items=dense_max_items, seed=seed,
                                 time_share=ease_time_share, time_scale=ease_time_scale)
        session = ItemItem.fit_adjacency(u, i, n_users, n_items, window=session_window,
                                         dense_max_items=dense_max_items, seed=seed)
        counts = np.bincount(i, minlength=n_items)
        t0 = int(t.min(initial=0))
        keys = np.sort((i.astype(np.int64) << TIME_SHIFT) + (t - t0))
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
        first_ts = np.full(n_items, -1, dtype=np.int64)
        has = counts > 0
        first_ts[has] = (keys[offsets[:-1][has]] & ((1 << TIME_SHIFT) - 1)) + t0
        rated = rating > 0
        r_sum = np.bincount(item_row[rated], weights=rating[rated], minlength=n_items)
        r_n = np.bincount(item_row[rated], minlength=n_items)
        mean_rating = np.where(r_n > 0, r_sum / np.maximum(r_n, 1), 0.0)
        n_seg = max(len(segment_keys), 1)
        seg_counts = np.bincount(user_segment[user_row] * n_items + item_row,
                                 minlength=n_seg * n_items).reshape(n_seg, n_items)
        glob = (counts + 1.0) / (counts.sum() + n_items)
        seg = (seg_counts + 1.0) / (seg_counts.sum(axis=1, keepdims=True) + n_items)
        lift = np.log(seg / glob[None, :])
        return cls(item_item, session, item_vecs, genres, years, counts, keys, offsets, t0, first_ts,
                   mean_rating, lift, segment_keys)

    def segment_row(self, key: str | None) -> int:
        return self._segment_index.get(key or "", -1)

    # ------------------------------------------------------------------ features
    def _rel(self, *times: float) -> np.ndarray:
        """Times as the low bits of the event keys (seconds since ``t0``, clipped)."""
        return np.array([int(min(max(t - self.t0, 0), (1 << TIME_SHIFT) - 1)) for t in times],
                        dtype=np.int64)

    def _count_before(self, cand: np.ndarray, *times: float) -> np.ndarray:
        """Events of each candidate up to each time: int64 [len(times), n_cand], one search."""
        return count_before(self.time_keys, self.item_offsets, cand, TIME_SHIFT,
                            self._rel(*times))

    def features(self, user: UserView, cand: np.ndarray, retrieval_scores: np.ndarray
                 ) -> np.ndarray:
        """float32 [n_cand, len(FEATURES)] for one user's candidates (item rows).

        The one code path of training rows and requests. With numba the columns come from one
        compiled kernel writing into the matrix (the two dot products stay numpy's, as in the
        reference); :meth:`features_reference` is the numpy definition, which the kernel
        reproduces bit for bit (``tests/unit/test_recsys_online_fast.py``)."""
        kernel = rank_features_kernel()
        if kernel is None:
            return self.features_reference(user, cand, retrieval_scores)
        cand = np.ascontiguousarray(cand, dtype=np.int64)
        if cand.size == 0:
            return np.zeros((0, len(FEATURES)), dtype=np.float32)
        r = np.ascontiguousarray(retrieval_scores, dtype=np.float32)
        hist = np.ascontiguousarray(user.history, dtype=np.int64)
        tail = min(RECENT, hist.size)
        t = float(user.ts)
        indptr, packed = self.merged_columns()
        given = _NO_SCORES
        if indptr is None:  # dense item-item weights: numpy's own path
            given = np.stack([*self.item_item.scores(hist, cand, RECENT),
                              *self.session.scores(hist, cand, RECENT)])
            indptr, packed = self._no_columns
        rel = self._rel(t, *(t - w * DAY for w in WINDOWS_DAYS))
        consts = np.array([np.log1p(hist.size), user.demo[0], user.demo[1],
                           (t % DAY) // 3600, ((t // DAY) + 3) % 7], dtype=np.float64)
        seg_row = self.segment_share[user.segment] if user.segment >= 0 else _NO_SEGMENT
        share = np.empty(self.genres.shape[1], dtype=np.float32)
        out = np.empty((cand.size, len(FEATURES)), dtype=np.float32)
        bitmap = getattr(self._scratch, "bitmap", None)
        if bitmap is None:  # one per thread: the kernel sets the history's bits, then clears
            bitmap = self._scratch.bitmap = np.zeros((self.years.size + 63) // 64, np.uint64)
        kernel(out, _KERNEL_COLUMNS, cand, r, hist, tail, indptr, packed, bitmap, given,
               self.pop_log,
               self.time_keys, self.item_offsets, TIME_SHIFT, rel, t, self.t0, self.first_ts,
               self.years, self.genres_bool, seg_row, self.mean_rating, consts, share)
        recent = hist[hist.size - tail:]
        out[:, _EMB_SIM] = (self.item_vecs[cand] @ self.item_vecs[recent].mean(axis=0)
                            if recent.size else 0.0)
        out[:, _GENRE_AFFINITY] = self.genres[cand] @ share
        return out

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_scratch"] = None  # per-thread scratch: rebuilt where the copy is used
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._scratch = threading.local()

    def merged_columns(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Both sparse item-item models' columns as one array (built once; ``(None, None)``
        for dense weights): a candidate's entries of the two models in one contiguous read."""
        if self._merged is None:
            if self.item_item.dense or self.session.dense:
                self._merged = (None, None)
            else:
                from recsys.models.rank_kernels import merge_columns

                self._merged = merge_columns(self.item_item.weights, self.session.weights)
        return self._merged

    def warm(self) -> None:
        """Compile the features' kernel for this context's arrays (at load, not on a request)."""
        demo = np.zeros(4, dtype=np.int64)
        for hist in (np.zeros(0, np.int64), np.array([0, 1, 0], np.int64)):
            self.features(UserView(hist, float(self.t0), demo, -1), np.array([0, 1]),
                          np.ones(2, np.float32))

    def features_reference(self, user: UserView, cand: np.ndarray,
                           retrieval_scores: np.ndarray) -> np.ndarray:
        """The features in numpy: their definition, and the path without numba."""
        cand = np.asarray(cand, dtype=np.int64)
        if cand.size == 0:
            return np.zeros((0, len(FEATURES)), dtype=np.float32)
        r = np.asarray(retrieval_scores, dtype=np.float32)
        hist = np.asarray(user.history, dtype=np.int64)
        recent = hist[-RECENT:]
        t = float(user.ts)
        f: dict[str, np.ndarray | float] = {
            "retrieval_score": r, "retrieval_rank": _rank(r), "retrieval_gap": r.max() - r,
            "retrieval_z": _z(r)}
        # Item-item signals over the whole history, their rank and z-score within the list
        # (robust to history length), and over the most recent items.
        for name, model in (("cooc", self.item_item), ("session", self.session)):
            score, f[f"{name}_recent"] = model.scores(hist, cand, RECENT)
            f[f"{name}_score"], f[f"{name}_rank"], f[f"{name}_z"] = score, _rank(score), _z(score)
        f["emb_sim_recent"] = (self.item_vecs[cand] @ self.item_vecs[recent].mean(axis=0)
                               if recent.size else 0.0)
        # Popularity overall, in windows before the request, and how long since the last event.
        f["pop_log"] = self.pop_log[cand]
        before = self._count_before(cand, t, *(t - w * DAY for w in WINDOWS_DAYS))
        now = before[0]
        for j, w in enumerate(WINDOWS_DAYS, start=1):
            f[f"pop_{w}d_log"] = np.log1p(now - before[j])
        last = self.time_keys[np.maximum(self.item_offsets[cand] + now - 1, 0)]
        last_t = (last & ((1 << TIME_SHIFT) - 1)) + self.t0
        f["days_since_item_event"] = np.where(now > 0, _log_days(t - last_t), -1.0)
        first = self.first_ts[cand]
        f["item_age_days"] = np.where((first >= 0) & (now > 0), _log_days(t - first), -1.0)
        # Content: release year against the history's, genre affinity.
        years = self.years[cand]
        hy = self.years[hist]
        hy = hy[hy > 0]
        f["item_year"] = years
        f["year_gap"] = np.where(years > 0, years - hy.mean(), 0.0) if hy.size else 0.0
        share = (self.genres_bool[hist].mean(axis=0) if hist.size
                 else np.zeros(self.genres.shape[1])).astype(np.float32)
        f["genre_affinity"] = self.genres[cand] @ share
        f["genre_max_share"] = np.where(self.genres_bool[cand], share[None, :], 0.0).max(axis=1)
        f["segment_lift"] = self.segment_share[user.segment, cand] if user.segment >= 0 else 0.0
        f["item_mean_rating"] = self.mean_rating[cand]
        # User and context (constant within a list; they shape the other features' effect).
        f["history_length_log"] = float(np.log1p(hist.size))
        f["age"], f["gender"] = float(user.demo[0]), float(user.demo[1])
        f["hour_of_day"] = float((t % DAY) // 3600)
        f["day_of_week"] = float(((t // DAY) + 3) % 7)
        out = np.empty((cand.size, len(FEATURES)), dtype=np.float32)
        for j, name in enumerate(FEATURES):
            out[:, j] = f[name]
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        self.item_item.save(directory, "rank_item_item")
        self.session.save(directory, "rank_session")
        arrays = {"item_vecs": self.item_vecs, "time_keys": self.time_keys,
                  "item_offsets": self.item_offsets, "first_ts": self.first_ts,
                  "mean_rating": self.mean_rating, "segment_share": self.segment_share}
        for name, arr in arrays.items():
            np.save(directory / f"rank_{name}.npy", arr, allow_pickle=False)
        (directory / "rank_context.json").write_text(json.dumps(
            {"t0": self.t0, "segment_keys": self.segment_keys, "features": list(FEATURES)},
            indent=2))

    @classmethod
    def load(cls, directory: Path, genres: np.ndarray, years: np.ndarray,
             counts: np.ndarray) -> RankContext:
        meta = json.loads((directory / "rank_context.json").read_text())
        if meta["features"] != list(FEATURES):
            raise ValueError(f"{directory / 'rank_context.json'}: ranker features differ from "
                             "this code's; retrain the model")
        arr = {name: np.load(directory / f"rank_{name}.npy", allow_pickle=False)
               for name in ("item_vecs", "time_keys", "item_offsets", "first_ts",
                            "mean_rating", "segment_share")}
        item_item = ItemItem.load(directory, len(years), "rank_item_item")
        session = ItemItem.load(directory, len(years), "rank_session")
        return cls(item_item, session, arr["item_vecs"], genres, years, counts, arr["time_keys"],
                   arr["item_offsets"], meta["t0"], arr["first_ts"], arr["mean_rating"],
                   arr["segment_share"], meta["segment_keys"])


def _z(x: np.ndarray) -> np.ndarray:
    """Standardised within one candidate list."""
    return ((x - x.mean()) / (x.std() + 1e-6)).astype(np.float32)


def _log_days(seconds: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(seconds, 0) / DAY)


def _rank(x: np.ndarray) -> np.ndarray:
    """0 for the largest value, 1 for the next… (float32)."""
    out = np.empty(x.size, dtype=np.float32)
    out[np.argsort(-x, kind="stable")] = np.arange(x.size, dtype=np.float32)
    return out
