"""The serving feature vector: one implementation for training, serving and the skew job.

``FeatureContext.request_features`` computes the 20 features of ``FEATURE_SPEC`` for one
request. Training builds the drift reference profile with it, the model server logs what it
returns, and the skew job recomputes it offline: a single function, so the three agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from recsys.data.schema import GENRES

__all__ = ["FEATURE_SPEC", "CATEGORICAL", "NUMERIC", "SHARE_GENRES", "FeatureContext",
           "genre_matrix", "request_features"]

SHARE_GENRES: tuple[str, ...] = ("Drama", "Comedy", "Action", "Thriller", "Romance",
                                 "Adventure", "Sci-Fi", "Crime", "Horror", "Children's")
CATEGORICAL: tuple[str, ...] = ("age_bucket", "gender", "occupation", "region", "top_genre")
NUMERIC: tuple[str, ...] = ("history_length", "hour_of_day", "day_of_week",
                            "history_mean_year", "history_mean_popularity",
                            *(f"genre_share_{g}" for g in SHARE_GENRES))
FEATURE_SPEC: dict[str, str] = {**{c: "categorical" for c in CATEGORICAL},
                                **{n: "numeric" for n in NUMERIC}}

_SHARE_COLUMNS = tuple((f"genre_share_{g}", GENRES.index(g)) for g in SHARE_GENRES)
_USER_DEFAULTS = {"age_bucket": "unknown", "gender": "U", "occupation": "unknown",
                  "region": "unknown"}


def genre_matrix(genres: Sequence[str] | pd.Series) -> np.ndarray:
    """Pipe-separated genre strings → a boolean [n_items, len(GENRES)] matrix."""
    index = {g: i for i, g in enumerate(GENRES)}
    out = np.zeros((len(genres), len(GENRES)), dtype=bool)
    for row, value in enumerate(genres):
        for g in str(value).split("|") if value else ():
            j = index.get(g)
            if j is not None:
                out[row, j] = True
    return out


def known_years(year: pd.Series) -> np.ndarray:
    """Release years as float32, a missing one (``<NA>`` in a nullable ``Int64`` column, NaN
    in a float one) as 0, the contract's unknown year, which every use of years skips."""
    y = year.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(y), y, 0.0).astype(np.float32)


@dataclass(frozen=True)
class FeatureContext:
    """Item-side tables the features need, indexed by item row."""

    genres: np.ndarray  # bool [n_items, n_genres]
    years: np.ndarray  # float32 [n_items], 0 = unknown
    log_popularity: np.ndarray  # float32 [n_items], log1p(train count)
    item_ids: np.ndarray  # int64 [n_items], sorted raw ids of the rows

    @classmethod
    def build(cls, items: pd.DataFrame, train_counts: np.ndarray) -> FeatureContext:
        return cls(genres=genre_matrix(items["genres"].tolist()),
                   years=known_years(items["year"]),
                   log_popularity=np.log1p(np.asarray(train_counts, dtype=np.float32)),
                   item_ids=items["item_id"].to_numpy(dtype=np.int64))

    def rows_of(self, item_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Raw item ids → item rows (unknown ids dropped)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.item_ids, ids), 0, max(len(self.item_ids) - 1, 0))
        return pos[self.item_ids[pos] == ids] if len(self.item_ids) else pos[:0]

    def request_features(self, user: Mapping[str, object] | None, history: np.ndarray,
                         ts: float) -> dict[str, object]:
        """Features of one request: user demographics, history rows (item rows), unix time."""
        user = user or {}
        out: dict[str, object] = {k: str(user.get(k) or d) for k, d in _USER_DEFAULTS.items()}
        hist = np.asarray(history, dtype=np.int64)
        hist = hist[(hist >= 0) & (hist < self.genres.shape[0])]
        n = int(hist.size)
        when = datetime.fromtimestamp(float(ts), tz=timezone.utc)
        counts = self.genres[hist].sum(axis=0) if n else np.zeros(len(GENRES), dtype=np.int64)
        out["top_genre"] = GENRES[int(np.argmax(counts))] if n and counts.max() > 0 else "none"
        out["history_length"] = float(n)
        out["hour_of_day"] = float(when.hour)
        out["day_of_week"] = float(when.weekday())
        years = self.years[hist] if n else np.zeros(0, dtype=np.float32)
        known = years[years > 0]
        out["history_mean_year"] = float(known.mean()) if known.size else 0.0
        out["history_mean_popularity"] = float(self.log_popularity[hist].mean()) if n else 0.0
        for name, j in _SHARE_COLUMNS:
            out[name] = float(counts[j] / n) if n else 0.0
        return out


def request_features(ctx: FeatureContext, user: Mapping[str, object] | None,
                     history_item_ids: Sequence[int], ts: float) -> dict[str, object]:
    """Features from raw item ids: what the skew job recomputes offline."""
    return ctx.request_features(user, ctx.rows_of(history_item_ids), ts)
