"""The payload queue is bounded in bytes as well as rows: a row carries its request's and
response's JSON, so a stalled object store behind large requests must not hold gigabytes."""

from __future__ import annotations

import logging

import pytest
from conftest import silent_server, wait_until

from marquee.store import open_store
from serving import metrics
from serving.payload.logger import PayloadLogger, row_bytes
from serving.payload.schema import payload_row


def _row(i: int, history: int) -> dict:
    request = '{"user_id": %d, "history": [%s]}' % (i + 1, ", ".join(["1234567"] * history))
    return payload_row(request_id=f"r{i}", ts=1_700_000_000.0, model_version="3",
                       variant="baseline", user_id=i + 1, k=2, cold_start=False,
                       fallback=False, status=200, latency_ms=1.0, items=[10, 11],
                       scores=[0.9, 0.8], request_json=request, response_json="{}",
                       features={})


def test_rows_past_the_byte_bound_are_dropped_while_the_store_hangs(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    big = _row(0, history=2_500)  # ~22 KB of request JSON
    size = row_bytes(big)
    assert size > 20_000
    with silent_server() as url:
        store = open_store("s3://payload-bytes/logs", url)
        logger = PayloadLogger(store, queue_size=10_000, queue_bytes=4 * size,
                               flush_seconds=0.05).start()
        full = metrics.PAYLOG_DROPPED.labels("queue_full")._value.get()
        logger.log(big)
        wait_until(lambda: logger.pending == 0, 60, what="first row taken by the stuck writer")
        assert logger.queued_bytes == 0  # a taken row no longer counts against the queue
        with caplog.at_level(logging.WARNING, logger="serving.payload.logger"):
            accepted = [logger.log(_row(i, history=2_500)) for i in range(1, 11)]
        # the row bound (10,000) is far away: the byte bound alone holds the queue at 4 rows
        assert accepted == [True] * 4 + [False] * 6
        assert logger.pending == 4
        assert logger.queued_bytes == 4 * size
        assert metrics.PAYLOG_DROPPED.labels("queue_full")._value.get() - full == 6
        logger.close(timeout=0.2)
    assert logger.rows_dropped == 6 + 5  # 6 refused, then the 5 held at close


def test_the_model_servers_setting_bounds_the_queue_in_mib(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """``MARQUEE_SERVING_PAYLOAD_LOG_QUEUE_MIB`` (the chart's ``payloadLogQueueMib``) reaches
    the model server's payload logger."""
    from marquee.settings import Settings
    from serving.runtime.loader import start_payload_logger
    from serving.settings import ServingSettings

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MARQUEE_SERVING_PAYLOAD_LOG_QUEUE_MIB", "1")
    monkeypatch.setenv("MARQUEE_SERVING_PAYLOAD_LOG_FLUSH_SECONDS", "0.05")
    big = _row(0, history=35_000)  # ~315 KB of request JSON: 3 fit in 1 MiB, not 4
    assert 2**20 / 4 < row_bytes(big) < 2**20 / 3
    with silent_server() as url:
        monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
        monkeypatch.setenv("MARQUEE_STORE_URI", "s3://payload-mib/x")
        monkeypatch.setenv("MARQUEE_S3_ENDPOINT_URL", url)
        logger = start_payload_logger(Settings(), ServingSettings())
        logger.log(big)
        wait_until(lambda: logger.pending == 0, 60, what="first row taken by the stuck writer")
        accepted = [logger.log(_row(i, history=35_000)) for i in range(1, 6)]
        logger.close(timeout=0.2)
    assert accepted == [True] * 3 + [False] * 2
