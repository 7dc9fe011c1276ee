"""Small state files that survive a crash or a power loss, and new files with ordinary modes.

The rollout controller's status, the retrain trigger's state and run records, and the router's
routing file are each one small text file that later decisions are read from. Each is written
through :func:`write_text_atomic`: a temp file in the same directory, synced, renamed over the
old file, and the directory synced. After a crash, a kill or a power loss the file holds the
old text or the new, never nothing or a part (unsynced, a rename can reach the disk before the
data it names). :func:`write_text_exclusive` does the same for a file that must not exist yet
(a rollout's spec): of two writers at once, one wins and the other gets ``FileExistsError``.
Text is written as UTF-8 whatever the locale, so a reader in another locale reads it back.

:func:`new_file` and :func:`new_dir` make the uniquely named temp files and directories these
writes, the object store and bundle fetches rename into place. ``tempfile.mkstemp`` and
``mkdtemp`` make them 0600 and 0700 whatever the umask, so what they became was private to the
writer: a home or store shared by pods of different uids (the pipeline writes, the model server
reads) then failed with ``PermissionError``. These get the modes a plain ``open()`` or
``mkdir()`` gives under the process's umask, and a replaced file keeps the mode it had.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

__all__ = ["new_dir", "new_file", "write_text_atomic", "write_text_exclusive"]

_ATTEMPTS = 100


def _fresh_names(directory: Path, prefix: str, suffix: str) -> list[Path]:
    return [directory / f"{prefix}{secrets.token_hex(8)}{suffix}" for _ in range(_ATTEMPTS)]


def new_file(directory: Path | str, prefix: str = "", suffix: str = "") -> tuple[int, Path]:
    """Create a new, uniquely named file in ``directory``; return a descriptor open for writing
    and its path. Its mode is 0666 less the umask, as a plain ``open()`` would give."""
    for path in _fresh_names(Path(directory), prefix, suffix):
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temp file name in {directory}")


def new_dir(directory: Path | str, prefix: str = "", suffix: str = "") -> Path:
    """Create a new, uniquely named directory in ``directory``; its mode is 0777 less the
    umask, as a plain ``mkdir()`` would give."""
    for path in _fresh_names(Path(directory), prefix, suffix):
        try:
            path.mkdir(0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temp directory name in {directory}")


def _synced_temp(path: Path, text: str) -> Path:
    """A temp file beside ``path`` (its directory created when missing) holding ``text`` as
    UTF-8, synced to disk, with the mode ``path`` has (a new file's when it has none); removed
    again when that fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    fd, tmp = new_file(path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _sync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text_atomic(path: Path | str, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) durably, keeping its mode (its directory is
    created when missing); the temp file is removed when the write fails, and ``path`` keeps
    its old text."""
    path = Path(path)
    tmp = _synced_temp(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def write_text_exclusive(path: Path | str, text: str) -> None:
    """Create ``path`` with ``text`` (UTF-8) durably, only if it does not exist: the synced temp
    file is hard-linked to ``path``, which raises ``FileExistsError`` when ``path`` exists (so a
    check-then-write race cannot let two writers both succeed)."""
    path = Path(path)
    tmp = _synced_temp(path, text)
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _sync_dir(path.parent)
