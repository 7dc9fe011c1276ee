"""Small state files that survive a crash or a power loss.

The rollout controller's status, the retrain trigger's state and run records, and the router's
routing file are each one small text file that later decisions are read from. Each is written
through :func:`write_text_atomic`: a temp file in the same directory, synced, renamed over the
old file, and the directory synced. After a crash, a kill or a power loss the file holds the
old text or the new, never nothing or a part (unsynced, a rename can reach the disk before the
data it names).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_text_atomic"]


def write_text_atomic(path: Path | str, text: str) -> None:
    """Replace ``path`` with ``text`` durably (its directory is created when missing); the temp
    file is removed when the write fails, and ``path`` keeps its old text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
