"""The model bundle as the monitoring jobs see it: the training reference and item tables.

``<bundle>/reference/features.parquet`` (≤ 100k rows of FEATURE_SPEC columns, + ``score``
when the pipeline recorded one), ``reference/stats.json``, ``reference/predictions.parquet``
(optional: recommendations made at training time, the reference for prediction drift — in the
training pipeline's long layout, one row per recommended slot ``user_id, item_id, score, rank,
…``, or as ``items``/``scores`` lists per request; :func:`predictions_as_lists` reads both),
``model/items.parquet`` (item_id, genres) and ``model/popularity.parquet`` (item_id, count).

A bundle is named by a local directory, a store key or URI, or a registry reference
(``production``, ``candidate``, a version number, ``models:/…``); remote bundles are fetched
into ``<home>/cache/bundles`` and every checksum is verified before anything is read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from marquee.bundle import BundleManifest, fetch_bundle, verify_bundle
from marquee.errors import MarqueeError, redact_uri
from marquee.settings import Settings
from monitoring.errors import MonitoringInputError, NoDataError

__all__ = ["Reference", "resolve_bundle_dir", "load_reference", "predictions_as_lists"]

FEATURES_FILE = "reference/features.parquet"
STATS_FILE = "reference/stats.json"
PREDICTIONS_FILE = "reference/predictions.parquet"
ITEMS_FILE = "model/items.parquet"
POPULARITY_FILE = "model/popularity.parquet"
USER_FEATURES_FILE = "model/user_features.parquet"


@dataclass
class Reference:
    features: pa.Table
    model_name: str
    model_version: str
    source: str
    stats: dict | None = None
    predictions: pa.Table | None = None
    items: pd.DataFrame | None = None
    popularity: pd.DataFrame | None = None
    bundle_dir: Path | None = None


def resolve_bundle_dir(ref: str, settings: Settings) -> tuple[Path, BundleManifest]:
    """A verified local bundle directory for ``ref``."""
    path = Path(ref).expanduser()
    try:
        if path.is_dir():
            return path, verify_bundle(path)
        uri = ref
        # alias, version number or models:/<name>@<alias> | /<version>: ask the registry
        if ref.startswith("models:/") or ("://" not in ref and "/" not in ref):
            from marquee.registry import Registry

            uri = Registry.from_settings(settings).resolve(ref)  # a reader: no new registry
        cache = settings.home / "cache" / "bundles" / hashlib.sha256(uri.encode()).hexdigest()[:16]
        if (cache / "bundle.json").is_file():
            return cache, verify_bundle(cache)
        from marquee.store import open_store

        store = open_store(settings.resolved_store_uri, settings.s3_endpoint_url)
        return fetch_bundle(uri, cache, store=store, s3_endpoint_url=settings.s3_endpoint_url)
    except MarqueeError as exc:
        raise MonitoringInputError(f"bundle={redact_uri(ref)!r}: {exc.message}") from exc


def _optional_table(path: Path) -> pa.Table | None:
    return pq.read_table(path) if path.is_file() else None


def predictions_as_lists(table: pa.Table, source: str = PREDICTIONS_FILE,
                         activity: dict[int, int] | None = None, rows: int = 20_000,
                         seed: int = 0) -> pa.Table:
    """Reference recommendations as the payload logs hold them: one row per request with
    ``items`` (list<int64>) and ``scores`` (list<float64>) in rank order.

    The training pipeline writes one row per recommended slot (``user_id, item_id, score,
    rank`` and more) for a sample of users; those rows are grouped per user and ordered by
    ``rank``. Requests come from users as often as they are active, and the feature reference
    is a sample of training *events*; with ``activity`` (training events per user) the lists
    are resampled the same way (``rows`` draws, seeded), so prediction drift compares like
    with like. A table that already has ``items`` is returned as it is.
    """
    cols = set(table.column_names)
    if "items" in cols:
        return table
    if not {"user_id", "item_id"} <= cols:
        raise MonitoringInputError(f"{source}: expected items/scores lists or one row per "
                                   f"slot (user_id, item_id, score, rank); got columns "
                                   f"{sorted(cols)}")
    keep = [c for c in ("user_id", "item_id", "score", "rank") if c in cols]
    frame = table.select(keep).to_pandas()
    order = ["user_id", "rank"] if "rank" in cols else ["user_id"]
    frame = frame.sort_values(order, kind="stable")
    groups = frame.groupby("user_id", sort=False)
    out = {"user_id": pa.array(list(groups.groups), pa.int64()),
           "items": pa.array([g.to_numpy(dtype="int64").tolist()
                              for _, g in groups["item_id"]], pa.list_(pa.int64()))}
    if "score" in cols:
        out["scores"] = pa.array([g.to_numpy(dtype="float64").tolist()
                                  for _, g in groups["score"]], pa.list_(pa.float64()))
    lists = pa.table(out)
    if activity:
        import numpy as np

        users = lists.column("user_id").to_numpy()
        weights = np.array([activity.get(int(u), 0) for u in users], dtype=np.float64)
        if weights.sum() > 0:
            pick = np.random.default_rng(seed).choice(len(users), size=rows,
                                                      p=weights / weights.sum())
            lists = lists.take(np.sort(pick))
    return lists


def _activity(path: Path) -> dict[int, int] | None:
    """Training events per user from the bundle's online feature table (its history)."""
    if not path.is_file():
        return None
    table = pq.read_table(path)
    if not {"user_id", "history"} <= set(table.column_names):
        return None
    import pyarrow.compute as pc

    lengths = pc.fill_null(pc.list_value_length(table.column("history")), 0)
    return dict(zip(table.column("user_id").to_pylist(), lengths.to_pylist(), strict=True))


def load_reference(bundle: str | None, settings: Settings, *,
                   features_path: Path | None = None) -> Reference:
    """The reference of ``bundle``; ``features_path`` overrides (or replaces) its features."""
    if bundle is None and features_path is None:
        raise MonitoringInputError("give a bundle (--bundle) or a reference file (--reference)")
    root: Path | None = None
    name, version, source = settings.model_name, "unknown", str(features_path)
    if bundle is not None:
        root, manifest = resolve_bundle_dir(bundle, settings)
        name, version, source = manifest.name, manifest.version, bundle
    fpath = features_path or (root / FEATURES_FILE if root else None)
    if fpath is None or not Path(fpath).is_file():
        raise NoDataError(f"no reference features at {fpath} (the training pipeline writes "
                          f"{FEATURES_FILE} into every bundle)")
    ref = Reference(features=pq.read_table(fpath), model_name=name, model_version=version,
                    source=source, bundle_dir=root)
    if root is not None:
        if (root / STATS_FILE).is_file():
            ref.stats = json.loads((root / STATS_FILE).read_text())
        predictions = _optional_table(root / PREDICTIONS_FILE)
        if predictions is not None:
            ref.predictions = predictions_as_lists(
                predictions, str(root / PREDICTIONS_FILE),
                activity=(None if "items" in predictions.column_names
                          else _activity(root / USER_FEATURES_FILE)))
        items = _optional_table(root / ITEMS_FILE)
        pop = _optional_table(root / POPULARITY_FILE)
        ref.items = items.select(["item_id", "genres"]).to_pandas() if items is not None else None
        ref.popularity = pop.select(["item_id", "count"]).to_pandas() if pop is not None else None
    return ref
