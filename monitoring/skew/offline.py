"""The offline side of the skew check from a bundle: the pipeline's feature code
(``recsys.features``) over the bundle's item and user tables.

Imported only by ``marquee skew check``; the check itself (``monitoring.skew.job``) takes any
``FeatureFn``, so it is tested without the recommender.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from monitoring.errors import MonitoringInputError
from monitoring.skew.job import FeatureFn, OfflineRecompute

__all__ = ["bundle_feature_fn", "bundle_recompute"]


def bundle_feature_fn(bundle_dir: Path) -> FeatureFn:
    """``recsys.features.request_features`` bound to the bundle's items and popularity."""
    try:
        from recsys.data.parquet import read_parquet
        from recsys.features import FeatureContext, request_features
    except ImportError as exc:
        raise MonitoringInputError(f"the pipeline's feature code is not importable: {exc}") \
            from exc
    model = Path(bundle_dir) / "model"
    try:
        items = read_parquet(model / "items.parquet")
        pop = read_parquet(model / "popularity.parquet", columns=["item_id", "count"])
    except OSError as exc:
        raise MonitoringInputError(f"bundle {bundle_dir}: {exc}") from exc
    items = items.sort_values("item_id").reset_index(drop=True)
    counts = items[["item_id"]].merge(pop, on="item_id", how="left")["count"].fillna(0)
    ctx = FeatureContext.build(items, counts.to_numpy())

    def features(user, history, ts):  # noqa: ANN001, ANN202 - FeatureFn
        return request_features(ctx, user, history, ts)

    return features


def bundle_recompute(bundle_dir: Path) -> OfflineRecompute:
    path = Path(bundle_dir) / "model" / "user_features.parquet"
    if not path.is_file():
        raise MonitoringInputError(f"bundle {bundle_dir} has no model/user_features.parquet")
    users = pq.read_table(path).to_pandas()
    return OfflineRecompute(bundle_feature_fn(bundle_dir), users)
