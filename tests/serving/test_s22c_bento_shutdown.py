"""A request that reaches a model server during its graceful shutdown is refused at once, on
both runtimes, while the request in flight finishes and writes its payload row (helper C,
session 22). Real ``marquee serve`` processes on 127.0.0.1.

BentoML's arbiter kept the listening socket open while its worker drained: the kernel queued a
new connection and its client hung until the server exited (then a reset), for up to the grace
period. KServe closes its socket (the connection is refused). The BentoML worker now answers such
a request with a 503 naming the shutdown.
"""

from __future__ import annotations

import json
import select
import signal
import socket
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from conftest import free_port, stop_process, wait_until
from serving_support import V1_PATH, bundle_dir, start_server  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IN_FLIGHT = "in-flight-1"
#: Every predict takes this long, so the first one is still in flight while others arrive.
LATENCY_MS = 8_000


def _send(port: int, request_id: str) -> socket.socket:
    """A V1 predict written on a plain socket (its local port identifies it in the kernel)."""
    body = json.dumps({"instances": [{"user_id": 1, "request_id": request_id}]}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(f"POST {V1_PATH} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
                 f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
                 "connection: close\r\n\r\n".encode() + body)
    return sock


def _read_by_server(server_port: int, client_port: int) -> bool:
    """Whether the server accepted this connection and read all its bytes: in the kernel's
    table it has a file (accepted) and nothing left to receive."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        rx_queue = int(fields[4].split(":")[1], 16)
        if (int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port and state == "01"):
            return fields[9] != "0" and rx_queue == 0
    return False


def _answered(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def _response(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the answer on ``sock`` (the server closes it after)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def _refused(runtime: str, outcome: object) -> bool:
    if runtime == "kserve":
        return outcome == "ConnectError"
    return isinstance(outcome, httpx.Response) and outcome.status_code == 503


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads Linux's /proc/net/tcp")
@pytest.mark.parametrize("runtime", ["kserve", "bentoml"])
def test_a_request_during_the_grace_period_is_refused_while_the_one_in_flight_finishes(
        runtime: str, bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    port = free_port()
    proc = start_server(runtime, bundle_dir, home, port, tmp_path / "server.log",
                        fault_extra_latency_ms=LATENCY_MS, grace_period_seconds=30)
    outcomes: list[tuple[str, object]] = []
    try:
        in_flight = _send(port, IN_FLIGHT)
        client_port = in_flight.getsockname()[1]
        wait_until(lambda: _read_by_server(port, client_port), timeout=30,
                   what="the server reading the request in flight")
        proc.send_signal(signal.SIGTERM)
        # New requests until one is refused. Before the fix every one hung (the client timed
        # out) until the request in flight was answered and the server exited.
        with httpx.Client(timeout=2.0) as client:
            while not _answered(in_flight):
                rid = f"late-{len(outcomes)}"
                try:
                    outcome: object = client.post(
                        f"http://127.0.0.1:{port}{V1_PATH}",
                        json={"instances": [{"user_id": 2, "request_id": rid}]})
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                outcomes.append((rid, outcome))
                if _refused(runtime, outcome):
                    break
        assert outcomes and _refused(runtime, outcomes[-1][1]), \
            f"no new request refused before the one in flight was answered: {outcomes}"
        assert not _answered(in_flight)  # the refusal came while the drain went on
        status, body = _response(in_flight)
        assert status == 200, body
        assert body["predictions"][0]["request_id"] == IN_FLIGHT
        assert proc.wait(timeout=60) == 0
    finally:
        stop_process(proc)
    refused_id, refusal = outcomes[-1]
    if runtime == "bentoml":
        assert isinstance(refusal, httpx.Response)
        assert refusal.headers["content-type"] == "application/json"
        assert refusal.headers["connection"] == "close"
        assert refusal.json()["code"] == "shutting_down"
        assert refusal.json()["field"] == "server"
        assert "shutting down" in refusal.json()["error"]
        log = (tmp_path / "server.log").read_text()
        assert "503 POST v1_predict: server shutting down" in log, log[-3000:]
    rows = [r for f in sorted((home / "store" / "payload-logs").rglob("*.parquet"))
            for r in pq.read_table(f, columns=["request_id", "status"]).to_pylist()]
    assert {"request_id": IN_FLIGHT, "status": 200} in rows, rows
    assert refused_id not in {r["request_id"] for r in rows}
