"""The object store: a local directory or an S3 bucket behind one narrow interface.

``open_store(settings.resolved_store_uri, settings.s3_endpoint_url)`` is how a deployable gets
its store; tests use a ``LocalStore`` on a temporary directory or an ``S3Store`` against moto.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from marquee.errors import InvalidArgumentError
from marquee.store.base import ObjectStore, StoreBase, check_key, join_key, sha256_bytes, sha256_file
from marquee.store.local import LocalStore, find_local_store_root
from marquee.store.s3 import S3Store

__all__ = [
    "ObjectStore",
    "StoreBase",
    "LocalStore",
    "S3Store",
    "open_store",
    "local_path_of",
    "find_local_store_root",
    "check_key",
    "join_key",
    "sha256_bytes",
    "sha256_file",
]


def local_path_of(uri: str) -> Path | None:
    """The local path a ``file://`` URI or a plain path names; None for any other scheme."""
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArgumentError("uri", uri, "file:// URIs must name a local path")
        return Path(unquote(parsed.path))
    if "://" in uri:
        return None
    return Path(uri).expanduser()


def open_store(
    uri: str, s3_endpoint_url: str | None = None, *, create_bucket: bool = False
) -> ObjectStore:
    """Open the store at ``uri``: a local directory, ``file:///dir`` or ``s3://bucket/prefix``.

    ``create_bucket=True`` creates a missing S3 bucket; a local directory is always created
    on the first write.
    """
    if not uri:
        raise InvalidArgumentError("uri", uri, "a store URI must not be empty")
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise InvalidArgumentError("uri", uri, "s3:// URIs need a bucket: s3://bucket/prefix")
        return S3Store(parsed.netloc, parsed.path.strip("/"), s3_endpoint_url,
                       create_bucket=create_bucket)
    path = local_path_of(uri)
    if path is None:
        raise InvalidArgumentError("uri", uri, "use a directory, file:///dir or s3://bucket/prefix")
    return LocalStore(path)
