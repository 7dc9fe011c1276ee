"""Exposure and feedback logs: Parquet in the object store, written off the request path.

``exposure-logs/date=YYYY-MM-DD/hour=HH/part-<uuid>.parquet``: one row per served list —
``request_id, ts, user_id, variant, model_version, strategy, k, items, scores, latency_ms``
(and ``teams`` for interleaved lists: the variant that contributed each item).
``feedback-logs/date=…/hour=…/part-<uuid>.parquet``: the contract's columns — ``request_id,
ts, user_id, item_id, event, variant, model_version``.

``log(row)`` never blocks and never raises: it appends to an in-memory buffer (no lock, no
thread wake-up on the request path); a full buffer drops the row and counts it. A background
thread takes the buffer every ``flush_seconds`` (or as soon as ``batch_rows`` are waiting) and
writes Parquet with the store's ``put_bytes``. Rows dropped on the request path are reported in
a warning at most once a minute; rows ``close()`` cannot write within its timeout (the store
down or hanging) are counted (``reason="shutdown"``) and named in an error line.
"""

from __future__ import annotations

import io
import logging
import threading
import uuid
from collections import defaultdict, deque
from datetime import datetime, timezone
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from serving.logrows import DropReport, HeldRows
from serving.router import metrics

__all__ = ["EventLog", "EXPOSURE_SCHEMA", "FEEDBACK_SCHEMA", "EXPOSURE_PREFIX", "FEEDBACK_PREFIX"]

log = logging.getLogger(__name__)

EXPOSURE_PREFIX = "exposure-logs"
FEEDBACK_PREFIX = "feedback-logs"

EXPOSURE_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("ts", pa.float64()), ("user_id", pa.int64()),
    ("variant", pa.string()), ("model_version", pa.string()), ("strategy", pa.string()),
    ("k", pa.int64()), ("items", pa.list_(pa.int64())), ("scores", pa.list_(pa.float64())),
    ("teams", pa.list_(pa.string())), ("latency_ms", pa.float64()),
])
FEEDBACK_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("ts", pa.float64()), ("user_id", pa.int64()),
    ("item_id", pa.int64()), ("event", pa.string()), ("variant", pa.string()),
    ("model_version", pa.string()),
])

class BlobWriter(Protocol):
    def put_bytes(self, key: str, data: bytes) -> str: ...


class EventLog:
    def __init__(self, store: BlobWriter, prefix: str, schema: pa.Schema, *,
                 queue_size: int = 100_000, batch_rows: int = 5000,
                 flush_seconds: float = 5.0) -> None:
        self.store, self.prefix, self.schema = store, prefix, schema
        self._rows: deque[dict[str, Any]] = deque()
        self._max_rows = queue_size
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.rows_written = 0
        self.files: list[str] = []
        self._held = HeldRows()  # taken by the writer, not yet written or dropped
        self._drops = DropReport()

    def start(self) -> EventLog:
        self._thread = threading.Thread(target=self._run, name=f"log-{self.prefix}", daemon=True)
        self._thread.start()
        return self

    def log(self, row: dict[str, Any]) -> None:
        n = len(self._rows)
        if n >= self._max_rows:
            metrics.LOG_DROPPED.labels(reason="queue_full").inc()
            dropped = self._drops.add()
            if dropped:
                log.warning("%s: %d rows dropped since the last report, %d buffered: the "
                            "object store is not taking writes fast enough", self.prefix,
                            dropped, n)
            return
        self._rows.append(row)  # deque.append is atomic: no lock needed
        if n + 1 == self._batch_rows:
            self._wake.set()

    def close(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            return
        self._closing = True
        self._wake.set()
        thread, self._thread = self._thread, None
        thread.join(timeout)
        if thread.is_alive():  # stuck on the store: what it holds dies with the process
            lost = self._held.abandon(self._take)
            if lost:
                metrics.LOG_DROPPED.labels(reason="shutdown").inc(lost)
            log.error("%s: the object store did not take the last writes within %gs of "
                      "closing; %d rows not written, dropped", self.prefix, timeout, lost)

    def _take(self) -> list[dict[str, Any]]:
        rows = []
        popleft = self._rows.popleft
        for _ in range(len(self._rows)):
            rows.append(popleft())
        return rows

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            rows = self._held.take(self._take)
            for i in range(0, len(rows), self._batch_rows):
                self._write(rows[i:i + self._batch_rows])
            if self._closing:
                self._write(self._held.take(self._take))
                return

    @property
    def held(self) -> int:
        """Rows the writer has taken and not yet written or dropped."""
        return self._held.count

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        parts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            t = datetime.fromtimestamp(row["ts"], tz=timezone.utc)
            parts[f"{self.prefix}/date={t:%Y-%m-%d}/hour={t:%H}"].append(row)
        for part, part_rows in parts.items():
            key = f"{part}/part-{uuid.uuid4().hex}.parquet"
            try:
                table = pa.Table.from_pylist(part_rows, schema=self.schema)
                buf = io.BytesIO()
                pq.write_table(table, buf)
                self.store.put_bytes(key, buf.getvalue())
            except Exception:  # noqa: BLE001 - logging must never take the router down
                log.exception("writing %s failed; %d rows dropped", key, len(part_rows))
                if self._held.dropped(len(part_rows)):  # else close() has counted them
                    metrics.LOG_DROPPED.labels(reason="write_failed").inc(len(part_rows))
                continue
            self._held.written(len(part_rows))
            self.rows_written += len(part_rows)
            self.files.append(key)
