"""Train-side → serve-side through real parts: a bundle published to S3 (moto on 127.0.0.1),
registered in MLflow (SQLite, direct S3 artifacts via MLFLOW_S3_ENDPOINT_URL), resolved by
alias, downloaded and checked file by file.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from marquee.bundle import (
    fetch_bundle,
    finalize_bundle,
    load_array,
    load_arrays,
    publish_bundle,
    save_array,
    save_arrays,
    verify_bundle,
)
from marquee.errors import BundleIntegrityError, BundleNotFoundError
from marquee.registry import Registry
from marquee.store import S3Store, open_store

pytestmark = pytest.mark.integration
NAME = "movie-recommender"


def _train(root: Path, version: str, seed: int) -> None:
    """Stand-in for training: the files a recommender bundle holds."""
    rng = np.random.default_rng(seed)
    (root / "model").mkdir(parents=True)
    (root / "reference").mkdir()
    save_arrays(root / "model" / "two_tower.safetensors",
                {"item_emb": rng.normal(size=(50, 8)).astype(np.float32)})
    save_array(root / "model" / "item_ids.npy", np.arange(1, 51, dtype=np.int64))
    (root / "model" / "config.json").write_text(json.dumps({"dim": 8}))
    (root / "reference" / "stats.json").write_text(json.dumps({"history_length": {"mean": 4}}))
    finalize_bundle(root, NAME, version, {"dim": 8, "seed": seed}, "fp-" + version,
                    {"ndcg_at_10": 0.2 + seed / 100}, pipeline_run_id=f"run-{seed}")


def test_publish_register_resolve_fetch(s3_env: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = f"marquee-{uuid.uuid4().hex[:12]}"
    store = open_store(f"s3://{bucket}/team", s3_env, create_bucket=True)
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")

    versions = []
    for seed, bundle_version in enumerate(["20250101T000000Z-aaaa", "20250102T000000Z-bbbb"]):
        _train(tmp_path / bundle_version, bundle_version, seed)
        uri = publish_bundle(store, tmp_path / bundle_version, NAME, bundle_version)
        assert uri == f"s3://{bucket}/team/models/{NAME}/{bundle_version}"
        manifest = verify_bundle(tmp_path / bundle_version)
        versions.append(registry.register(uri, manifest.metrics, {
            "data_fingerprint": manifest.data_fingerprint,
            "code_revision": manifest.code_revision,
            "pipeline_run_id": manifest.pipeline_run_id,
            "params": json.dumps(manifest.training_config)}))
    registry.promote(versions[0])
    registry.promote(versions[1])

    # Serving side: alias -> bundle URI -> download -> every checksum checked.
    uri = registry.resolve("production")
    path, manifest = fetch_bundle(uri, tmp_path / "serving" / "production",
                                  s3_endpoint_url=s3_env)
    assert manifest.version == "20250102T000000Z-bbbb" and manifest.pipeline_run_id == "run-1"
    trained = load_arrays(tmp_path / "20250102T000000Z-bbbb" / "model" / "two_tower.safetensors")
    served = load_arrays(path / "model" / "two_tower.safetensors")
    assert np.array_equal(trained["item_emb"], served["item_emb"])
    assert load_array(path / "model" / "item_ids.npy").tolist() == list(range(1, 51))
    previous_uri = registry.resolve("previous")
    assert previous_uri.endswith("20250101T000000Z-aaaa")

    # MLflow's own client (what MLflow-native tools use) reaches the same bytes via the alias;
    # it resolves models:/ URIs against the registry named in the environment.
    import mlflow.artifacts

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry.tracking_uri)
    via_mlflow = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{NAME}@production", dst_path=str(tmp_path / "via-mlflow"),
        tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    assert verify_bundle(via_mlflow) == manifest

    # A file swapped in the bucket, recorded checksum and all, is still caught by bundle.json.
    assert isinstance(store, S3Store)
    key = f"models/{NAME}/20250101T000000Z-aaaa/model/item_ids.npy"
    save_array(tmp_path / "evil.npy", np.zeros(50, dtype=np.int64))
    store.put_file(key, tmp_path / "evil.npy")
    with pytest.raises(BundleIntegrityError, match="model/item_ids.npy"):
        fetch_bundle(previous_uri, tmp_path / "serving" / "previous", s3_endpoint_url=s3_env)
    assert not (tmp_path / "serving" / "previous").exists()


def test_a_folder_marker_in_the_bucket_does_not_break_a_fetch(s3_env: str, tmp_path: Path) -> None:
    """S3 consoles create a zero-byte ``<folder>/`` object for each folder made by hand. Before:
    fetching a bundle with one in it failed with "invalid object key '': a key must not be
    empty"; a prefix holding only markers is no bundle at all."""
    bucket = f"marquee-{uuid.uuid4().hex[:12]}"
    store = open_store(f"s3://{bucket}/team", s3_env, create_bucket=True)
    assert isinstance(store, S3Store)
    version = "20250103T000000Z-cccc"
    _train(tmp_path / version, version, 3)
    uri = publish_bundle(store, tmp_path / version, NAME, version)
    key = f"team/models/{NAME}/{version}"
    for marker in (f"{key}/", f"{key}/model/"):
        store.client.put_object(Bucket=bucket, Key=marker, Body=b"")
    path, manifest = fetch_bundle(uri, tmp_path / "serving", s3_endpoint_url=s3_env)
    assert manifest.version == version
    assert verify_bundle(path) == manifest

    store.client.put_object(Bucket=bucket, Key="team/models/empty-folder/", Body=b"")
    with pytest.raises(BundleNotFoundError, match="no bundle at"):
        fetch_bundle(f"s3://{bucket}/team/models/empty-folder", tmp_path / "none",
                     s3_endpoint_url=s3_env)
