"""The object store interface, key rules, hashing, and the directory operations every store shares.

A key is a relative POSIX path (``models/movie-recommender/3/bundle.json``): no leading ``/``,
no ``.``/``..`` segments, no backslashes, no empty segments. ``list(prefix)`` is a plain string
prefix, as in S3; ``put_dir``/``get_dir`` treat their prefix as a directory.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from marquee.durable import new_file
from marquee.errors import InvalidArgumentError, InvalidKeyError, ObjectNotFoundError

__all__ = [
    "ObjectStore",
    "StoreBase",
    "check_key",
    "join_key",
    "sha256_bytes",
    "sha256_file",
    "RESERVED_SEGMENT",
    "temp_path_beside",
]

#: Top-level segment a ``LocalStore`` keeps its own bookkeeping under; never a valid key.
RESERVED_SEGMENT = ".marquee-store"
_CHUNK = 1024 * 1024


@runtime_checkable
class ObjectStore(Protocol):
    """What the platform needs from an object store (a local directory or an S3 bucket)."""

    def put_file(self, key: str, path: Path | str) -> str:
        """Store the file at ``key``; return its sha256 (recorded with the object)."""
        ...

    def get_file(self, key: str, path: Path | str) -> str:
        """Download ``key`` to ``path`` after checking the recorded sha256; return it."""
        ...

    def put_bytes(self, key: str, data: bytes) -> str: ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys that start with ``prefix`` (a plain string prefix)."""
        ...

    def uri(self, key: str = "") -> str:
        """Absolute URI of ``key`` (``file:///…`` or ``s3://bucket/…``)."""
        ...

    def put_dir(self, prefix: str, path: Path | str) -> dict[str, str]: ...

    def get_dir(self, prefix: str, path: Path | str) -> dict[str, str]: ...

    def delete(self, key: str) -> None: ...


def check_key(key: str, *, allow_empty: bool = False) -> str:
    """Return ``key`` without a trailing ``/`` if it is a valid key, else raise InvalidKeyError."""
    if not isinstance(key, str):
        raise InvalidKeyError(repr(key), "a key must be a string")
    stripped = key.rstrip("/")
    if not stripped:
        if allow_empty:
            return ""
        raise InvalidKeyError(key, "a key must not be empty")
    if stripped.startswith("/"):
        raise InvalidKeyError(key, "a key must be relative (no leading '/')")
    if "\\" in stripped or "\x00" in stripped:
        raise InvalidKeyError(key, "a key must not contain backslashes or NUL")
    parts = stripped.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidKeyError(key, "a key must not contain empty, '.' or '..' segments")
    if parts[0] == RESERVED_SEGMENT:
        raise InvalidKeyError(key, f"{RESERVED_SEGMENT!r} is reserved")
    return stripped


def join_key(*parts: str) -> str:
    """Join key fragments with single slashes, ignoring empty ones."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hash_stream(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path | str) -> str:
    with open(path, "rb") as fh:
        return _hash_stream(fh)


def _files_under(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, path) of every regular file under ``root``, sorted.

    A symlink is refused rather than followed: it may point anywhere (``/etc/passwd``, a
    credentials file), and whatever it points at would be uploaded under the directory's name.
    """
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise InvalidArgumentError("path", str(path),
                                       f"{rel!r} is a symbolic link; put_dir uploads files only")
        if path.is_file():
            yield rel, path


def temp_path_beside(target: Path) -> Path:
    """A fresh temporary file in ``target``'s directory (same filesystem: atomic rename), with
    the mode a plain ``open()`` gives (not mkstemp's 0600: a fetched file stays readable by the
    others the umask lets read it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, path = new_file(target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    return path


class StoreBase(ABC):
    """Shared directory operations on top of the per-object primitives."""

    @abstractmethod
    def put_file(self, key: str, path: Path | str) -> str: ...

    @abstractmethod
    def get_file(self, key: str, path: Path | str) -> str: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]: ...

    @abstractmethod
    def uri(self, key: str = "") -> str: ...

    def put_dir(self, prefix: str, path: Path | str) -> dict[str, str]:
        """Upload every file under ``path`` to ``prefix/<relative path>``; return {rel: sha256}."""
        prefix = check_key(prefix, allow_empty=True)
        root = Path(path)
        if not root.is_dir():
            raise NotADirectoryError(f"put_dir needs a directory, got {root}")
        files = list(_files_under(root))  # every refusal before the first upload
        return {rel: self.put_file(join_key(prefix, rel), file) for rel, file in files}

    def get_dir(self, prefix: str, path: Path | str) -> dict[str, str]:
        """Download every object under the directory ``prefix`` into ``path``; return {rel: sha256}.

        Each object is checked against its recorded sha256. Folder markers (S3 keys ending in
        ``/``, which S3 consoles create for "folders") hold no file and are skipped. Raises
        ObjectNotFoundError when nothing is stored under ``prefix``.
        """
        prefix = check_key(prefix, allow_empty=True)
        dir_prefix = f"{prefix}/" if prefix else ""
        keys = [key for key in self.list(dir_prefix) if not key.endswith("/")]
        if not keys:
            raise ObjectNotFoundError(dir_prefix or "/", self.uri(prefix))
        root = Path(path)
        fetched: dict[str, str] = {}
        for key in keys:
            rel = check_key(key[len(dir_prefix):])  # a stored '../x' must not escape ``path``
            fetched[rel] = self.get_file(key, root / rel)
        return fetched
