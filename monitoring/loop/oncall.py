"""A stand-in pager: an HTTP endpoint in this process that records Alertmanager's
notifications to the ``oncall`` receiver (the repository's config sends every alert there).
On one machine nobody is paged; the demo shows what would have been."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["OncallSink"]


class OncallSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        sink = self
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(min(length, 1 << 20))
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {"raw": body.decode(errors="replace")}
                with sink._lock:
                    sink.notifications.append(doc)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}/oncall"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="oncall-sink", daemon=True)

    def start(self) -> OncallSink:
        self._thread.start()
        return self

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification received so far."""
        with self._lock:
            return [a for n in self.notifications for a in n.get("alerts", [])]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
