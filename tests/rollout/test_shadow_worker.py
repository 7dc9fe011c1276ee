"""The shadow worker: mirrors leave the router's process and come back as results.

The router runs in process (Starlette's TestClient); the shadow worker is the real child
process the router starts; the two model servers are small HTTP servers on 127.0.0.1 that
answer KServe V1 with fixed lists (the real model servers are in ``test_rollout_e2e.py``,
whose shadow tests use the default inline mirrors).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from starlette.testclient import TestClient

from serving.router.app import create_app
from serving.router.settings import RouterSettings
from serving.router.shadow import WorkerMirror


class ListServers:
    """Baseline and candidate on two ports: lists shifted by 3 (7 of 10 shared)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.hold = threading.Event()
        self.hold.set()
        self._servers = [self._serve("1", 0), self._serve("2", 3)]
        self.urls = {v: f"http://127.0.0.1:{s.server_address[1]}" for v, s in
                     zip(("1", "2"), self._servers)}

    def _serve(self, version: str, offset: int) -> ThreadingHTTPServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                inst = json.loads(body)["instances"][0]
                outer.calls[version] += 1
                if version == "2":
                    outer.hold.wait(10)
                items = [(inst["user_id"] * 7 + offset + i) % 500 + 1 for i in range(inst["k"])]
                out = json.dumps({"predictions": [{
                    "items": items, "scores": [1.0 / (i + 1) for i in range(len(items))],
                    "model_version": version}]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def stop(self) -> None:
        self.hold.set()
        for s in self._servers:
            s.shutdown()
            s.server_close()


@pytest.fixture
def servers() -> Iterator[ListServers]:
    s = ListServers()
    yield s
    s.stop()


def _client(servers: ListServers, **kw: Any) -> TestClient:
    kw.setdefault("shadow_mode", "worker")
    settings = RouterSettings(upstreams=dict(servers.urls), baseline_version="1", **kw)
    return TestClient(create_app(settings))


def _shadow(c: TestClient, candidate_url: str | None = None) -> None:
    cand: dict[str, Any] = {"version": "2"}
    if candidate_url:
        cand["url"] = candidate_url
    r = c.put("/admin/routing", json={"strategy": "shadow", "baseline": {"version": "1"},
                                      "candidate": cand, "shadow_sample_rate": 1.0})
    assert r.status_code == 200, r.text


def _shadow_stats(c: TestClient) -> dict[str, Any]:
    return c.get("/admin/stats", params={"since": 0}).json()["shadow"]


def _until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_mirrors_run_in_a_lower_priority_worker_and_their_comparisons_come_back(
        servers: ListServers) -> None:
    with _client(servers) as c:
        mirror = c.app.state.router.mirror
        assert isinstance(mirror, WorkerMirror) and mirror.proc is None  # started on demand
        _shadow(c)
        for u in range(1, 31):
            r = c.post("/recommend", json={"user_id": u, "k": 10})
            assert r.status_code == 200 and r.json()["model_version"] == "1"
        c.portal.call(c.app.state.router.drain_shadow)
        pid = mirror.proc.pid
        assert pid != os.getpid()
        assert os.getpriority(os.PRIO_PROCESS, pid) - os.getpriority(os.PRIO_PROCESS, 0) == 10
        sh = _shadow_stats(c)
        assert sh["mirrored"] == 30 and sh["errors"] == 0 and sh["dropped"] == 0
        assert sh["topk_overlap_mean"] == pytest.approx(0.7)  # computed in the worker
        assert sh["kendall_tau_mean"] == pytest.approx(1.0)
        assert servers.calls["2"] == 30
        metrics = c.get("/metrics").text
        assert 'marquee_router_shadow_requests_total{code="200"}' in metrics
    # The router's shutdown stops the worker.
    _until(lambda: mirror.proc.poll() is not None, timeout=5)


def test_a_killed_worker_costs_mirrors_not_answers_and_is_started_again(
        servers: ListServers) -> None:
    with _client(servers) as c:
        _shadow(c)
        mirror = c.app.state.router.mirror
        assert c.post("/recommend", json={"user_id": 1}).status_code == 200
        c.portal.call(c.app.state.router.drain_shadow)
        first = mirror.proc.pid
        os.kill(first, signal.SIGKILL)
        mirror.proc.wait()
        # Users keep their answers while there is no worker; those mirrors are dropped
        # (restarts are rate-limited: none within restart_seconds of the last start).
        mirror.restart_seconds = 3600.0
        for u in range(2, 12):
            assert c.post("/recommend", json={"user_id": u}).status_code == 200
        assert _shadow_stats(c)["dropped"] == 10 and mirror.starts == 1
        # Past the restart delay, the next mirror starts a new worker.
        mirror.restart_seconds = 0.0
        assert c.post("/recommend", json={"user_id": 99}).status_code == 200
        c.portal.call(c.app.state.router.drain_shadow)
        assert mirror.starts == 2 and mirror.proc.pid != first
        sh = _shadow_stats(c)
        assert sh["mirrored"] == 2 and sh["dropped"] == 10


def test_mirrors_beyond_the_workers_in_flight_cap_are_dropped_and_counted(
        servers: ListServers) -> None:
    servers.hold.clear()  # the candidate answers nothing until released
    with _client(servers, shadow_max_in_flight=3) as c:
        _shadow(c)
        for u in range(1, 11):
            r = c.post("/recommend", json={"user_id": u, "k": 5})
            assert r.status_code == 200 and r.json()["variant"] == "baseline"
        _until(lambda: _shadow_stats(c)["dropped"] == 7)
        assert _shadow_stats(c)["mirrored"] == 0
        servers.hold.set()
        _until(lambda: _shadow_stats(c)["mirrored"] == 3)
        assert servers.calls["2"] == 3


def test_a_dead_candidate_is_counted_as_mirror_errors_only(servers: ListServers) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with _client(servers) as c:
        _shadow(c, candidate_url=dead)
        for u in range(1, 21):
            assert c.post("/recommend", json={"user_id": u}).status_code == 200
        c.portal.call(c.app.state.router.drain_shadow)
        sh = _shadow_stats(c)
        assert sh["mirrored"] == 20 and sh["errors"] == 20
        assert 'marquee_router_shadow_requests_total{code="connect"}' in c.get("/metrics").text


def test_inline_mode_mirrors_on_the_routers_loop(servers: ListServers) -> None:
    assert RouterSettings().shadow_mode == "inline"  # the default
    with _client(servers, shadow_mode="inline") as c:
        _shadow(c)
        for u in range(1, 11):
            assert c.post("/recommend", json={"user_id": u}).status_code == 200
        c.portal.call(c.app.state.router.drain_shadow)
        assert _shadow_stats(c)["mirrored"] == 10
        assert not isinstance(c.app.state.router.mirror, WorkerMirror)
