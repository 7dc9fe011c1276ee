"""A stand-in HTTP server on 127.0.0.1 for tests that need *something else* to answer at a URL
(another service on the port, a proxy, a router that names its variants by hand)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: ``answer(method, path, request body) -> (status, body)``: a str body is sent as it is,
#: anything else as JSON
Answer = Callable[[str, str, bytes], tuple[int, Any]]


@contextmanager
def serving(answer: Answer, *, host: str = "127.0.0.1", tls: tuple[Path, Path] | None = None,
            headers: list[dict[str, str]] | None = None) -> Iterator[str]:
    """Serve ``answer`` for GET and POST on ``host`` (a loopback address: 127.0.0.1 or ::1);
    yields the base URL. ``tls``: (certificate, key) files, served over HTTPS. ``headers``:
    each request's headers are appended to it."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            if headers is not None:
                headers.append({k.lower(): v for k, v in self.headers.items()})
            body = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
            status, out = answer(self.command, self.path, body)
            data = (out if isinstance(out, str) else json.dumps(out)).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _reply  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = Server((host, 0), Handler)
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"{'https' if tls else 'http'}://{shown}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def replay_router(variant: Callable[[int], str] = lambda i: "stable",
                  fail_every: int = 0) -> Answer:
    """What ``marquee traffic replay`` needs from a router: /recommend answers a list (every
    ``fail_every``-th request a 503), /feedback a 202."""
    turn = iter(range(10**9))

    def answer(method: str, path: str, body: bytes) -> tuple[int, Any]:
        if path != "/recommend":
            return 202, {"credited": None}
        i = next(turn)
        if fail_every and i % fail_every == 0:
            return 503, {"code": "unavailable", "message": "warming up"}
        return 200, {"items": [8, 9], "scores": [1.0, 0.5], "request_id": f"r{i}",
                     "model_version": "1", "variant": variant(i)}

    return answer
