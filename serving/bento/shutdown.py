"""A prompt 503 for a request that reaches a BentoML worker while it drains, not a hang.

``bentoml serve`` runs an arbiter (circus) that owns the listening socket and a worker that
serves on a copy of it. On SIGTERM the worker's uvicorn stops accepting and waits up to the
grace period for the requests in flight, but the arbiter's copy keeps the socket listening: the
kernel completes every new connection's handshake and queues it, and that client hangs until
the arbiter exits (then a reset). KServe's uvicorn owns its socket and closes it, so a new
connection there is refused at once. During a rolling update the Service may still route new
requests to a terminating pod for a moment: a hang costs the caller its whole timeout, a quick
refusal lets it retry on another replica.

:class:`DrainRefuser` keeps accepting on that socket once the drain starts and answers every new
request with a 503 ``{"error": "server: shutting down ...", "code": "shutting_down", "field":
"server"}`` and ``Connection: close``. The requests in flight finish as before (and write their
payload rows): they are uvicorn's, on connections it accepted before the signal. The refusals are
not counted in ``marquee_serving_*`` (KServe's refused connections are not either).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import stat
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

import orjson

from serving.errors import ServerShuttingDown, error_body

__all__ = ["DrainRefuser", "listening_socket"]

log = logging.getLogger(__name__)

#: How long a refused client may take to send its request head (and a body it announced).
_READ_TIMEOUT_SECONDS = 5.0
#: The signals uvicorn drains on (it installs its handlers with ``signal.signal``).
_DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _fds() -> Iterable[int]:
    """This process's open file descriptors (``/proc`` where there is one)."""
    try:
        return sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    except OSError:
        return range(3, 1024)


def listening_socket(port: int) -> socket.socket | None:
    """A duplicate of this process's listening TCP socket on ``port``, or None if it has none.

    Found by looking, not by a framework's internals: BentoML hands the worker the arbiter's
    socket as a bare file descriptor. The duplicate keeps the socket open in this process after
    uvicorn closes its own descriptor at the start of the drain."""
    for fd in _fds():
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if (sock.type == socket.SOCK_STREAM
                    and sock.family in (socket.AF_INET, socket.AF_INET6)
                    and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    and sock.getsockname()[1] == port):
                return sock
        except OSError:
            pass
        sock.close()
    return None


def _request_line(head: bytes) -> tuple[str, str, int]:
    """Method, path and ``Content-Length`` (0 if absent or not a number) of a request head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    method, path = (parts[0], parts[1].split("?", 1)[0]) if len(parts) >= 2 else ("-", "-")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            try:
                length = int(value.strip())
            except ValueError:
                length = 0
    return method, path, length


def _response(body: bytes) -> bytes:
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
            + body)


class DrainRefuser:
    """Answers 503 on the worker's listening socket from the first drain signal on.

    ``install()`` chains a handler in front of uvicorn's for SIGTERM and SIGINT: uvicorn still
    begins its drain as before, and this starts refusing on the same socket. Call it from the
    event loop of the worker's main thread, after uvicorn installed its handlers (a BentoML
    startup hook is); ``close()`` stops refusing."""

    def __init__(self, sock: socket.socket, *, max_body_bytes: int,
                 on_refused: Callable[[str, str], None]) -> None:
        self.sock = sock
        self.max_body_bytes = max_body_bytes
        self.on_refused = on_refused
        self._body = orjson.dumps(error_body(ServerShuttingDown(
            "server: shutting down (graceful shutdown in progress); send the request to "
            "another replica", field="server")))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._starting = False

    def install(self) -> bool:
        """Chain the drain signals' handlers; False (nothing installed) where they cannot be."""
        if threading.current_thread() is not threading.main_thread():
            return False  # signal handlers are the main thread's (a test client runs elsewhere)
        self._loop = asyncio.get_running_loop()
        installed = False
        for sig in _DRAIN_SIGNALS:
            previous = signal.getsignal(sig)
            if callable(previous):  # uvicorn's; else the signal ends the process anyway
                signal.signal(sig, self._chained(previous))
                installed = True
        return installed

    def _chained(self, previous: Callable[[int, FrameType | None], Any]
                 ) -> Callable[[int, FrameType | None], None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            previous(signum, frame)
            if not self._starting and self._loop is not None:
                self._starting = True
                self._loop.call_soon_threadsafe(self._start)
        return handler

    def _start(self) -> None:
        """Runs in the loop: the drain has begun."""
        assert self._loop is not None
        self._loop.create_task(self._serve())

    async def _serve(self) -> None:
        try:
            self._server = await asyncio.start_server(self._answer, sock=self.sock)
        except OSError as exc:  # a new request then waits, as before: say why
            log.warning("cannot answer new requests with 503 during the shutdown: %s", exc)
            return
        log.info("shutting down: new requests are answered 503 while requests in flight finish")

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One refused connection: read the request (so closing does not reset it before the
        client reads the answer), answer 503 and close."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_SECONDS)
            method, path, length = _request_line(head)
            if 0 < length <= self.max_body_bytes:
                await asyncio.wait_for(reader.readexactly(length), _READ_TIMEOUT_SECONDS)
            writer.write(_response(self._body))
            await writer.drain()
            self.on_refused(method, path)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass  # the client went away or sent no request: nothing to answer
        finally:
            writer.close()

    def close(self) -> None:
        """Stop refusing (the worker is about to exit); the socket's duplicate is closed."""
        if self._server is not None:
            self._server.close()
        self.sock.close()
