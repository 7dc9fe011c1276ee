"""Batched payload logging: a bounded queue in front of a background Parquet writer.

``log(row)`` never blocks and never raises: when the queue is full (``queue_size`` rows, or
``queue_bytes`` of estimated row size: a row carries its request's and response's JSON, so a
stalled store behind large requests would otherwise hold gigabytes) the row is dropped and
``marquee_serving_payload_log_dropped_total{reason="queue_full"}`` counts it. A background
thread drains the queue, groups rows by partition (date, hour, model version) and writes one
Parquet file per partition and batch through the object store's ``put_bytes``; a failed write
is retried with backoff, then dropped and counted (``reason="write_failed"``). A row that
cannot be encoded is dropped on its own (``reason="encode_failed"``); the rest of its batch is
written. ``close()`` drains everything that is queued and writes it: call it on graceful shutdown.
Rows it cannot write within its timeout (the object store down or hanging) are counted
(``reason="shutdown"``) and named in an error line, not lost in silence. Drops on the request
path (``queue_full``, ``closed``) are reported in a warning at most once a minute.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from serving import metrics
from serving.logrows import DropReport, HeldRows
from serving.payload.schema import partition_key, rows_to_table

__all__ = ["BlobWriter", "PayloadLogger", "MAX_VERSION_LABELS", "OTHER_VERSION"]

log = logging.getLogger(__name__)

_STOP = object()

#: At most this many distinct ``model_version`` label values on the payload-log metrics per
#: process; rows of any later version are counted under :data:`OTHER_VERSION`. A model server
#: logs its own version and a payload sink the few versions deployed at once, so 20 leaves
#: room, while a sender of made-up versions cannot grow the series without bound.
MAX_VERSION_LABELS = 20
OTHER_VERSION = "other"
_MAX_LABEL_CHARS = 128  # a longer version is no bundle version: counted as "other"


#: Default bound of the queue in (estimated) bytes.
QUEUE_BYTES = 128 * 2**20
_ROW_OVERHEAD = 1024  # a row dict's own size in memory, roughly, besides its JSON and lists


def row_bytes(row: Mapping[str, Any]) -> int:
    """A payload row's size in memory, estimated: its JSON strings, its lists, a dict."""
    size = _ROW_OVERHEAD
    for key in ("request_json", "response_json"):
        value = row.get(key)
        if isinstance(value, str):
            size += len(value)
    for key in ("items", "scores"):
        value = row.get(key)
        if isinstance(value, list):
            size += 40 * len(value)
    return size


class _VersionLabels:
    """The first ``limit`` versions seen keep their own label; every later one is "other"."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, version: str) -> str:
        with self._lock:
            if version in self._seen:
                return version
            if len(self._seen) < self._limit and len(version) <= _MAX_LABEL_CHARS:
                self._seen.add(version)
                return version
        return OTHER_VERSION


_version_label = _VersionLabels(MAX_VERSION_LABELS)  # one per process, like the metrics


class BlobWriter(Protocol):
    """The part of ``marquee.store.ObjectStore`` the logger uses."""

    def put_bytes(self, key: str, data: bytes) -> str: ...


class PayloadLogger:
    def __init__(self, store: BlobWriter, *, queue_size: int = 50_000,
                 queue_bytes: int = QUEUE_BYTES, batch_rows: int = 2_000,
                 flush_seconds: float = 5.0, retries: int = 3) -> None:
        self._store = store
        # (row, its estimated size) pairs; bounded in rows and, since a row carries the
        # request and response JSON (up to the body limit each), in bytes too
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._max_bytes = queue_bytes
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._retries = retries
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.rows_written = 0
        self.rows_dropped = 0
        self.files_written: list[str] = []
        self._held = HeldRows()  # taken from the queue, not yet written or dropped
        self._drops = DropReport()

    # Producer side (request path) ----------------------------------------------------------------
    def log(self, row: Mapping[str, Any]) -> bool:
        """Queue one row; False (and a counted drop) when the queue is full or closed."""
        if self._closed.is_set():
            self._drop("closed")
            return False
        size = row_bytes(row)
        with self._bytes_lock:
            if self._queued_bytes + size > self._max_bytes:
                full = True
            else:
                full = False
                self._queued_bytes += size
        if not full:
            try:
                self._queue.put_nowait((row, size))
            except queue.Full:
                full = True
                self._unqueue(size)
        if full:
            self._drop("queue_full")
            return False
        return True

    def _unqueue(self, size: int) -> None:
        with self._bytes_lock:
            self._queued_bytes -= size

    @property
    def queued_bytes(self) -> int:
        """The estimated size of the rows waiting in the queue."""
        return self._queued_bytes

    def _drop(self, reason: str, n: int = 1) -> None:
        self.rows_dropped += n
        metrics.PAYLOG_DROPPED.labels(reason).inc(n)
        if reason in ("queue_full", "closed"):  # the writer's own drops log their cause
            n = self._drops.add(n)
            if n:
                log.warning("payload log: %d rows dropped (%s) since the last report; %d rows "
                            "queued: the object store is not taking writes fast enough",
                            n, reason, self._queue.qsize())

    def _writer_drop(self, reason: str, n: int) -> None:
        """``n`` taken rows dropped by the writer, counted unless close() has counted them."""
        if self._held.dropped(n):
            self._drop(reason, n)

    def _take(self) -> list[Mapping[str, Any]]:
        """Everything queued now, held by the caller until it is written or dropped."""
        return self._held.take(self._drain_nowait)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # Consumer side ------------------------------------------------------------------------------
    def start(self) -> PayloadLogger:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="payload-logger",
                                                daemon=True)
                self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting rows, write every queued row, and stop the thread (idempotent)."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            thread = self._thread
        if thread is not None:
            deadline = time.monotonic() + timeout
            try:
                # the writer drains everything queued before it; a full queue behind a stuck
                # writer must not hold the shutdown for ever
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                pass
            else:
                thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._abandon(timeout)
        else:
            self._write(self._take())

    def _abandon(self, timeout: float) -> None:
        """The writer is still busy (the store down or hanging) when close() stops waiting:
        what it holds and what is still queued is lost with the process. Count it and say so."""
        lost = self._held.abandon(self._drain_nowait)
        with contextlib.suppress(queue.Full):  # drained above: let the writer stop once it can
            self._queue.put_nowait(_STOP)
        if lost:
            self._drop("shutdown", lost)
        log.error("payload log: the object store did not take the last writes within %gs of "
                  "closing; %d rows not written, dropped", timeout, lost)

    def flush(self) -> None:
        """Write what is queued now, from the calling thread (tests and shutdown hooks)."""
        self._write(self._take())

    def _drain_nowait(self) -> list[Mapping[str, Any]]:
        rows = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return rows
            if item is not _STOP:
                row, size = item
                self._unqueue(size)
                rows.append(row)

    def _run(self) -> None:
        batch: list[Mapping[str, Any]] = []
        deadline = time.monotonic() + self._flush_seconds
        while True:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._write(batch + self._take())
                return
            if item is not None:
                row, size = item
                self._unqueue(size)
                batch.append(row)
                self._held.add(1)
            if len(batch) >= self._batch_rows or time.monotonic() >= deadline:
                self._write(batch)
                batch = []
                deadline = time.monotonic() + self._flush_seconds

    def _write(self, rows: list[Mapping[str, Any]]) -> None:
        if not rows:
            return
        parts: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
        unplaced = 0
        for row in rows:
            try:
                key = partition_key(row["ts"], row["model_version"]), str(row["model_version"])
            except Exception:  # noqa: BLE001 - a row without a usable ts/version is dropped alone
                unplaced += 1
                continue
            parts[key].append(row)
        if unplaced:
            log.error("%d payload rows have no usable ts or model_version; dropped", unplaced)
            self._writer_drop("encode_failed", unplaced)
        for (prefix, version), part in parts.items():
            for start in range(0, len(part), self._batch_rows):
                self._write_file(prefix, version, part[start:start + self._batch_rows])

    def _write_file(self, prefix: str, version: str, rows: list[Mapping[str, Any]]) -> None:
        key = f"{prefix}/part-{uuid.uuid4().hex}.parquet"
        table = self._encode(rows)
        if table is None:
            return
        try:
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="zstd")
            data = buf.getvalue()
        except Exception:  # noqa: BLE001 - a bad row must not kill the writer thread
            log.exception("payload rows could not be written as Parquet; %d dropped",
                          table.num_rows)
            self._writer_drop("encode_failed", table.num_rows)
            return
        for attempt in range(self._retries + 1):
            try:
                self._store.put_bytes(key, data)
            except Exception as exc:  # noqa: BLE001 - retried, then counted as dropped
                metrics.PAYLOG_FLUSH_ERRORS.inc()
                log.warning("payload log write %s failed (attempt %d): %s", key, attempt + 1, exc)
                if attempt < self._retries:
                    time.sleep(min(2.0, 0.1 * 2**attempt))
                continue
            self._held.written(table.num_rows)
            self.rows_written += table.num_rows
            self.files_written.append(key)
            metrics.PAYLOG_ROWS.labels(_version_label(version)).inc(table.num_rows)
            return
        log.error("payload log write %s failed for good; %d rows dropped", key, table.num_rows)
        self._writer_drop("write_failed", table.num_rows)

    def _encode(self, rows: list[Mapping[str, Any]]) -> pa.Table | None:
        """The rows as one Arrow table. When the batch does not encode, each row is tried
        alone: the bad ones are dropped and counted, the good ones kept (None if none is)."""
        try:
            return rows_to_table(rows)
        except Exception as exc:  # noqa: BLE001 - narrowed down row by row below
            first = exc
        tables = []
        for row in rows:
            try:
                tables.append(rows_to_table([row]))
            except Exception:  # noqa: BLE001 - this row is the bad one
                continue
        bad = len(rows) - len(tables)
        if bad:
            log.error("%d of %d payload rows could not be encoded; dropped (%s: %s)", bad,
                      len(rows), type(first).__name__, first)
            self._writer_drop("encode_failed", bad)
        return pa.concat_tables(tables) if tables else None
