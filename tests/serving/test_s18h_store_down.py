"""When the object store is down: the payload logger and the router's exposure log.

moto's S3 server runs as its own process on 127.0.0.1 and is killed mid-run. Requests keep
being answered; rows the loggers cannot write by the time they close are counted
(``reason="shutdown"``) and named in an error line instead of vanishing in silence.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import free_port, stop_process, wait_until

from marquee.store import open_store
from serving import metrics
from serving.payload.logger import PayloadLogger
from serving.payload.schema import payload_row

VENV_BIN = Path(sys.executable).parent


def _row(i: int) -> dict:
    return payload_row(request_id=f"r{i}", ts=1_700_000_000.0, model_version="3",
                       variant="canary", user_id=i + 1, k=2, cold_start=False, fallback=False,
                       status=200, latency_ms=1.5, items=[10, 11], scores=[0.9, 0.8],
                       request_json='{"user_id": 1}', response_json="{}", features={})


def _up(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status == 200


@pytest.fixture()
def moto_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[subprocess.Popen, str]]:
    """moto's S3 server as a process of its own (so that it can be killed), on 127.0.0.1."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(f"{url}/moto-api/"), 60, what="moto server")
        yield proc, url
    finally:
        stop_process(proc)


def test_payload_rows_lost_at_close_with_the_store_down_are_counted_and_logged(
        moto_process: tuple[subprocess.Popen, str], caplog: pytest.LogCaptureFixture) -> None:
    proc, url = moto_process
    store = open_store("s3://s18h-payload/logs", url, create_bucket=True)
    logger = PayloadLogger(store, flush_seconds=0.1).start()
    logger.log(_row(0))
    wait_until(lambda: logger.rows_written == 1, 60, what="first row written")
    stop_process(proc)  # the store goes down

    shutdown = metrics.PAYLOG_DROPPED.labels("shutdown")._value.get()
    for i in range(1, 11):
        assert logger.log(_row(i)) is True  # the request path still takes rows at once
    wait_until(lambda: logger.pending == 0, 60, what="rows taken by the writer")
    with caplog.at_level(logging.ERROR, logger="serving.payload.logger"):
        logger.close(timeout=0.5)  # the writer retries the dead store (0.7 s of back-off)

    # every row is accounted for when close() returns: written, or dropped and counted, as
    # lost at shutdown or (if the writer's retries ran out first) as a failed write
    # (the metrics are process-wide: another test's writer may still be failing, so the
    # per-logger count is the exact one)
    assert logger.rows_written == 1
    assert logger.rows_dropped == 10
    lost = metrics.PAYLOG_DROPPED.labels("shutdown")._value.get() - shutdown
    assert lost <= 10
    if lost:
        assert any(f"{lost:g} rows not written" in r.getMessage()
                   for r in caplog.records), caplog.text


class _ModelServer(BaseHTTPRequestHandler):
    """A V1 model server that always answers the same list."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["content-length"]))
        body = json.dumps({"predictions": [{"items": [1, 2], "scores": [0.5, 0.4],
                                            "model_version": "1"}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _post(url: str, body: dict) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_router_answers_with_the_store_hanging_and_reports_the_exposures_it_loses(
        tmp_path: Path) -> None:
    """The object store accepts connections and never answers: users are still answered, and
    the exposures the router could not write by the time it stops are named in its log."""
    from conftest import silent_server

    model = ThreadingHTTPServer(("127.0.0.1", 0), _ModelServer)
    threading.Thread(target=model.serve_forever, daemon=True).start()
    port = free_port()
    with silent_server() as s3_url:
        env = {"PATH": str(VENV_BIN), "HOME": str(tmp_path), "MARQUEE_HOME": str(tmp_path),
               "MARQUEE_STORE_URI": "s3://s18h-router/x", "MARQUEE_S3_ENDPOINT_URL": s3_url,
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "MARQUEE_ROUTER_LOG_FLUSH_SECONDS": "0.1"}
        router = subprocess.Popen(
            [str(VENV_BIN / "marquee"), "router", "--port", str(port), "--host", "127.0.0.1",
             "--upstream", f"1=http://127.0.0.1:{model.server_address[1]}", "--baseline", "1",
             "--routing-file", "none"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: _up(f"http://127.0.0.1:{port}/healthz"), 60, what="router")
            statuses = [_post(f"http://127.0.0.1:{port}/recommend", {"user_id": u, "k": 2})
                        for u in range(1, 6)]
            assert statuses == [200] * 5
            router.terminate()
            out, _ = router.communicate(timeout=120)
        finally:
            stop_process(router)
            model.shutdown()
    assert "exposure-logs: the object store did not take the last writes" in out, out
    assert "5 rows not written, dropped" in out, out


def test_drops_on_a_hanging_store_are_reported_once_a_minute_and_counted_at_close(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A store that accepts connections and never answers: the writer hangs on its first
    write, the queue fills, and the request path drops rows. The drops are in the metric and
    in one warning (not one per row, not none); close() returns (it blocked for ever on the
    full queue) and counts what is left."""
    from conftest import silent_server

    from serving.router import metrics as router_metrics
    from serving.router.exposure import FEEDBACK_PREFIX, FEEDBACK_SCHEMA, EventLog

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with silent_server() as url:
        store = open_store("s3://s18h-hang/logs", url)
        payload = PayloadLogger(store, queue_size=3, flush_seconds=0.05).start()
        feedback = EventLog(store, FEEDBACK_PREFIX, FEEDBACK_SCHEMA, queue_size=3,
                            flush_seconds=0.05).start()
        shutdown = metrics.PAYLOG_DROPPED.labels("shutdown")._value.get()
        router_full = router_metrics.LOG_DROPPED.labels(reason="queue_full")._value.get()
        router_shutdown = router_metrics.LOG_DROPPED.labels(reason="shutdown")._value.get()
        fb = {"request_id": "r", "ts": 1_700_000_000.0, "user_id": 1, "item_id": 2,
              "event": "click", "variant": "baseline", "model_version": "1"}
        with caplog.at_level(logging.WARNING):
            payload.log(_row(0))
            feedback.log(dict(fb))
            wait_until(lambda: payload.pending == 0 and feedback.held == 1, 60,
                       what="first rows taken by the hanging writers")
            accepted = [payload.log(_row(i)) for i in range(1, 24)]
            for _ in range(23):
                feedback.log(dict(fb))
            assert accepted == [True] * 3 + [False] * 20
            assert router_metrics.LOG_DROPPED.labels(
                reason="queue_full")._value.get() - router_full == 20
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                        and "rows dropped" in r.getMessage()]
            assert len(warnings) == 2, warnings  # one per logger, not one per row
            assert any("payload log: 1 rows dropped (queue_full)" in w for w in warnings)
            assert any(w.startswith("feedback-logs: 1 rows dropped") for w in warnings)

            # close() returns although its queue is full behind a writer that never returns
            closing = threading.Thread(target=payload.close, kwargs={"timeout": 0.2},
                                       daemon=True)
            closing.start()
            closing.join(60)
            assert not closing.is_alive(), "PayloadLogger.close() hangs on a full queue"
            feedback.close(timeout=0.2)
        assert payload.rows_dropped == 20 + 4
        assert metrics.PAYLOG_DROPPED.labels("shutdown")._value.get() - shutdown == 4
        assert router_metrics.LOG_DROPPED.labels(
            reason="shutdown")._value.get() - router_shutdown == 4
