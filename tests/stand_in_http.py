"""A stand-in HTTP server on 127.0.0.1 for tests that need *something else* to answer at a URL
(another service on the port, a proxy, a router that names its variants by hand)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: ``answer(method, path, request body) -> (status, body)``: a str body is sent as it is,
#: anything else as JSON
Answer = Callable[[str, str, bytes], tuple[int, Any]]


@contextmanager
def serving(answer: Answer) -> Iterator[str]:
    """Serve ``answer`` for GET and POST on 127.0.0.1; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
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

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
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
