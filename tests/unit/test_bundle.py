"""Model bundle: finalize, verify, publish and fetch over a local directory and S3 (moto)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest

from marquee.bundle import (
    BundleManifest,
    bundle_key,
    code_revision,
    fetch_bundle,
    finalize_bundle,
    load_array,
    load_arrays,
    new_bundle_version,
    publish_bundle,
    save_array,
    save_arrays,
    verify_bundle,
)
from marquee.errors import (
    BundleError,
    BundleExistsError,
    BundleIntegrityError,
    BundleNotFoundError,
    ChecksumError,
    DestinationExistsError,
)
from marquee.store import LocalStore, ObjectStore, S3Store

NAME = "movie-recommender"
REPO = Path(__file__).resolve().parents[2]


def make_bundle(root: Path, version: str = "v1") -> BundleManifest:
    """A small bundle laid out as docs/CONTRACTS.md says."""
    (root / "model").mkdir(parents=True)
    (root / "reference").mkdir()
    (root / "model" / "config.json").write_text(json.dumps({"dim": 4}))
    save_arrays(root / "model" / "two_tower.safetensors",
                {"item_emb": np.arange(12, dtype=np.float32).reshape(3, 4)})
    save_array(root / "model" / "item_ids.npy", np.array([10, 20, 30], dtype=np.int64))
    (root / "reference" / "stats.json").write_text(json.dumps({"history_length": {"mean": 3.0}}))
    return finalize_bundle(root, NAME, version, training_config={"epochs": 1, "dim": 4},
                           data_fingerprint="f" * 64, metrics={"ndcg_at_10": 0.25},
                           code_revision="abc123", pipeline_run_id="run-1")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_env")
    return S3Store(f"test-{uuid.uuid4().hex[:16]}", "marquee", endpoint, create_bucket=True)


def test_finalize_lists_every_file_with_its_sha256(tmp_path: Path) -> None:
    manifest = make_bundle(tmp_path / "b")
    on_disk = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert set(on_disk) == {"name", "version", "schema_version", "created", "training_config",
                            "data_fingerprint", "metrics", "code_revision", "pipeline_run_id",
                            "files"}
    assert on_disk["schema_version"] == 1 and on_disk["created"].endswith("Z")
    assert manifest.created.tzinfo == UTC
    files = {p.relative_to(tmp_path / "b").as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in (tmp_path / "b").rglob("*") if p.is_file() and p.name != "bundle.json"}
    assert on_disk["files"] == files and len(files) == 4
    assert verify_bundle(tmp_path / "b") == manifest


def test_changed_file_is_refused_by_name(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b")
    (tmp_path / "b" / "model" / "config.json").write_text(json.dumps({"dim": 5}))
    with pytest.raises(BundleIntegrityError, match="model/config.json.*changed") as info:
        verify_bundle(tmp_path / "b")
    assert info.value.file == "model/config.json"


def test_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b")
    (tmp_path / "b" / "model" / "item_ids.npy").unlink()
    with pytest.raises(BundleIntegrityError, match="model/item_ids.npy.*missing"):
        verify_bundle(tmp_path / "b")


def test_unlisted_file_is_refused_by_name(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b")
    (tmp_path / "b" / "model" / "extra.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(BundleIntegrityError, match="model/extra.pkl.*not listed"):
        verify_bundle(tmp_path / "b")


def test_not_a_bundle_and_bad_manifest(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleNotFoundError, match="bundle.json"):
        verify_bundle(tmp_path / "empty")
    make_bundle(tmp_path / "b")
    raw = json.loads((tmp_path / "b" / "bundle.json").read_text())
    raw["files"]["../outside"] = "0" * 64
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="outside"):
        verify_bundle(tmp_path / "b")


@pytest.mark.parametrize(("field", "value"), [("name", "../etc"), ("version", "a/b"),
                                              ("metrics", {"ndcg_at_10": float("nan")})])
def test_finalize_refuses_bad_fields(tmp_path: Path, field: str, value: object) -> None:
    args: dict[str, object] = {"name": NAME, "version": "1", "training_config": {},
                               "data_fingerprint": "x", "metrics": {}, "code_revision": "r"}
    args[field] = value
    (tmp_path / "b").mkdir()
    with pytest.raises(BundleError, match=field):
        finalize_bundle(tmp_path / "b", **args)  # type: ignore[arg-type]
    assert not (tmp_path / "b" / "bundle.json").exists()


def test_publish_then_fetch_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    manifest = make_bundle(tmp_path / "b")
    uri = publish_bundle(store, tmp_path / "b", NAME, "v1")
    assert uri == store.uri(f"models/{NAME}/v1")
    assert sorted(store.list(f"models/{NAME}/v1/")) == sorted(
        [f"models/{NAME}/v1/{rel}" for rel in [*manifest.files, "bundle.json"]])
    by_uri, got = fetch_bundle(uri, tmp_path / "by-uri", store=store)
    by_key, _ = fetch_bundle(f"models/{NAME}/v1", tmp_path / "by-key", store=store)
    assert got == manifest
    for rel in [*manifest.files, "bundle.json"]:
        assert (by_uri / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
        assert (by_key / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    emb = load_arrays(by_uri / "model" / "two_tower.safetensors")["item_emb"]
    assert emb.shape == (3, 4) and emb[2, 3] == 11.0


def test_published_versions_are_immutable(store: ObjectStore, tmp_path: Path) -> None:
    make_bundle(tmp_path / "b")
    publish_bundle(store, tmp_path / "b", NAME, "v1")
    with pytest.raises(BundleExistsError, match="immutable"):
        publish_bundle(store, tmp_path / "b", NAME, "v1")
    with pytest.raises(BundleError, match="not movie-recommender/v2"):
        publish_bundle(store, tmp_path / "b", NAME, "v2")


def test_publish_refuses_a_bundle_that_does_not_verify(store: ObjectStore, tmp_path: Path) -> None:
    make_bundle(tmp_path / "b")
    (tmp_path / "b" / "model" / "config.json").write_text("{}")
    with pytest.raises(BundleIntegrityError, match="model/config.json"):
        publish_bundle(store, tmp_path / "b", NAME, "v1")
    assert store.list("models/") == []


def test_fetch_refuses_an_object_tampered_in_the_store(store: ObjectStore, tmp_path: Path) -> None:
    make_bundle(tmp_path / "b")
    publish_bundle(store, tmp_path / "b", NAME, "v1")
    key = f"models/{NAME}/v1/model/item_ids.npy"
    if isinstance(store, LocalStore):
        (store.root / key).write_bytes(b"tampered")
    else:
        assert isinstance(store, S3Store)
        full = f"{store.prefix}/{key}"
        meta = store.client.head_object(Bucket=store.bucket, Key=full)["Metadata"]
        store.client.put_object(Bucket=store.bucket, Key=full, Body=b"tampered", Metadata=meta)
    with pytest.raises(ChecksumError, match=key):
        fetch_bundle(f"models/{NAME}/v1", tmp_path / "dest", store=store)
    assert not (tmp_path / "dest").exists()


def test_fetch_refuses_a_file_replaced_through_the_store(store: ObjectStore,
                                                         tmp_path: Path) -> None:
    """A consistent re-upload (new bytes, new object checksum) still breaks bundle.json."""
    make_bundle(tmp_path / "b")
    publish_bundle(store, tmp_path / "b", NAME, "v1")
    store.put_bytes(f"models/{NAME}/v1/model/config.json", b'{"dim": 999}')
    with pytest.raises(BundleIntegrityError, match="model/config.json"):
        fetch_bundle(store.uri(f"models/{NAME}/v1"), tmp_path / "dest", store=store)
    assert not (tmp_path / "dest").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dest")] == []


def test_fetch_from_a_plain_directory_and_missing_bundles(tmp_path: Path) -> None:
    manifest = make_bundle(tmp_path / "b")
    path, got = fetch_bundle(str(tmp_path / "b"), tmp_path / "copy")
    assert got == manifest and (path / "model" / "item_ids.npy").is_file()
    with pytest.raises(DestinationExistsError):
        fetch_bundle(str(tmp_path / "b"), tmp_path / "copy")
    with pytest.raises(BundleNotFoundError):
        fetch_bundle(str(tmp_path / "nowhere"), tmp_path / "copy2")
    with pytest.raises(BundleNotFoundError):
        fetch_bundle("models/movie-recommender/9", tmp_path / "copy3",
                     store=LocalStore(tmp_path / "store"))


def test_arrays_round_trip_in_numpy_and_torch_flavours(tmp_path: Path) -> None:
    import torch

    weights = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": np.ones(3, "f4")}
    save_arrays(tmp_path / "t.safetensors", weights, metadata={"format": "pt"})
    as_torch = load_arrays(tmp_path / "t.safetensors", flavour="torch")
    assert torch.equal(as_torch["w"], weights["w"]) and as_torch["b"].dtype == torch.float32
    as_numpy = load_arrays(tmp_path / "t.safetensors")
    assert np.array_equal(as_numpy["w"], np.arange(6, dtype=np.float32).reshape(2, 3))
    save_array(tmp_path / "ids.npy", np.array([3, 1, 2], dtype=np.int64))
    assert load_array(tmp_path / "ids.npy").tolist() == [3, 1, 2]


def test_nothing_is_pickled(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="pickle"):
        save_array(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BundleError, match="pickle"):
        load_array(tmp_path / "pickled.npy")
    with pytest.raises(BundleError, match=".safetensors"):
        save_arrays(tmp_path / "w.pt", {"w": np.zeros(2)})


def test_code_revision_is_the_git_head_or_unknown(tmp_path: Path) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert code_revision(REPO) == head
    assert code_revision(tmp_path) == "unknown"


def test_bundle_keys_and_versions() -> None:
    assert bundle_key(NAME, "3") == "models/movie-recommender/3"
    with pytest.raises(BundleError, match="version"):
        bundle_key(NAME, "../3")
    first, second = new_bundle_version(), new_bundle_version()
    assert first != second
    assert bundle_key(NAME, first).startswith("models/movie-recommender/20")
