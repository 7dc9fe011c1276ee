"""An s3:// URI that holds credentials (``s3://KEY:SECRET@bucket/…``, as some tools write
them) or is no bucket at all (``s3://minio:9000/…``, the endpoint typed into the URI) is
refused in one line that keeps the secret out, before any request.

Before, botocore's own bucket-name check failed every request with a multi-line
"Parameter validation failed" that quoted the name whole, secret included, and ``marquee``
printed it; ``S3Store``'s repr showed its endpoint's password (the registry's repr masks it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

from marquee.store import open_store

SECRET = "S3CRET-h23"


def marquee(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The installed ``marquee`` with home ``home``, no other MARQUEE_* or AWS_* but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MARQUEE_", "AWS_"))}
    return subprocess.run([str(Path(sys.executable).parent / "marquee"), *args],
                          env={**clean, "MARQUEE_HOME": str(home), "COLUMNS": "200",
                               "AWS_ACCESS_KEY_ID": "testing",
                               "AWS_SECRET_ACCESS_KEY": "testing", **env},
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize(("bundle_uri", "expected"), [
    (f"s3://AKIAEXAMPLE:{SECRET}@bundles/movie-recommender/1",
     "error: s3://***@bundles: an s3:// URI holds no credentials; S3 credentials come from "
     "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the pod's role"),
    (f"s3://{SECRET}@bundles/movie-recommender/1",  # a token alone, no ':'
     "error: s3://***@bundles: an s3:// URI holds no credentials"),
    ("s3://minio:9000/bundles/movie-recommender/1",
     "error: invalid bucket name 'minio:9000': letters, digits, '.', '-' and '_'"),
])
def test_serve_refuses_an_s3_bundle_uri_that_is_no_bucket_in_one_line(
        tmp_path: Path, bundle_uri: str, expected: str) -> None:
    out = marquee(tmp_path, "serve", "--bundle-uri", bundle_uri, "--port", str(free_port()))
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith(expected), out.stderr
    assert not any("Parameter validation failed" in line for line in lines), out.stderr
    assert SECRET not in out.stdout + out.stderr


def test_a_store_uri_with_credentials_is_refused_when_opened(tmp_path: Path) -> None:
    from marquee.errors import StoreError

    with pytest.raises(StoreError) as info:
        open_store(f"s3://AKIAEXAMPLE:{SECRET}@bucket/team", "http://127.0.0.1:9")
    assert str(info.value).startswith("s3://***@bucket: an s3:// URI holds no credentials")
    assert SECRET not in str(info.value)


def test_s3_store_repr_masks_the_endpoint_password() -> None:
    store = open_store("s3://bucket/team", f"http://minio:{SECRET}@127.0.0.1:9000")
    assert repr(store) == ("S3Store('s3://bucket/team', "
                           "endpoint_url='http://minio:***@127.0.0.1:9000')")
