"""Real model-server processes on 127.0.0.1 (``marquee serve``): protocols, both runtimes,
and payload logs across a graceful restart under load."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from conftest import free_port, stop_process
from serving_support import V1_PATH, V2_PATH, bundle_dir, start_server  # noqa: F401

pytestmark = pytest.mark.integration

TS = 1_700_000_000


@pytest.fixture(scope="module")
def kserve_url(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    home = tmp_path_factory.mktemp("kserve-home")
    port = free_port()
    proc = start_server("kserve", bundle_dir, home, port, home / "server.log")
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


def test_binds_only_the_configured_host(kserve_url: str) -> None:
    import psutil

    port = int(kserve_url.rsplit(":", 1)[1])
    listening = [c.laddr for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert listening and all(a.ip == "127.0.0.1" for a in listening)


def test_v1_and_v2_round_trips_agree(kserve_url: str) -> None:
    v1 = httpx.post(kserve_url + V1_PATH, json={"instances": [
        {"user_id": 1, "k": 5, "context": {"ts": TS}},
        {"user_id": 10**9, "k": 5, "context": {"ts": TS}}]}).json()["predictions"]
    assert [len(p["items"]) for p in v1] == [5, 5]
    assert not v1[0]["cold_start"] and v1[1]["cold_start"]
    assert v1[0]["model_version"] == "1" and v1[0]["request_id"]
    r = httpx.post(kserve_url + V2_PATH, json={"id": "req-7", "inputs": [
        {"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "k", "shape": [1], "datatype": "INT64", "data": [5]}]})
    assert r.status_code == 200
    body = r.json()
    out = {o["name"]: o for o in body["outputs"]}
    assert body["id"] == "req-7" and body["model_version"] == "1"
    assert out["items"]["shape"] == [1, 5] and out["request_id"]["data"] == ["req-7"]
    # V2 carries no context: the same user's items come back, scored at request time
    assert len(set(out["items"]["data"])) == 5


def test_metrics_and_model_info(kserve_url: str) -> None:
    httpx.post(kserve_url + V1_PATH, json={"instances": [{"user_id": 2}]})
    httpx.post(kserve_url + V1_PATH, json={"instances": [{"user_id": 0}]})
    text = httpx.get(kserve_url + "/metrics").text
    for needle in ('marquee_serving_requests_total{code="200",model_version="1",route="v1_predict"',
                   'marquee_serving_errors_total{code="400",model_version="1",route="v1_predict"',
                   'marquee_serving_stage_latency_seconds_bucket{le="0.005",model_version="1",'
                   'stage="retrieve"}',
                   'stage="rank"', 'stage="rerank"', 'stage="total"',
                   'marquee_serving_index_recall_ratio{model_version="1"} 1.0',
                   "marquee_serving_score_bucket", "marquee_serving_cold_starts_total",
                   "marquee_serving_payload_log_dropped_total"):
        assert needle in text, needle
    info = httpx.get(kserve_url + "/marquee/model").json()
    assert info["model_version"] == "1" and info["index"]["kind"] == "flat"


def test_both_runtimes_return_identical_recommendations(
        bundle_dir: Path, kserve_url: str, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()
    proc = start_server("bentoml", bundle_dir, tmp_path / "home", port, tmp_path / "bento.log")
    try:
        body = {"instances": [
            {"user_id": 1, "k": 10, "context": {"ts": TS}},
            {"user_id": 42, "k": 25, "context": {"ts": TS, "device": "tv"}},
            {"user_id": 7, "k": 10, "history": [3, 5, 8, 13], "context": {"ts": TS}},
            {"user_id": 10**9, "k": 10, "context": {"ts": TS}},
        ]}
        a = httpx.post(kserve_url + V1_PATH, json=body, timeout=30).json()["predictions"]
        b = httpx.post(f"http://127.0.0.1:{port}{V1_PATH}", json=body,
                       timeout=30).json()["predictions"]
        strip = ("request_id",)
        assert [{k: v for k, v in p.items() if k not in strip} for p in a] == \
               [{k: v for k, v in p.items() if k not in strip} for p in b]
        bad = httpx.post(f"http://127.0.0.1:{port}{V1_PATH}",
                         json={"instances": [{"user_id": 1, "k": 900}]})
        assert bad.status_code == 400 and "k" in bad.text
    finally:
        stop_process(proc)


@pytest.mark.slow
def test_every_2xx_has_one_payload_row_after_graceful_restart_under_load(
        bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    port = free_port()
    url = f"http://127.0.0.1:{port}{V1_PATH}"
    # flush only on shutdown (or at 2,000 rows): the restart must not lose queued rows
    opts = {"payload_log_flush_seconds": 600, "grace_period_seconds": 20}
    ok: list[str] = []
    other: list[tuple[str, object]] = []
    lock = threading.Lock()
    stop = threading.Event()
    sent = {"n": 0}

    def load(worker: int) -> None:
        with httpx.Client(timeout=10) as client:
            i = 0
            while not stop.is_set():
                rid = f"w{worker}-{i}"
                i += 1
                try:
                    r = client.post(url, json={"instances": [
                        {"user_id": 1 + (i * 7 + worker) % 400, "k": 10, "request_id": rid}]})
                    status: object = r.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    sent["n"] += 1
                    if status == 200:
                        ok.append(r.json()["predictions"][0]["request_id"])
                    else:
                        other.append((rid, status))

    def wait_for(n: int) -> None:
        from conftest import wait_until

        target = len(ok) + n
        wait_until(lambda: len(ok) >= target, timeout=120, what=f"{n} more answers")

    proc = start_server("kserve", bundle_dir, home, port, tmp_path / "a.log", **opts)
    threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(150)
        proc.send_signal(signal.SIGTERM)  # graceful: in-flight requests finish, logs flushed
        proc.wait(timeout=60)
        proc = start_server("kserve", bundle_dir, home, port, tmp_path / "b.log", **opts)
        wait_for(150)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    files = sorted((home / "store" / "payload-logs").rglob("*.parquet"))
    rows = [r for f in files for r in pq.read_table(f, columns=["request_id", "status"]
                                                     ).to_pylist()]
    logged = [r["request_id"] for r in rows]
    assert len(ok) >= 300 and len(set(ok)) == len(ok)
    assert sorted(logged) == sorted(ok), (len(logged), len(ok), other[:5])
    assert all(r["status"] == 200 for r in rows)
    assert len({f.parent for f in files}) >= 1 and len(files) >= 2  # one flush per process
