"""Object store edges found in session 20: symlinks in ``put_dir``, an unreachable S3 endpoint."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from marquee.errors import InvalidArgumentError, StoreError
from marquee.store import LocalStore, ObjectStore, S3Store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_env")
    return S3Store(f"test-{uuid.uuid4().hex[:16]}", "s20j", endpoint, create_bucket=True)


def test_put_dir_refuses_a_symlink_and_uploads_nothing(store: ObjectStore, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("not for the bucket")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    os.symlink(secret, src / "sub" / "link.txt")

    with pytest.raises(InvalidArgumentError, match=r"sub/link\.txt.*symbolic link"):
        store.put_dir("up", src)
    assert store.list("up/") == []  # refused before anything went up


def _refused_endpoint() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: connections are refused
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_an_unreachable_endpoint_fails_after_few_attempts_naming_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    endpoint = _refused_endpoint()
    store = S3Store("models-bucket", "", endpoint)
    attempts: list[str] = []
    store.client.meta.events.register("before-send.s3", lambda **kw: attempts.append("sent"))

    with pytest.raises(StoreError) as info:
        store.list("models/")
    assert endpoint in str(info.value) and "models-bucket" in str(info.value)
    assert "s3cr3t-value" not in str(info.value)
    # Not botocore's 8 attempts with up to 20 s of backoff each: a reader fails within seconds.
    assert len(attempts) == 3, f"{len(attempts)} attempts"
