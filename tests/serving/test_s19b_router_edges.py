"""Router edge cases (session 19, helper B), through the real ``marquee router`` process on
127.0.0.1 in front of real sockets standing in for model servers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import REPO, free_port, silent_server, wait_until


@contextmanager
def router_process(tmp_path: Path, upstreams: dict[str, str],
                   **env: str) -> Iterator[str]:
    """``marquee router`` with these model servers and baseline version 1, stopped by pid."""
    port = free_port()
    cmd = [sys.executable, "-m", "marquee.cli", "router", "--baseline", "1", "--port", str(port),
           "--host", "127.0.0.1", "--no-logs", "--routing-file", "none"]
    for version, url in upstreams.items():
        cmd += ["--upstream", f"{version}={url}"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_ROUTER_")}
    environ.update(MARQUEE_HOME=str(tmp_path), OMP_NUM_THREADS="1", **env)
    proc = subprocess.Popen(cmd, env=environ, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            return httpx.get(f"{url}/readyz").status_code == 200
        wait_until(ready, timeout=60, what="router ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _interleave(url: str) -> None:
    got = httpx.put(f"{url}/admin/routing", json={
        "strategy": "interleave", "baseline": {"version": "1"}, "candidate": {"version": "2"}})
    assert got.status_code == 200, got.text


def test_interleaving_whose_two_model_servers_time_out_is_a_504(tmp_path: Path) -> None:
    """Both model servers of an interleaving hang: the client got a 502 'both model servers
    failed', where one hanging server gives the documented 504. Now a 504 naming the
    variant, and the requests metric counts it as a 504."""
    with silent_server() as base, silent_server() as cand, router_process(
            tmp_path, {"1": base, "2": cand},
            MARQUEE_ROUTER_UPSTREAM_TIMEOUT_SECONDS="0.3") as url:
        _interleave(url)
        got = httpx.post(f"{url}/recommend", json={"user_id": 7, "k": 5}, timeout=30)
        assert got.status_code == 504, got.text
        body = got.json()
        assert body["code"] == "upstream_timeout" and body["variant"] == "interleaved"
        assert "timed out" in body["error"]
        metrics = httpx.get(f"{url}/metrics").text
        assert ('marquee_router_requests_total{code="504",model_version="1+2",'
                'variant="interleaved"} 1.0') in metrics


def test_interleaving_with_one_server_hanging_and_one_refusing_is_a_502(
        tmp_path: Path) -> None:
    """The documented rule for a mix: a server that fails otherwise than by a timeout (here a
    refused connection) is broken, not slow, so the answer stays a 502."""
    closed = f"http://127.0.0.1:{free_port()}"
    with silent_server() as base, router_process(
            tmp_path, {"1": base, "2": closed},
            MARQUEE_ROUTER_UPSTREAM_TIMEOUT_SECONDS="0.3") as url:
        _interleave(url)
        got = httpx.post(f"{url}/recommend", json={"user_id": 7, "k": 5}, timeout=30)
        assert got.status_code == 502, got.text
        assert got.json()["variant"] == "interleaved"


class _ModelServer:
    """A KServe V1 predict endpoint on 127.0.0.1 answering ``self.body`` to every call."""

    def __init__(self, body: bytes) -> None:
        import http.server
        import threading

        outer = self
        self.body = body

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _ModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def _prediction(items: object, scores: object) -> bytes:
    import json

    return json.dumps({"predictions": [{"items": items, "scores": scores,
                                        "model_version": "2"}]}).encode()


GOOD = _prediction([11, 12, 13], [0.9, 0.8, 0.7])
BAD_ANSWERS = {
    "id past uint64": _prediction([10**20, 12], [0.9, 0.8]),
    "id past int64": _prediction([2**63, 12], [0.9, 0.8]),
    "id 0": _prediction([0, 12], [0.9, 0.8]),
    "negative id": _prediction([-4, 12], [0.9, 0.8]),
    "float id": _prediction([5.9, 12], [0.9, 0.8]),
    "string id": _prediction(["7", 12], [0.9, 0.8]),
    "boolean id": _prediction([True, 12], [0.9, 0.8]),
    "repeated id": _prediction([12, 12], [0.9, 0.8]),
    "string nan score": _prediction([11, 12], ["nan", 0.8]),
    "boolean score": _prediction([11, 12], [True, 0.8]),
}


def test_a_model_server_answering_ids_outside_the_item_rule_is_that_variants_502(
        tmp_path: Path) -> None:
    """The router read a prediction's items with int() and its scores with float(): an id
    past 2^64-1 made its own answer a bare 500 (its encoder raised) counted against no
    variant; 0, -4 and 2^63 were served although no feedback can name them (item_id is
    1..2^63-1); 5.9, "7" and true were served as 5, 7 and 1; a repeated item was shown twice;
    a score "nan" came back as null. Each is now the model server's invalid answer: a 502
    naming the variant, counted in its errors, and an interleaving serves the other side's
    list."""
    with _ModelServer(GOOD) as base, _ModelServer(GOOD) as cand, router_process(
            tmp_path, {"1": base.url, "2": cand.url}) as url:
        got = httpx.put(f"{url}/admin/routing", json={
            "strategy": "canary", "baseline": {"version": "1"}, "candidate": {"version": "2"},
            "candidate_weight": 100})
        assert got.status_code == 200, got.text
        for what, body in BAD_ANSWERS.items():
            cand.body = body
            got = httpx.post(f"{url}/recommend", json={"user_id": 7, "k": 5}, timeout=30)
            assert got.status_code == 502, (what, got.status_code, got.text)
            assert got.json()["variant"] == "candidate", (what, got.text)
        errors = httpx.get(f"{url}/metrics").text
        assert ('marquee_router_errors_total{model_version="2",reason="bad_response",'
                f'variant="candidate"}} {float(len(BAD_ANSWERS))}') in errors

        _interleave(url)
        for what, body in BAD_ANSWERS.items():
            cand.body = body
            got = httpx.post(f"{url}/recommend", json={"user_id": 7, "k": 5}, timeout=30)
            assert got.status_code == 200, (what, got.text)
            assert got.json()["items"] == [11, 12, 13] and got.json()["variant"] == "baseline"
