"""``LocalStore``: the object store as a plain directory (the embedded default).

Objects are ordinary files at ``<root>/<key>``, so a bundle directory inside the store is a
bundle as-is. The sha256 of each object is recorded when it is stored, in a mirror tree
``<root>/.marquee-store/sha256/<key>`` that keeps data directories clean; it is checked on
every read. Writes go through a temporary file under ``<root>/.marquee-store/tmp`` and an
atomic rename, so a reader never sees half an object.

The checksum and the data are two files, so two writers of one key, or a reader during a
write, could pair one object's checksum with the other's bytes: writers hold an exclusive
flock on ``<root>/.marquee-store/lock`` while they swap both in, and a reader whose bytes do
not match the checksum reads both again under a shared one before it calls the object damaged.

Objects, checksums and directories get the modes a plain ``open()``/``mkdir()`` gives under the
writer's umask, so a store shared by users or pods of different uids stays readable by them. A
writer killed mid-write leaves its temporary ``.part``; writers remove those untouched for
:data:`STALE_PART_SECONDS`, which no live writer's part is (see :meth:`LocalStore._sweep`).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from marquee.durable import new_file
from marquee.errors import ChecksumError, ObjectNotFoundError, StoreError
from marquee.filelock import flock
from marquee.store.base import (
    RESERVED_SEGMENT,
    StoreBase,
    check_key,
    sha256_bytes,
    temp_path_beside,
)

__all__ = ["LocalStore", "find_local_store_root", "STALE_PART_SECONDS"]

_CHUNK = 1024 * 1024

#: A ``.part`` in ``.marquee-store/tmp`` not modified for this long was left by a dead writer.
STALE_PART_SECONDS = 24 * 3600
#: How often one store object looks for such parts (a server writes for weeks).
_SWEEP_EVERY_SECONDS = 3600.0


def find_local_store_root(path: Path | str) -> Path | None:
    """The nearest directory at or above ``path`` that is the root of a LocalStore, if any."""
    here = Path(path).resolve()
    for candidate in (here, *here.parents):
        if (candidate / RESERVED_SEGMENT).is_dir():
            return candidate
    return None


def _copy_hashing(src: Path, dst: Path) -> str:
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for chunk in iter(lambda: fin.read(_CHUNK), b""):
            digest.update(chunk)
            fout.write(chunk)
    return digest.hexdigest()


class LocalStore(StoreBase):
    """Objects under a local directory ``root`` (created on first write)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        self._next_sweep = 0.0  # time.monotonic() of the next look for dead writers' parts

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # Paths ------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _sum_path(self, key: str) -> Path:
        return self.root / RESERVED_SEGMENT / "sha256" / check_key(key)

    def _tmp(self) -> Path:
        tmp_dir = self.root / RESERVED_SEGMENT / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_EVERY_SECONDS
            self._sweep(tmp_dir)
        fd, path = new_file(tmp_dir, suffix=".part")
        os.close(fd)
        return path

    @staticmethod
    def _sweep(tmp_dir: Path) -> None:
        """Remove the ``.part`` files of writers killed mid-write (nothing else removes them).

        Only parts not modified for :data:`STALE_PART_SECONDS` go: a live writer's data part is
        modified by every chunk it copies, and its checksum part is written whole at once and
        renamed within the store lock's wait. Should a writer stall that long all the same, its
        rename fails with a StoreError; nothing half-written is ever read. A part that cannot
        be removed (another uid's, in a store without write access) is left alone.
        """
        cutoff = time.time() - STALE_PART_SECONDS
        try:
            entries = list(os.scandir(tmp_dir))
        except OSError:
            return
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                if (entry.name.endswith(".part") and stat.S_ISREG(info.st_mode)
                        and info.st_mtime < cutoff):
                    os.unlink(entry.path)
            except OSError:
                continue

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        """The store's flock, held while a checksum and its data are swapped in (exclusive) or
        read as a pair (shared). A store whose lock file cannot be made (a read-only store with
        none yet) has no writers to wait for."""
        path = self.root / RESERVED_SEGMENT / "lock"
        with flock(path, shared=not exclusive, optional=not exclusive):
            yield

    @contextmanager
    def _gone_as_not_found(self, key: str) -> Iterator[None]:
        """An object deleted (or its directory replaced) after the existence check and before
        the read is not found, like one that was never there."""
        src = str(self._path(key))
        try:
            yield
        except (FileNotFoundError, NotADirectoryError) as exc:
            if str(exc.filename) != src:
                raise
            raise ObjectNotFoundError(key, self.uri()) from exc

    def _recorded(self, key: str) -> str | None:
        try:
            # a damaged (non-ASCII) checksum file is a mismatch, named as one by the caller
            text = self._sum_path(key).read_text(encoding="ascii", errors="replace")
            return text.strip() or None
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _commit(self, key: str, tmp: Path, digest: str) -> None:
        """Record the checksum, then move the data into place (both atomic renames)."""
        target, sum_path = self._path(key), self._sum_path(key)
        sum_tmp = self._tmp()
        try:
            sum_tmp.write_text(digest + "\n", encoding="ascii")
            sum_path.parent.mkdir(parents=True, exist_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._locked(exclusive=True):
                os.replace(sum_tmp, sum_path)
                os.replace(tmp, target)
        except OSError as exc:
            raise StoreError(f"cannot store key {key!r} under {self.root}: {exc}") from exc
        finally:
            sum_tmp.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)

    # Objects ----------------------------------------------------------------------------
    def put_file(self, key: str, path: Path | str) -> str:
        check_key(key)
        tmp = self._tmp()
        try:
            digest = _copy_hashing(Path(path), tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._commit(key, tmp, digest)
        return digest

    def put_bytes(self, key: str, data: bytes) -> str:
        check_key(key)
        tmp = self._tmp()
        tmp.write_bytes(data)
        digest = sha256_bytes(data)
        self._commit(key, tmp, digest)
        return digest

    def get_file(self, key: str, path: Path | str) -> str:
        src = self._path(key)
        if not src.is_file():
            raise ObjectNotFoundError(key, self.uri())
        dest = Path(path)
        tmp = temp_path_beside(dest)
        try:
            with self._gone_as_not_found(key):
                actual = _copy_hashing(src, tmp)
                expected = self._recorded(key)
                if expected != actual:  # damaged, or written meanwhile: read the pair again
                    with self._locked(exclusive=False):
                        actual = _copy_hashing(src, tmp)
                        expected = self._recorded(key)
            if expected != actual:
                raise ChecksumError(key, expected, actual)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return actual

    def get_bytes(self, key: str) -> bytes:
        src = self._path(key)
        if not src.is_file():
            raise ObjectNotFoundError(key, self.uri())
        with self._gone_as_not_found(key):
            data = src.read_bytes()
            expected, actual = self._recorded(key), sha256_bytes(data)
            if expected != actual:  # damaged, or written meanwhile: read the pair again
                with self._locked(exclusive=False):
                    data = src.read_bytes()
                    expected, actual = self._recorded(key), sha256_bytes(data)
        if expected != actual:
            raise ChecksumError(key, expected, actual)
        return data

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        check_key(prefix, allow_empty=True)
        # Walk only the deepest directory the prefix names completely.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return []
        keys = []
        for path in base.rglob("*"):
            rel = path.relative_to(self.root).as_posix()
            if rel.split("/", 1)[0] == RESERVED_SEGMENT or not rel.startswith(prefix):
                continue
            if path.is_file():
                keys.append(rel)
        return sorted(keys)

    def uri(self, key: str = "") -> str:
        key = check_key(key, allow_empty=True)
        return (self.root / key).as_uri() if key else self.root.as_uri()

    def delete(self, key: str) -> None:
        """Remove the object and its recorded checksum; a missing key is not an error."""
        target, sum_path = self._path(key), self._sum_path(key)
        if not (target.exists() or sum_path.exists()):
            return
        with self._locked(exclusive=True):
            target.unlink(missing_ok=True)
            sum_path.unlink(missing_ok=True)
