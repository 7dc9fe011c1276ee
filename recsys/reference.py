"""The drift reference profile: serving feature vectors as training saw them, and statistics.

Stored in every bundle under ``reference/`` so that the drift job compares live payload logs
with it without reloading the training data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.encoding import IdIndex
from recsys.features import CATEGORICAL, FEATURE_SPEC, NUMERIC, FeatureContext

__all__ = ["build_reference", "feature_stats", "prediction_reference", "write_reference"]

DEMO = ("age_bucket", "gender", "occupation", "region")
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def build_reference(train: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame,
                    max_rows: int = 100_000, seed: int = 42
                    ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Sample ≤ ``max_rows`` training events; each row is the feature vector a request by
    that user at that time gets when served (demographics, full training history, time)."""
    items = items.sort_values("item_id").reset_index(drop=True)
    item_index = IdIndex(items["item_id"].to_numpy())
    rows = item_index.lookup(train["item_id"].to_numpy())
    ctx = FeatureContext.build(items, np.bincount(rows[rows >= 0], minlength=len(item_index)))
    ordered = train.assign(item_row=rows)[rows >= 0].sort_values(["user_id", "timestamp"])
    histories = {u: g.to_numpy() for u, g in ordered.groupby("user_id")["item_row"]}
    user_rows = users.set_index("user_id")[list(DEMO)].astype(str).to_dict("index")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(ordered), size=min(max_rows, len(ordered)), replace=False) \
        if len(ordered) else np.zeros(0, dtype=np.int64)
    sample = ordered.iloc[np.sort(pick)]
    empty = np.zeros(0, dtype=np.int64)
    records = [ctx.request_features(user_rows.get(u), histories.get(u, empty), ts)
               for u, ts in zip(sample["user_id"].to_numpy(), sample["timestamp"].to_numpy())]
    frame = pd.DataFrame.from_records(records, columns=list(FEATURE_SPEC))
    return frame, feature_stats(frame)


def feature_stats(frame: pd.DataFrame) -> dict[str, Any]:
    stats: dict[str, Any] = {"rows": int(len(frame)), "features": {}}
    for name in CATEGORICAL:
        freq = frame[name].value_counts(normalize=True)
        stats["features"][name] = {"kind": "categorical",
                                   "frequencies": {str(k): float(v) for k, v in freq.items()}}
    for name in NUMERIC:
        col = frame[name].astype(np.float64)
        stats["features"][name] = {
            "kind": "numeric", "mean": float(col.mean()) if len(col) else 0.0,
            "std": float(col.std(ddof=0)) if len(col) else 0.0,
            "quantiles": {str(q): float(col.quantile(q)) if len(col) else 0.0 for q in QUANTILES},
        }
    return stats


def prediction_reference(rec: Any, user_ids: np.ndarray, k: int = 10) -> pd.DataFrame:
    """Top-k recommendations of a user sample: score, item popularity and genres per slot."""
    recs = rec.recommend(user_ids, k=k)
    rows = rec.item_index.lookup(recs["item_id"].to_numpy())
    return recs.assign(popularity=rec.train_counts[rows].astype(np.int64),
                       genres=rec.items["genres"].to_numpy()[rows])


def write_reference(frame: pd.DataFrame, stats: dict[str, Any], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(directory / "features.parquet", index=False)
    (directory / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
