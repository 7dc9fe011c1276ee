"""Bookkeeping shared by the background log writers (the model server's payload log,
``serving.payload.logger``, and the router's exposure and feedback logs,
``serving.router.exposure``): each row is counted once, as written or as dropped for one
reason, and drops are reported in the log without flooding it.

- :class:`DropReport` turns drops on the request path into one warning per
  ``DROP_REPORT_SECONDS`` at most.
- :class:`HeldRows` tracks rows a writer thread has taken and not yet settled. When
  ``close()`` stops waiting for a writer stuck on the object store, it counts what the writer
  holds as lost (``abandon``); a late outcome of those rows is then not counted again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DROP_REPORT_SECONDS", "DropReport", "HeldRows"]

#: Rows dropped on the request path are reported in one warning per this many seconds at most.
DROP_REPORT_SECONDS = 60.0

T = TypeVar("T")


class DropReport:
    """Counts dropped rows between reports; ``add`` says when the next report is due."""

    def __init__(self, every: float = DROP_REPORT_SECONDS) -> None:
        self._every = every
        self._unreported = 0
        self._reported_at = -every

    def add(self, n: int = 1) -> int:
        """Count ``n`` dropped rows. Returns the rows dropped since the last report when a
        report is due now (the caller logs it), else 0."""
        self._unreported += n
        now = time.monotonic()
        if now - self._reported_at < self._every:
            return 0
        self._reported_at = now
        due, self._unreported = self._unreported, 0
        return due


class HeldRows:
    """Rows taken by a writer thread and not yet written or dropped.

    Every change happens under one lock, so a row settles exactly once: as written, as
    dropped by the writer (``dropped`` returns True: the caller counts it), or as lost when
    ``abandon`` ran first (``dropped`` returns False: ``abandon``'s count holds it).
    """

    def __init__(self) -> None:
        self._n = 0
        self._abandoned = False
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._n

    def take(self, drain: Callable[[], list[T]]) -> list[T]:
        """``drain()``'s rows, held from now on (atomically with respect to ``abandon``)."""
        with self._lock:
            rows = drain()
            self._n += len(rows)
        return rows

    def add(self, n: int) -> None:
        with self._lock:
            self._n += n

    def written(self, n: int) -> None:
        with self._lock:
            self._n -= n

    def dropped(self, n: int) -> bool:
        """Settle ``n`` rows the writer could not write: True when the caller should count
        them as dropped, False when ``abandon`` has already counted them as lost."""
        with self._lock:
            self._n -= n
            return not self._abandoned

    def abandon(self, drain: Callable[[], list[T]]) -> int:
        """Give up on the writer: the rows it holds plus ``drain()``'s, all lost; how many."""
        with self._lock:
            self._abandoned = True
            return self._n + len(drain())
