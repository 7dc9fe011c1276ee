"""A stand-in for the Prometheus Pushgateway: an HTTP server on 127.0.0.1 that records pushes.

NOT the real Pushgateway (it is not installed here, and CI does not install it): a real HTTP
server that answers every PUT/POST/DELETE with 200, as the Pushgateway does for a valid
push, and keeps each request's method, path (``/metrics/job/<job>/<label>/<value>…``, the
grouping key) and body (the text exposition format) for the test to read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Push:
    method: str
    path: str
    body: str


@dataclass
class StandInPushgateway:
    url: str
    pushes: list[Push] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [p.path for p in self.pushes]


@contextmanager
def stand_in_pushgateway() -> Iterator[StandInPushgateway]:
    """A running stand-in on a free 127.0.0.1 port; stopped on exit."""
    pushes: list[Push] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n).decode() if n else ""
            with lock:
                pushes.append(Push(self.command, self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = do_POST = do_DELETE = _record

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StandInPushgateway(url=f"http://127.0.0.1:{server.server_address[1]}",
                                 pushes=pushes)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
