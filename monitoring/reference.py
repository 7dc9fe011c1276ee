"""The model bundle as the monitoring jobs see it: the training reference and item tables.

``<bundle>/reference/features.parquet`` (≤ 100k rows of FEATURE_SPEC columns + ``score``),
``reference/stats.json``, ``reference/predictions.parquet`` (optional: ``items``/``scores``
lists of recommendations made at training time, the reference for prediction drift),
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
from marquee.errors import MarqueeError
from marquee.settings import Settings
from monitoring.errors import MonitoringInputError, NoDataError

__all__ = ["Reference", "resolve_bundle_dir", "load_reference"]

FEATURES_FILE = "reference/features.parquet"
STATS_FILE = "reference/stats.json"
PREDICTIONS_FILE = "reference/predictions.parquet"
ITEMS_FILE = "model/items.parquet"
POPULARITY_FILE = "model/popularity.parquet"


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
        if "://" not in ref and "/" not in ref:  # alias or version number: ask the registry
            from marquee.registry import Registry

            uri = Registry(settings.resolved_registry_uri, settings.model_name).resolve(ref)
        cache = settings.home / "cache" / "bundles" / hashlib.sha256(uri.encode()).hexdigest()[:16]
        if (cache / "bundle.json").is_file():
            return cache, verify_bundle(cache)
        from marquee.store import open_store

        store = open_store(settings.resolved_store_uri, settings.s3_endpoint_url)
        return fetch_bundle(uri, cache, store=store, s3_endpoint_url=settings.s3_endpoint_url)
    except MarqueeError as exc:
        raise MonitoringInputError(f"bundle={ref!r}: {exc.message}") from exc


def _optional_table(path: Path) -> pa.Table | None:
    return pq.read_table(path) if path.is_file() else None


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
        ref.predictions = _optional_table(root / PREDICTIONS_FILE)
        items = _optional_table(root / ITEMS_FILE)
        pop = _optional_table(root / POPULARITY_FILE)
        ref.items = items.select(["item_id", "genres"]).to_pandas() if items is not None else None
        ref.popularity = pop.select(["item_id", "count"]).to_pandas() if pop is not None else None
    return ref
