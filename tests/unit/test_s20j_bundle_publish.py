"""Publishing a bundle whose file is rewritten while it goes up to S3 (moto on 127.0.0.1)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from marquee.bundle import fetch_bundle, finalize_bundle, publish_bundle
from marquee.errors import BundleNotFoundError, StoreError
from marquee.store import S3Store

NAME = "movie-recommender"


def test_a_file_rewritten_during_the_upload_is_refused_not_published(
        s3_env: str, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    (bundle / "model").mkdir(parents=True)
    weights = bundle / "model" / "weights.bin"
    weights.write_bytes(b"A" * 4096)
    finalize_bundle(bundle, NAME, "v1", {}, "fp", {}, code_revision="r", pipeline_run_id="run")
    store = S3Store(f"test-{uuid.uuid4().hex[:16]}", "s20j", s3_env, create_bucket=True)

    def training_still_writing(params: dict[str, Any], **_: Any) -> None:
        """A writer that rewrites the file in place once its upload has started."""
        if params.get("Key", "").endswith("weights.bin"):
            with open(weights, "r+b") as fh:
                fh.write(b"B" * 4096)

    store.client.meta.events.register("before-parameter-build.s3.PutObject",
                                      training_still_writing)
    with pytest.raises(StoreError, match=r"weights\.bin.*changed while it was being uploaded"):
        publish_bundle(store, bundle, NAME, "v1")
    # Nothing that every reader would refuse for ever (a stored sha256 of other bytes) is left.
    assert store.list(f"models/{NAME}/v1/model/") == []
    with pytest.raises(BundleNotFoundError):
        fetch_bundle(f"models/{NAME}/v1", tmp_path / "dest", store=store)
