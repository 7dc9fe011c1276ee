"""Small state files that survive a crash or a power loss.

The rollout controller's status, the retrain trigger's state and run records, and the router's
routing file are each one small text file that later decisions are read from. Each is written
through :func:`write_text_atomic`: a temp file in the same directory, synced, renamed over the
old file, and the directory synced. After a crash, a kill or a power loss the file holds the
old text or the new, never nothing or a part (unsynced, a rename can reach the disk before the
data it names). :func:`write_text_exclusive` does the same for a file that must not exist yet
(a rollout's spec): of two writers at once, one wins and the other gets ``FileExistsError``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_text_atomic", "write_text_exclusive"]


def _synced_temp(path: Path, text: str) -> str:
    """A temp file beside ``path`` (its directory created when missing) holding ``text``,
    synced to disk; removed again when that fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _sync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text_atomic(path: Path | str, text: str) -> None:
    """Replace ``path`` with ``text`` durably (its directory is created when missing); the temp
    file is removed when the write fails, and ``path`` keeps its old text."""
    path = Path(path)
    tmp = _synced_temp(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def write_text_exclusive(path: Path | str, text: str) -> None:
    """Create ``path`` with ``text`` durably, only if it does not exist: the synced temp file
    is hard-linked to ``path``, which raises ``FileExistsError`` when ``path`` exists (so a
    check-then-write race cannot let two writers both succeed)."""
    path = Path(path)
    tmp = _synced_temp(path, text)
    try:
        os.link(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _sync_dir(path.parent)
