"""The raw upstream pool's ``Host`` header of an IPv6 model server (session 23, helper L).

``RawHTTPPool`` wrote ``Host: {host}:{port}`` with the host ``urlsplit`` gives, which drops an
IPv6 literal's brackets: a model server at ``http://[::1]:8081`` was sent ``Host: ::1:8081``,
which RFC 7230 (5.4) and RFC 3986 (3.2.2) do not allow and no server can split into host and
port. Now it is ``Host: [::1]:8081``, as the URL has it.

A real recording HTTP server on the IPv6 loopback ``::1`` (skipped where the machine has
none): the pool itself, and a real ``marquee router`` whose baseline is at ``http://[::1]:P``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("httptools", reason="the raw upstream pool needs httptools")

from serving.router.rawhttp import RawHTTPPool  # noqa: E402
from tests.rollout.rollout_support import start_router  # noqa: E402
from tests.stand_in_http import serving  # noqa: E402


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1)")


@contextmanager
def _recording() -> Iterator[tuple[str, list[str]]]:
    """A KServe V1 stand-in on [::1] that records each request's Host header."""
    seen: list[dict[str, str]] = []
    hosts: list[str] = []

    def answer(method: str, path: str, body: bytes) -> tuple[int, Any]:
        hosts.append(seen[-1].get("host", "<none>"))
        inst = json.loads(body)["instances"][0]
        return 200, {"predictions": [{
            "user_id": inst["user_id"], "items": [5, 6], "scores": [0.5, 0.4],
            "model_version": "1", "cold_start": False, "fallback": False}]}

    with serving(answer, host="::1", headers=seen) as url:
        yield url, hosts


def test_the_pool_sends_an_ipv6_host_in_brackets() -> None:
    with _recording() as (url, hosts):
        port = url.rsplit(":", 1)[1]

        async def call() -> tuple[int, bytes]:
            pool = RawHTTPPool()
            try:
                return await pool.post(f"{url}/v1/models/m:predict",
                                       b'{"instances": [{"user_id": 3, "k": 2}]}',
                                       {"content-type": "application/json"}, 5.0)
            finally:
                pool.close()

        status, body = asyncio.run(call())
        assert status == 200, body
        assert hosts == [f"[::1]:{port}"]


def test_the_router_calls_an_ipv6_model_server_with_a_valid_host(tmp_path: Path) -> None:
    with _recording() as (url, hosts):
        port = url.rsplit(":", 1)[1]
        router = start_router({"1": url}, "1", tmp_path, tmp_path)  # the raw client: default
        try:
            got = httpx.post(f"{router.url}/recommend", json={"user_id": 3, "k": 2},
                             timeout=10.0, trust_env=False)
        finally:
            router.stop()
        assert got.status_code == 200, got.text
        assert got.json()["items"] == [5, 6]
        assert hosts == [f"[::1]:{port}"]
