"""Object store: the same behaviour from a local directory and from S3 (moto on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from marquee.errors import (
    ChecksumError,
    InvalidArgumentError,
    InvalidKeyError,
    ObjectNotFoundError,
    StoreError,
)
from marquee.store import LocalStore, ObjectStore, S3Store, open_store


def _bucket() -> str:
    return f"test-{uuid.uuid4().hex[:16]}"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_env")
    return S3Store(_bucket(), "marquee/dev", endpoint, create_bucket=True)


def tamper(store: ObjectStore, key: str, data: bytes) -> None:
    """Change the stored bytes behind the store's back, keeping the recorded checksum."""
    if isinstance(store, LocalStore):
        (store.root / key).write_bytes(data)
        return
    assert isinstance(store, S3Store)
    full = f"{store.prefix}/{key}"
    meta = store.client.head_object(Bucket=store.bucket, Key=full)["Metadata"]
    store.client.put_object(Bucket=store.bucket, Key=full, Body=data, Metadata=meta)


def write_raw(store: ObjectStore, key: str, data: bytes) -> None:
    """Write an object without going through the store (no checksum recorded)."""
    if isinstance(store, LocalStore):
        (store.root / key).parent.mkdir(parents=True, exist_ok=True)
        (store.root / key).write_bytes(data)
        return
    assert isinstance(store, S3Store)
    store.client.put_object(Bucket=store.bucket, Key=f"{store.prefix}/{key}", Body=data)


def test_bytes_round_trip_records_sha256(store: ObjectStore) -> None:
    data = b"ratings,\x00binary\xff"
    digest = store.put_bytes("datasets/x/items.parquet", data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.get_bytes("datasets/x/items.parquet") == data
    assert store.exists("datasets/x/items.parquet")
    assert not store.exists("datasets/x/users.parquet")


def test_file_round_trip_into_new_directory(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 1000)
    digest = store.put_file("a/b/src.bin", src)
    dest = tmp_path / "out" / "deep" / "copy.bin"
    assert store.get_file("a/b/src.bin", dest) == digest == hashlib.sha256(
        src.read_bytes()).hexdigest()
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["copy.bin"]  # no temp files left


def test_list_is_a_sorted_string_prefix(store: ObjectStore) -> None:
    for key in ["models/m/10/bundle.json", "models/m/1/bundle.json", "models/m/1/model/w.npy",
                "datasets/d/items.parquet"]:
        store.put_bytes(key, key.encode())
    assert store.list("models/m/1/") == ["models/m/1/bundle.json", "models/m/1/model/w.npy"]
    assert store.list("models/m/1") == ["models/m/1/bundle.json", "models/m/1/model/w.npy",
                                        "models/m/10/bundle.json"]
    assert store.list() == sorted(store.list())
    assert len(store.list()) == 4
    assert store.list("nothing/") == []


def test_dir_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "bundle"
    (src / "model").mkdir(parents=True)
    (src / "model" / "w.safetensors").write_bytes(b"w" * 1000)
    (src / "reference").mkdir()
    (src / "reference" / "stats.json").write_text("{}")
    (src / "bundle.json").write_text('{"name": "x"}')
    put = store.put_dir("models/m/1", src)
    assert set(put) == {"model/w.safetensors", "reference/stats.json", "bundle.json"}
    got = store.get_dir("models/m/1", tmp_path / "copy")
    assert got == put
    for rel in put:
        assert (tmp_path / "copy" / rel).read_bytes() == (src / rel).read_bytes()


def test_missing_objects_are_not_found_errors_naming_the_key(store: ObjectStore,
                                                             tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError, match="models/none/bundle.json") as info:
        store.get_file("models/none/bundle.json", tmp_path / "x")
    assert info.value.status_code == 404
    with pytest.raises(ObjectNotFoundError, match="models/none/bundle.json"):
        store.get_bytes("models/none/bundle.json")
    with pytest.raises(ObjectNotFoundError, match="models/none"):
        store.get_dir("models/none", tmp_path / "y")
    assert not (tmp_path / "x").exists()


def test_tampered_object_is_refused_naming_the_key(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("models/m/1/model/w.npy", b"genuine weights")
    tamper(store, "models/m/1/model/w.npy", b"evil weights!!!")
    with pytest.raises(ChecksumError, match="models/m/1/model/w.npy") as info:
        store.get_file("models/m/1/model/w.npy", tmp_path / "w.npy")
    assert info.value.expected == hashlib.sha256(b"genuine weights").hexdigest()
    assert info.value.actual == hashlib.sha256(b"evil weights!!!").hexdigest()
    assert not (tmp_path / "w.npy").exists()  # a file that failed the check never lands
    with pytest.raises(ChecksumError, match="models/m/1/model/w.npy"):
        store.get_bytes("models/m/1/model/w.npy")


def test_object_without_recorded_checksum_is_refused(store: ObjectStore) -> None:
    write_raw(store, "foreign/object.bin", b"written by someone else")
    with pytest.raises(ChecksumError, match="no sha256 was recorded"):
        store.get_bytes("foreign/object.bin")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../escape", "a/../../b", "a//b", "a/./b",
                                 ".marquee-store/sha256/x", "a\\b"])
def test_invalid_keys_are_rejected(key: str, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(InvalidKeyError):
        store.put_bytes(key, b"x")
    assert not (tmp_path / "store").exists() or store.list() == []


def test_delete_removes_object_and_is_idempotent(store: ObjectStore) -> None:
    store.put_bytes("tmp/a", b"a")
    store.put_bytes("tmp/b", b"b")
    store.delete("tmp/a")
    store.delete("tmp/a")
    assert store.list("tmp/") == ["tmp/b"]
    assert not store.exists("tmp/a")


def test_uris(tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "store")
    assert local.uri("models/m/1") == (tmp_path / "store" / "models/m/1").resolve().as_uri()
    s3 = S3Store("bucket", "team/marquee", "http://127.0.0.1:1")
    assert s3.uri("models/m/1") == "s3://bucket/team/marquee/models/m/1"
    assert s3.uri() == "s3://bucket/team/marquee"


def test_open_store_dispatches_on_the_uri(tmp_path: Path, s3_env: str) -> None:
    plain = open_store(str(tmp_path / "a"))
    assert isinstance(plain, LocalStore) and plain.root == (tmp_path / "a").resolve()
    via_file = open_store((tmp_path / "b").as_uri())
    assert isinstance(via_file, LocalStore) and via_file.root == (tmp_path / "b").resolve()
    bucket = _bucket()
    s3 = open_store(f"s3://{bucket}/some/prefix", s3_env, create_bucket=True)
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == (bucket, "some/prefix")
    assert all(isinstance(s, ObjectStore) for s in (plain, via_file, s3))
    s3.put_bytes("k", b"v")
    assert s3.client.list_objects_v2(Bucket=bucket)["Contents"][0]["Key"] == "some/prefix/k"
    with pytest.raises(InvalidArgumentError, match="gs://bucket"):
        open_store("gs://bucket/x")


def test_s3_missing_bucket_is_not_created_unless_asked(s3_env: str) -> None:
    store = S3Store(_bucket(), "", s3_env)
    with pytest.raises(StoreError, match="create_bucket=True"):
        store.put_bytes("k", b"v")
    with pytest.raises(StoreError, match="does not exist"):
        store.list()


def test_s3_prefixes_isolate_stores(s3_env: str) -> None:
    bucket = _bucket()
    a = S3Store(bucket, "a", s3_env, create_bucket=True)
    b = S3Store(bucket, "ab", s3_env)
    a.put_bytes("x", b"1")
    b.put_bytes("y", b"2")
    assert a.list() == ["x"] and b.list() == ["y"]


def test_s3_large_files_go_up_in_parts(s3_env: str, tmp_path: Path) -> None:
    mib = 1024 * 1024
    store = S3Store(_bucket(), "big", s3_env, create_bucket=True,
                    multipart_threshold=5 * mib, multipart_chunksize=5 * mib)
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * (6 * mib // 256 + 1))
    digest = store.put_file("big.bin", src)
    etag = store.client.head_object(Bucket=store.bucket, Key="big/big.bin")["ETag"]
    assert etag.strip('"').endswith("-2")  # an S3 multipart ETag: two parts
    assert store.get_file("big.bin", tmp_path / "back.bin") == digest
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_s3_retries_with_backoff_are_configured() -> None:
    store = S3Store("bucket", "", "http://127.0.0.1:1", retry_mode="adaptive", max_attempts=5)
    assert store.client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 5}


def test_s3_credentials_come_only_from_the_environment(
        s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(StoreError, match="no AWS credentials"):
        S3Store(_bucket(), "", s3_server).put_bytes("k", b"v")
