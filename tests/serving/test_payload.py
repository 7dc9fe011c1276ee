"""Payload logging: partitioned Parquet rows, a queue that never blocks, the CloudEvents sink."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from serving_support import bundle_dir, kserve_app  # noqa: F401 - fixture
from starlette.testclient import TestClient

from marquee.store import open_store
from recsys.features import FEATURE_SPEC
from serving import metrics
from serving.payload.logger import PayloadLogger
from serving.payload.schema import payload_row, payload_schema
from serving.payload.sink import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    SINK_PATH,
    CloudEventPairer,
    build_sink_app,
    sink_pairer,
)
from serving.settings import ServingSettings

CONTRACT_COLUMNS = ["request_id", "ts", "model_version", "variant", "user_id", "k", "cold_start",
                    "fallback", "status", "latency_ms", "items", "scores", "request_json",
                    "response_json"]


def _row(i: int, version: str = "3", ts: float = 1_700_000_000.0) -> dict:
    return payload_row(request_id=f"r{i}", ts=ts, model_version=version, variant="canary",
                       user_id=i + 1, k=2, cold_start=False, fallback=False, status=200,
                       latency_ms=1.5, items=[10, 11], scores=[0.9, 0.8],
                       request_json='{"user_id": 1}', response_json="{}",
                       features={"age_bucket": "25-34", "history_length": 4, "hour_of_day": 22})


def _read(root: Path) -> list[dict]:
    files = sorted(root.rglob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def test_schema_has_contract_columns_and_one_per_feature() -> None:
    names = payload_schema().names
    assert names[: len(CONTRACT_COLUMNS)] == CONTRACT_COLUMNS
    assert names[len(CONTRACT_COLUMNS):] == [f"f_{n}" for n in FEATURE_SPEC]


def test_rows_are_written_partitioned_by_date_hour_version(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    logger = PayloadLogger(store, batch_rows=3, flush_seconds=60).start()
    for i in range(4):
        assert logger.log(_row(i, "3"))
    assert logger.log(_row(9, "4", ts=1_700_003_600.0))
    logger.close()
    keys = sorted(store.list("payload-logs/"))
    assert any(k.startswith("payload-logs/date=2023-11-14/hour=22/model_version=3/part-")
               for k in keys)
    assert any(k.startswith("payload-logs/date=2023-11-14/hour=23/model_version=4/") for k in keys)
    rows = _read(tmp_path / "store" / "payload-logs")
    assert sorted(r["request_id"] for r in rows) == ["r0", "r1", "r2", "r3", "r9"]
    r0 = next(r for r in rows if r["request_id"] == "r0")
    assert r0["items"] == [10, 11] and r0["f_age_bucket"] == "25-34"
    assert r0["f_history_length"] == 4.0 and r0["f_top_genre"] is None


def test_full_queue_drops_without_blocking_and_counts(tmp_path: Path) -> None:
    class SlowStore:
        def __init__(self) -> None:
            self.release = threading.Event()

        def put_bytes(self, key: str, data: bytes) -> str:
            self.release.wait(10)
            return ""

    store = SlowStore()
    logger = PayloadLogger(store, queue_size=5, batch_rows=1, flush_seconds=0.01).start()
    before = metrics.PAYLOG_DROPPED.labels("queue_full")._value.get()
    started = time.perf_counter()
    accepted = [logger.log(_row(i)) for i in range(50)]
    assert time.perf_counter() - started < 0.5  # never blocks the request path
    assert not all(accepted) and sum(accepted) <= 7
    assert metrics.PAYLOG_DROPPED.labels("queue_full")._value.get() - before == 50 - sum(accepted)
    store.release.set()
    logger.close()
    assert logger.rows_written == sum(accepted)


def test_failing_store_is_retried_then_counted(tmp_path: Path) -> None:
    class Flaky:
        calls = 0

        def put_bytes(self, key: str, data: bytes) -> str:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise OSError("store unavailable")
            return ""

    logger = PayloadLogger(Flaky(), batch_rows=10, flush_seconds=60, retries=2)
    logger.log(_row(1))
    logger.close()
    assert logger.rows_written == 1 and Flaky.calls == 2

    class Down:
        def put_bytes(self, key: str, data: bytes) -> str:
            raise OSError("down")

    before = metrics.PAYLOG_DROPPED.labels("write_failed")._value.get()
    logger = PayloadLogger(Down(), retries=1)
    logger.log(_row(1))
    logger.close()
    assert metrics.PAYLOG_DROPPED.labels("write_failed")._value.get() - before == 1


@pytest.mark.parametrize("response_first", [False, True])
def test_sink_pairs_kserve_cloudevents_by_id(tmp_path: Path, response_first: bool) -> None:
    store = open_store(str(tmp_path / "store"))
    logger = PayloadLogger(store)
    client = TestClient(build_sink_app(CloudEventPairer(logger)))
    common = {"Ce-Id": "abc-1", "Ce-Specversion": "1.0", "Ce-Source": "http://isvc",
              "ce-inferenceservicename": "movie-recommender-v3", "ce-endpoint": "canary",
              "Ce-Time": "2023-11-14T22:13:20Z", "content-type": "application/json"}
    request = {"instances": [{"user_id": 7, "k": 2}, {"user_id": 8, "k": 2}]}
    response = {"predictions": [
        {"user_id": 7, "items": [1, 2], "scores": [0.5, 0.4], "model_version": "3",
         "request_id": "q7", "cold_start": False, "fallback": False},
        {"user_id": 8, "items": [3, 4], "scores": [0.3, 0.2], "model_version": "3",
         "request_id": "q8", "cold_start": True, "fallback": False}]}
    events = [({**common, "Ce-Type": REQUEST_TYPE}, request),
              ({**common, "Ce-Type": RESPONSE_TYPE}, response)]
    if response_first:
        events.reverse()
    first = client.post(SINK_PATH, json=events[0][1], headers=events[0][0])
    assert first.status_code == 202 and first.json()["rows"] == 0
    second = client.post(SINK_PATH, json=events[1][1], headers=events[1][0])
    assert second.status_code == 202 and second.json()["rows"] == 2
    logger.close()
    rows = _read(tmp_path / "store" / "payload-logs")
    assert sorted(r["request_id"] for r in rows) == ["q7", "q8"]
    q8 = next(r for r in rows if r["request_id"] == "q8")
    assert q8["variant"] == "canary" and q8["cold_start"] and q8["items"] == [3, 4]
    assert q8["model_version"] == "3" and q8["user_id"] == 8


def test_sink_rejects_events_without_id_or_type(tmp_path: Path) -> None:
    client = TestClient(build_sink_app(CloudEventPairer(PayloadLogger(open_store(str(tmp_path))))))
    r = client.post(SINK_PATH, json={}, headers={"Ce-Type": REQUEST_TYPE})
    assert r.status_code == 400 and r.json()["field"] == "ce-id"
    r = client.post(SINK_PATH, json={}, headers={"Ce-Id": "x", "Ce-Type": "other"})
    assert r.status_code == 400 and r.json()["field"] == "ce-type"


_PAIR_REQUEST = {"instances": [{"user_id": 7, "k": 2}]}
_PAIR_RESPONSE = {"predictions": [{"user_id": 7, "items": [1, 2], "scores": [0.5, 0.4],
                                   "model_version": "3", "request_id": "q7", "cold_start": False,
                                   "fallback": False}]}


def test_the_model_server_mounts_no_sink_by_default(
        bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """Nothing posts there by default (KServe's logger is off): no route to inject rows through,
    with or without a token."""
    request, response = _PAIR_REQUEST, _PAIR_RESPONSE
    for extra in ({}, {"payload_sink_token": "tok-123"}):
        home = tmp_path / f"home{len(extra)}"
        app, _, payload = kserve_app(bundle_dir, home, **extra)
        try:
            with TestClient(app) as client:
                for headers in ({}, {"Authorization": "Bearer tok-123"}):
                    for ce_type, body in ((REQUEST_TYPE, request), (RESPONSE_TYPE, response)):
                        r = client.post(SINK_PATH, json=body,
                                        headers={"Ce-Id": "m1", "Ce-Type": ce_type, **headers})
                        assert r.status_code == 404, (extra, r.text)
        finally:
            payload.close()
        assert not list(home.rglob("*.parquet")), extra


def test_sink_pairer_follows_payload_sink_enabled(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARQUEE_SERVING_PAYLOAD_SINK_ENABLED", raising=False)
    logger = PayloadLogger(open_store(str(tmp_path)))
    try:
        assert ServingSettings().payload_sink_enabled is False
        assert sink_pairer(ServingSettings(), logger) is None
        assert sink_pairer(ServingSettings(payload_sink_token="t"), logger) is None
        monkeypatch.setenv("MARQUEE_SERVING_PAYLOAD_SINK_ENABLED", "true")
        enabled = ServingSettings()
        assert enabled.payload_sink_enabled is True
        assert isinstance(sink_pairer(enabled, logger), CloudEventPairer)
        assert sink_pairer(enabled, None) is None  # no payload logger: nowhere to write
    finally:
        logger.close()


def test_an_enabled_open_model_server_sink_writes_and_warns(
        bundle_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    home = tmp_path / "home"
    with caplog.at_level("WARNING", logger="serving.payload.sink"):
        app, _, payload = kserve_app(bundle_dir, home, payload_sink_enabled=True)
    assert any("unauthenticated" in r.getMessage() for r in caplog.records)
    try:
        with TestClient(app) as client:
            for ce_type, body in ((REQUEST_TYPE, _PAIR_REQUEST), (RESPONSE_TYPE, _PAIR_RESPONSE)):
                r = client.post(SINK_PATH, json=body, headers={"Ce-Id": "m1", "Ce-Type": ce_type})
                assert r.status_code == 202, r.text
            assert r.json() == {"rows": 1}
    finally:
        payload.close()
    assert [r["request_id"] for r in _read(home / "store" / "payload-logs")] == ["q7"]


def test_the_model_servers_own_sink_needs_the_token_when_one_is_set(
        bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    app, _, payload = kserve_app(bundle_dir, tmp_path / "home", payload_sink_enabled=True,
                                 payload_sink_token="tok-123")
    common = {"Ce-Id": "m1", "content-type": "application/json", "Ce-Type": REQUEST_TYPE}
    try:
        with TestClient(app) as client:
            r = client.post(SINK_PATH, json={"instances": [{"user_id": 1}]}, headers=common)
            assert r.status_code == 401 and r.json()["field"] == "authorization", r.text
            r = client.post(SINK_PATH, json={"instances": [{"user_id": 1}]},
                            headers={**common, "Authorization": "Bearer tok-123"})
            assert r.status_code == 202 and r.json() == {"rows": 0}, r.text
    finally:
        payload.close()
