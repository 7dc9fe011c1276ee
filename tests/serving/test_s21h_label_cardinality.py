"""Prometheus label values that come from outside stay a small, fixed set (helper H, session 21).

Before: the router counted a failed mirror under the candidate's raw HTTP status
(``marquee_router_shadow_requests_total{code="418"}``, ``{code="599"}``, …), so a candidate
model server could add one series per status it chose to send; ``marquee serve --variant``
(and ``MARQUEE_SERVING_VARIANT``) took any text, newlines and 10 KB included, as the
``variant`` label of every ``marquee_serving_*`` series.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, stop_process

MARQUEE = str(Path(sys.executable).parent / "marquee")
N = 500


class _Servers:
    """Baseline (KServe V1 lists) and candidate (an error status chosen by the user id) on
    127.0.0.1."""

    def __init__(self) -> None:
        self.servers = [self._serve(candidate=False), self._serve(candidate=True)]
        self.urls = [f"http://127.0.0.1:{s.server_address[1]}" for s in self.servers]

    @staticmethod
    def _serve(candidate: bool) -> ThreadingHTTPServer:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                inst = json.loads(self.rfile.read(int(self.headers["content-length"])))[
                    "instances"][0]
                u = inst["user_id"]
                if candidate:
                    status = 400 + u % 200  # 400..599: 200 distinct statuses
                    out = json.dumps({"error": f"status {status}"}).encode()
                else:
                    status = 200
                    items = [(u * 7 + i) % 500 + 1 for i in range(inst["k"])]
                    out = json.dumps({"predictions": [{
                        "items": items, "scores": [1.0 / (i + 1) for i in range(len(items))],
                        "model_version": f"echoed-{u}"}]}).encode()
                self.send_response(status)
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
        for s in self.servers:
            s.shutdown()
            s.server_close()


@pytest.fixture()
def router(tmp_path: Path) -> Iterator[str]:
    servers = _Servers()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(MARQUEE_HOME=str(tmp_path / "home"))
    log = open(tmp_path / "router.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "marquee.cli", "router", "--host", "127.0.0.1", "--port",
         str(port), "--upstream", f"1={servers.urls[0]}", "--upstream", f"2={servers.urls[1]}",
         "--baseline", "1", "--routing-file", "none", "--no-logs", "--log-level", "error"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "router.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "router not ready"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        stop_process(proc)
        log.close()
        servers.stop()


def _series(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            out[labels] = float(value)
    return out


def test_a_candidate_s_error_statuses_do_not_add_shadow_series(router: str) -> None:
    r = httpx.put(f"{router}/admin/routing", json={
        "strategy": "shadow", "baseline": {"version": "1"}, "candidate": {"version": "2"},
        "shadow_sample_rate": 1.0})
    assert r.status_code == 200, r.text
    with httpx.Client(timeout=10) as c:
        for u in range(1, N + 1):
            r = c.post(f"{router}/recommend", json={"user_id": u, "k": 5})
            assert r.status_code == 200, r.text  # the mirror's failure is not the user's
    name = "marquee_router_shadow_requests_total"
    deadline = time.monotonic() + 30
    while True:  # mirrors finish after the answers
        series = _series(httpx.get(f"{router}/metrics").text, name)
        if sum(series.values()) >= N or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sum(series.values()) == N
    # 200 distinct statuses came back: two series, by class, not one per status
    client_errors = sum(1 for u in range(1, N + 1) if u % 200 < 100)
    assert series == {f'{name}{{code="4xx"}}': client_errors,
                      f'{name}{{code="5xx"}}': N - client_errors}, list(series)[:10]
    # the model_version the baseline echoed (one per request) named no series either
    text = httpx.get(f"{router}/metrics").text
    assert "echoed-" not in text
    assert len(_series(text, "marquee_router_requests_total")) == 1


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    base.update(MARQUEE_HOME=str(tmp_path / "home"), BENTOML_DO_NOT_TRACK="true", **(env or {}))
    proc = subprocess.run([MARQUEE, "serve", *args], env=base, capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    return proc.returncode, proc.stderr


BAD_VARIANTS = ["blue\ngreen", "x" * 10_240, "blue green", 'a",code="200', "../x", "-x",
                "é", "x" * 64]


@pytest.mark.parametrize("runtime", ["kserve", "bentoml"])
@pytest.mark.parametrize("variant", BAD_VARIANTS, ids=lambda v: repr(v[:12]))
def test_serve_refuses_a_variant_that_is_no_label(tmp_path: Path, runtime: str,
                                                  variant: str) -> None:
    # the bundle does not exist: the variant is refused before anything is fetched
    code, err = _serve(tmp_path, "--runtime", runtime, "--bundle-uri",
                       str(tmp_path / "nowhere"), "--port", str(free_port()), "--variant", variant)
    assert code == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert lines[-1].startswith("Error: Invalid value for --variant: expected a short name"), err
    assert len(lines[-1]) < 300 and "bundle" not in err


def test_serve_refuses_such_a_variant_from_the_environment(tmp_path: Path) -> None:
    code, err = _serve(tmp_path, "--bundle-uri", str(tmp_path / "nowhere"), "--port",
                       str(free_port()), env={"MARQUEE_SERVING_VARIANT": "blue\ngreen"})
    assert code == 2, err[-2000:]
    assert re.match(r"error: invalid settings: variant: ", err.strip().splitlines()[-1]), err


@pytest.mark.parametrize("variant", ["", "blue", "canary-2", "v1.2_b", "x" * 63])
def test_a_short_name_is_still_a_variant(variant: str) -> None:
    from serving.settings import ServingSettings

    assert ServingSettings(variant=variant).variant == variant
