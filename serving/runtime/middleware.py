"""ASGI middleware both model servers use: a body-size limit and request counters.

Bodies over ``max_body_bytes`` get a 413 naming ``body`` (by ``Content-Length`` before the
app runs, or while a chunked body is read); ``route_max_body_bytes`` gives a route its own
limit (a model server's ``/payload-sink`` takes whole CloudEvents, as the sink service does).
Every answered request is counted in ``marquee_serving_requests_total`` (and
``_errors_total`` for 4xx/5xx) by route and code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import JSONResponse

from serving import metrics
from serving.errors import PayloadTooLarge, error_body

__all__ = ["ServingMiddleware", "route_of"]


def route_of(path: str) -> str:
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        return "v1_predict"
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "v2_infer"
    if path == "/payload-sink":
        return "payload_sink"
    if path == "/metrics":
        return "metrics"
    if path in ("/", "/v2/health/live", "/v2/health/ready", "/marquee/model") or \
            path.startswith(("/v1/models", "/v2/models")):
        return "health"
    return "other"


class ServingMiddleware:
    """ASGI middleware: body-size limit and request/error counters by route and status."""

    def __init__(self, app: Any, *, max_body_bytes: int | Callable[[], int],
                 version: Callable[[], str], variant: str | Callable[[], str] = "",
                 route_max_body_bytes: Mapping[str, int] | None = None) -> None:
        self.app = app
        self._max_body_bytes = max_body_bytes
        self._route_max_body_bytes = dict(route_max_body_bytes or {})
        self.version = version
        self.variant = variant

    @property
    def max_body_bytes(self) -> int:
        m = self._max_body_bytes
        return m() if callable(m) else m

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_of(scope.get("path", ""))
        limit = self._route_max_body_bytes.get(route) or self.max_body_bytes
        status = {"code": 500}
        length = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                too_big = False
            if too_big:
                exc = PayloadTooLarge(f"body: {int(length)} bytes is more than the limit of "
                                      f"{limit}", field="body")
                await JSONResponse(error_body(exc), status_code=413)(scope, receive, send)
                self._count(route, 413)
                return
        if length is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            # A chunked body: read it here, within the limit, and replay it to the app.
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    exc = PayloadTooLarge(f"body: more than the limit of {limit} "
                                          "bytes", field="body")
                    await JSONResponse(error_body(exc), status_code=413)(scope, receive, send)
                    self._count(route, 413)
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            app_receive = replay
        else:
            app_receive = receive

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, app_receive, send_status)
        finally:
            self._count(route, status["code"])

    def _count(self, route: str, code: int) -> None:
        if route in ("metrics", "health"):
            return
        variant = self.variant() if callable(self.variant) else self.variant
        metrics.count_request(self.version(), variant, route, code)
