"""The router's minimal HTTP/1.1 client against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn

pytest.importorskip("httptools", reason="the raw upstream pool needs httptools "
                    "(uvicorn[standard]); the router falls back to aiohttp without it")

from serving.router.rawhttp import RawHTTPError, RawHTTPPool  # noqa: E402
from tests.conftest import free_port, wait_until  # noqa: E402


async def _app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    path = scope["path"]
    if path == "/slow":
        await asyncio.sleep(1.0)
    if path == "/chunked":  # no content-length: uvicorn sends chunked encoding
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"ab", b"cd", b"ef"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = dict(scope["headers"])
    reply = b"echo:" + body + b":" + headers.get(b"x-request-id", b"-")
    status = 503 if path == "/fail" else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(reply)).encode())]})
    await send({"type": "http.response.body", "body": reply})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(_app, host="127.0.0.1", port=port, log_level="warning",
                                        timeout_keep_alive=1))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()

    def up() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    wait_until(up, timeout=20, what="echo server")
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(timeout=10)


def test_post_reuses_connections_and_reads_both_framings(server: str) -> None:
    async def go() -> None:
        pool = RawHTTPPool()
        for i in range(20):
            status, body = await pool.post(f"{server}/x", b"hi%d" % i, {"x-request-id": "r"}, 5)
            assert (status, body) == (200, b"echo:hi%d:r" % i)
        assert len(pool._idle[("127.0.0.1", int(server.rsplit(":", 1)[1]))]) == 1  # one reused
        assert await pool.post(f"{server}/chunked", b"", {}, 5) == (200, b"abcdef")
        assert (await pool.post(f"{server}/fail", b"z", {}, 5))[0] == 503
        pool.close()
    asyncio.run(go())


def test_a_connection_closed_while_idle_is_retried_on_a_new_one(server: str) -> None:
    async def go() -> None:
        pool = RawHTTPPool()
        assert (await pool.post(f"{server}/x", b"a", {}, 5))[0] == 200
        await asyncio.sleep(1.6)  # past the server's keep-alive timeout: it closes the socket
        assert await pool.post(f"{server}/x", b"b", {}, 5) == (200, b"echo:b:-")
        pool.close()
    asyncio.run(go())


def test_timeouts_and_refused_connections(server: str) -> None:
    async def go() -> None:
        pool = RawHTTPPool()
        with pytest.raises(TimeoutError):
            await pool.post(f"{server}/slow", b"", {}, 0.2)
        assert (await pool.post(f"{server}/x", b"ok", {}, 5))[0] == 200  # pool still fine
        with pytest.raises(RawHTTPError):
            await pool.post(f"http://127.0.0.1:{free_port()}/x", b"", {}, 2)
        with pytest.raises(ValueError):
            await pool.post("https://example.invalid/x", b"", {}, 1)
        pool.close()
    asyncio.run(go())
