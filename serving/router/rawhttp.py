"""A minimal HTTP/1.1 keep-alive client for the router → model-server hop.

The router's own cost is mostly its HTTP client; this one does only what the hop needs —
``POST`` with a body, ``Content-Length`` or chunked responses (parsed by ``httptools``, the
parser uvicorn uses), a pool of persistent connections per upstream, a per-call deadline —
at a fraction of a general-purpose client's CPU per call. A call that fails on a reused
idle connection before any response byte arrived (the server closed it meanwhile) is retried
once on a new connection.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httptools

__all__ = ["RawHTTPPool", "RawHTTPError"]


class RawHTTPError(ConnectionError):
    """The connection failed or the response could not be parsed."""

    def __init__(self, message: str, *, fresh: bool) -> None:
        super().__init__(message)
        self.retryable = not fresh


class _Conn(asyncio.Protocol):
    __slots__ = ("transport", "parser", "waiter", "chunks", "keep_alive", "closed", "got_bytes",
                 "fresh")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.keep_alive = True
        self.closed = False
        self.got_bytes = False
        self.fresh = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.parser is None:
            self._fail("response without a request")
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"bad response: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail("connection closed")

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_result((self.parser.get_status_code(), b"".join(self.chunks)))

    def _fail(self, message: str) -> None:
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_exception(RawHTTPError(message, fresh=self.fresh or self.got_bytes))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes,
             loop: asyncio.AbstractEventLoop) -> asyncio.Future[tuple[int, bytes]]:
        self.parser = httptools.HttpResponseParser(self)
        self.chunks = []
        self.got_bytes = False
        self.waiter = loop.create_future()
        assert self.transport is not None
        self.transport.write(data)
        return self.waiter


class RawHTTPPool:
    """Persistent connections to any number of ``http://host:port`` upstreams."""

    def __init__(self, max_idle_per_host: int = 64) -> None:
        self.max_idle = max_idle_per_host
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._targets: dict[str, tuple[str, int, bytes, bytes]] = {}

    def _target(self, url: str) -> tuple[str, int, bytes, bytes]:
        """``(host, port, path, Host header value)`` of ``url``."""
        t = self._targets.get(url)
        if t is None:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"only http://host[:port]/path URLs are supported, got {url!r}")
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            host, port = parts.hostname, parts.port or 80
            t = self._targets[url] = (host, port, path.encode(),
                                      _host_header(host, port).encode())
        return t

    async def _connect(self, host: str, port: int,
                       loop: asyncio.AbstractEventLoop) -> _Conn:
        try:
            _, conn = await loop.create_connection(_Conn, host, port)
        except OSError as exc:
            raise RawHTTPError(f"connect to {host}:{port} failed: {exc}", fresh=True) from None
        return conn

    async def post(self, url: str, body: bytes, headers: dict[str, str],
                   timeout: float) -> tuple[int, bytes]:
        """``(status, body)``; raises ``TimeoutError`` or :class:`RawHTTPError`."""
        host, port, path, host_header = self._target(url)
        head = [b"POST ", path, b" HTTP/1.1\r\nHost: ", host_header,
                b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n"]
        for k, v in headers.items():
            head += [k.encode(), b": ", v.encode(), b"\r\n"]
        data = b"".join(head) + b"\r\n" + body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        idle = self._idle.setdefault((host, port), [])
        for attempt in range(2):
            conn = None
            while idle:
                candidate = idle.pop()
                if not candidate.closed:
                    conn = candidate
                    conn.fresh = False
                    break
            if conn is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                conn = await asyncio.wait_for(self._connect(host, port, loop), remaining)
            fut = conn.send(data, loop)
            timer = loop.call_at(deadline, _expire, fut)
            try:
                status, content = await fut
            except RawHTTPError as exc:
                conn.close()
                if exc.retryable and attempt == 0:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            finally:
                timer.cancel()
            if conn.keep_alive and not conn.closed and len(idle) < self.max_idle:
                idle.append(conn)
            else:
                conn.close()
            return status, content
        raise RawHTTPError("unreachable", fresh=True)  # pragma: no cover

    def close(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()


def _host_header(host: str, port: int) -> str:
    """The ``Host`` header of ``host:port``: an IPv6 literal in brackets (RFC 7230 5.4, RFC
    3986 3.2.2), as the URL has it; ``urlsplit`` drops them, and ``Host: ::1:8080`` names no
    host a server can parse."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _expire(fut: asyncio.Future[tuple[int, bytes]]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
