"""One flock primitive for every lock file of the platform.

The kernel releases an flock when its holder dies, so a crashed writer never leaves a stale
lock behind; that is why every cross-process lock here is an flock and not a lock file's mere
existence. Users: the registry (``<db>.lock``), the local store (``.marquee-store/lock``), the
demo (``demo.lock`` per home), the rollout controller (``controller.lock``, ``manager.lock``)
and the retrain trigger's state.

flock is per open file: a second flock from the same process on another descriptor waits for
itself. Callers that nest within a process add their own thread lock (the registry's is
re-entrant).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LockHeld", "flock"]


class LockHeld(RuntimeError):
    """A lock taken with ``wait=False`` is held elsewhere; ``holder`` is the pid its holder
    recorded (``"?"`` when none was)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by pid {holder}")
        self.path = path
        self.holder = holder


@contextmanager
def flock(path: Path | str, *, shared: bool = False, wait: bool = True,
          optional: bool = False, record_pid: bool = False) -> Iterator[bool]:
    """Hold an flock on ``path`` for the ``with`` block; yields whether it is held.

    - ``shared``: a reader's lock (LOCK_SH) taken on the file opened read-only, so a reader
      never creates it; otherwise an exclusive lock on the file, created if missing (its parent
      too).
    - ``wait=False``: raise :class:`LockHeld` instead of waiting for the holder.
    - ``optional``: a lock file that cannot be opened (a read-only directory, a reader's lock
      before any writer made it) yields False and the block runs unlocked: nobody who could
      write there can be waiting on it. Otherwise the OSError propagates.
    - ``record_pid``: write this process's pid into the file once held, for a ``LockHeld``
      of a later taker to name.
    """
    path = Path(path)
    try:
        if shared:
            fd = os.open(path, os.O_RDONLY)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # less the umask
    except OSError:
        if not optional:
            raise
        yield False
        return
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            raise LockHeld(path, holder) from None
        if record_pid:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield True
    finally:
        os.close(fd)  # releases the flock
