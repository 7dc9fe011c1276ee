"""The payload-log sink as its own process, as the chart runs it:
``marquee serve --runtime payload-sink`` (before, that command was refused, so the chart's sink
Deployment could not start and no InferenceService's payload logs reached the store)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from serving.payload.sink import REQUEST_TYPE, RESPONSE_TYPE, SINK_PATH
from tests.conftest import free_port, stop_process, wait_until


def _event(kind: str, ce_id: str, body: dict) -> tuple[dict, bytes]:
    import orjson

    return ({"content-type": "application/json", "ce-id": ce_id, "ce-type": kind,
             "ce-specversion": "1.0", "ce-source": "test", "ce-endpoint": "default",
             "ce-inferenceservicename": "movie-recommender-v1"}, orjson.dumps(body))


def test_the_sink_command_serves_probes_and_writes_rows_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(MARQUEE_HOME=str(tmp_path / "home"), MARQUEE_SERVING_PAYLOAD_LOG_FLUSH_SECONDS="60")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "marquee"), "serve", "--runtime",
                             "payload-sink", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{base}/readyz", timeout=1).status_code == 200,
                   timeout=60, what="the sink")
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        for i in range(3):
            ce = f"ev-{i}"
            req = {"instances": [{"user_id": 10 + i, "k": 2}]}
            resp = {"predictions": [{"user_id": 10 + i, "items": [5, 7], "scores": [0.9, 0.1],
                                     "model_version": "20261124T000000Z-abc",
                                     "request_id": f"r{i}", "cold_start": False,
                                     "fallback": False}]}
            for kind, body in ((REQUEST_TYPE, req), (RESPONSE_TYPE, resp)):
                headers, content = _event(kind, ce, body)
                r = httpx.post(f"{base}{SINK_PATH}", headers=headers, content=content)
                assert r.status_code == 202, r.text
        # a malformed pair is refused, naming the field, and takes no good row with it
        headers, content = _event(REQUEST_TYPE, "ev-bad", {"instances": [{"user_id": 1}]})
        assert httpx.post(f"{base}{SINK_PATH}", headers=headers,
                          content=content).status_code == 202
        headers, content = _event(RESPONSE_TYPE, "ev-bad",
                                  {"predictions": [{"items": ["a"], "scores": [1.0]}]})
        r = httpx.post(f"{base}{SINK_PATH}", headers=headers, content=content)
        assert r.status_code == 400 and "items" in r.json()["field"]
        assert "marquee_serving_requests_total" in httpx.get(f"{base}/metrics").text
        os.killpg(proc.pid, signal.SIGTERM)  # the flush interval is 60 s: only SIGTERM writes
        # graceful shutdown, then the entry point's 128 + SIGTERM
        assert proc.wait(timeout=30) == 143, proc.stdout.read() if proc.stdout else ""
        output = proc.stdout.read() if proc.stdout else ""
        # no MARQUEE_SERVING_PAYLOAD_SINK_TOKEN: open as before, and the log says so at start
        assert "unauthenticated" in output and "MARQUEE_SERVING_PAYLOAD_SINK_TOKEN" in output
    finally:
        stop_process(proc)
    files = list((tmp_path / "home" / "store" / "payload-logs").rglob("*.parquet"))
    rows = pq.read_table(files[0]).to_pylist() if len(files) == 1 else []
    assert sorted(r["request_id"] for r in rows) == ["r0", "r1", "r2"], files
    assert all(r["items"] == [5, 7] for r in rows)


def test_the_sink_command_with_a_token_refuses_requests_without_it(tmp_path: Path) -> None:
    token = "tok-" + "x" * 28
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(MARQUEE_HOME=str(tmp_path / "home"), MARQUEE_SERVING_PAYLOAD_LOG_FLUSH_SECONDS="60",
               MARQUEE_SERVING_PAYLOAD_SINK_TOKEN=token)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "marquee"), "serve", "--runtime",
                             "payload-sink", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    req = {"instances": [{"user_id": 11, "k": 2}]}
    resp = {"predictions": [{"user_id": 11, "items": [5, 7], "scores": [0.9, 0.1],
                             "model_version": "20261124T000000Z-abc", "request_id": "ok1",
                             "cold_start": False, "fallback": False}]}
    try:
        wait_until(lambda: httpx.get(f"{base}/readyz", timeout=1).status_code == 200,
                   timeout=60, what="the sink")
        for kind, body in ((REQUEST_TYPE, req), (RESPONSE_TYPE, resp)):  # forged: no token
            headers, content = _event(kind, "forged", body)
            r = httpx.post(f"{base}{SINK_PATH}", headers=headers, content=content)
            assert r.status_code == 401 and r.json()["field"] == "authorization", r.text
        for kind, body in ((REQUEST_TYPE, req), (RESPONSE_TYPE, resp)):  # KServe's logger URL
            headers, content = _event(kind, "real", body)
            r = httpx.post(f"{base}{SINK_PATH}?token={token}", headers=headers, content=content)
            assert r.status_code == 202, r.text
        text = httpx.get(f"{base}/metrics").text
        assert 'marquee_serving_payload_sink_unauthorized_total{reason="missing"} 2.0' in text
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 143, proc.stdout.read() if proc.stdout else ""
        output = proc.stdout.read() if proc.stdout else ""
        assert "unauthenticated" not in output and token not in output, output
    finally:
        stop_process(proc)
    files = list((tmp_path / "home" / "store" / "payload-logs").rglob("*.parquet"))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    assert [r["request_id"] for r in rows] == ["ok1"]
