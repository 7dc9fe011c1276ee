"""The router's HTTP layer (Starlette): decode, call one ``Router`` method, encode.

Product API: ``POST /recommend``, ``POST /feedback``. Admin API for the rollout controller:
``GET/PUT /admin/routing``, ``GET /admin/stats?since=<unix s>[&until=]``, and
``GET/PUT /admin/upstreams`` (``{"version": "2", "url": "http://127.0.0.1:8082"}``: where a
version's model server is, for one started after the router, e.g. by the retrain trigger). Operations:
``GET /metrics``, ``/healthz``, ``/readyz``. With ``MARQUEE_ROUTER_ADMIN_TOKEN`` set, every
``/admin/*`` call must carry ``Authorization: Bearer <token>`` (else a 401). A bad body is a
400/422 whose message names the field and the value it got; a failed model server is a
502/504 naming the variant.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.fields import short_repr
from serving.router.core import Router
from serving.router.errors import (
    BadRequest,
    MalformedBody,
    PayloadTooLarge,
    RouterError,
    Unauthorized,
)
from serving.router.exposure import (
    EXPOSURE_PREFIX,
    EXPOSURE_SCHEMA,
    FEEDBACK_PREFIX,
    FEEDBACK_SCHEMA,
    BlobWriter,
    EventLog,
)
from serving.router.schema import (
    FeedbackRequest,
    ModelVersion,
    RecommendRequest,
    RoutingConfig,
    UpstreamUrl,
)
from serving.router.settings import ADMIN_TOKEN_ENV, RouterSettings
from serving.router.upstream import make_upstream
from serving.settings import ServingSettings

__all__ = ["create_app", "ProductAPI"]

log = logging.getLogger("marquee.router")


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(exc: RouterError) -> Response:
    return _json(exc.body(), exc.status_code)


# The largest valid product request (a history of 1,000 item ids and a context of 32 keys)
# is about 30 KB of JSON; anything above this is refused before it is read in full. The
# request the router forwards is re-encoded and wrapped in ``{"instances": [...]}`` (and
# gains ``"k"``, floats such as 1E5 grow to 100000.0): up to a few hundred bytes more. The
# limit keeps 1 KB under the model server's default ``max_body_bytes`` (64 KiB), so a body
# the router accepts is never one the model server refuses as too large.
MAX_BODY_BYTES = ServingSettings.model_fields["max_body_bytes"].default - 1024


async def _read_body(scope: dict[str, Any], receive: Callable[[], Any]) -> bytes:
    """The request body, refused with a 413 past :data:`MAX_BODY_BYTES` (by its
    ``Content-Length`` before reading, or while reading a chunked one). Every body the router
    reads goes through here: the product API's and the admin API's PUTs alike."""
    for name, value in scope.get("headers") or ():
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"body: {int(value)} bytes is more than the limit of "
                                  f"{MAX_BODY_BYTES}", field="body")
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"body: more than the limit of {MAX_BODY_BYTES} bytes",
                                  field="body")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


AdminHandler = Callable[[Request], Any]


def _admin_guard(token: str | None) -> Callable[[AdminHandler], AdminHandler]:
    """Wraps an ``/admin/*`` handler: with ``token``, a call without ``Authorization: Bearer
    <token>`` is a 401 before the handler runs (nothing read, nothing changed)."""
    if token is None:
        log.warning("the admin API (/admin/routing, /admin/upstreams) is unauthenticated: "
                    "anyone who reaches the router can move its traffic; set %s",
                    ADMIN_TOKEN_ENV)
        return lambda handler: handler
    expected = token.encode()

    def guard(handler: AdminHandler) -> AdminHandler:
        @functools.wraps(handler)
        async def checked(request: Request) -> Response:
            scheme, _, presented = (request.headers.get("authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not presented.strip():
                refused = "missing Authorization: Bearer <token> header"
            elif not hmac.compare_digest(presented.strip().encode(), expected):
                refused = "wrong bearer token"
            else:
                return await handler(request)
            response = _error(Unauthorized(f"authorization: {refused} (the router's "
                                           f"{ADMIN_TOKEN_ENV})", field="authorization"))
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return checked
    return guard


def _decode(raw: bytes, model: type[BaseModel]) -> Any:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedBody("body: not valid JSON", field="body") from None
    if not isinstance(data, dict):
        raise MalformedBody(f"body: expected a JSON object, got {type(data).__name__}",
                            field="body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        got_s = "" if err["type"] == "missing" else f" (got {short_repr(err.get('input'))})"
        raise BadRequest(f"{field}: {err['msg']}{got_s}", field=field) from None


_JSON_HEADERS = [(b"content-type", b"application/json")]


class UpstreamRegistration(BaseModel):
    """``PUT /admin/upstreams``: the model server of a version."""

    model_config = {"extra": "forbid"}

    version: ModelVersion
    url: UpstreamUrl


class ProductAPI:
    """``POST /recommend`` and ``POST /feedback`` as plain ASGI, everything else to Starlette.

    The product API is the hot path: skipping Starlette's middleware and routing layers is a
    third of the router's own CPU per request. Still a thin layer: decode, call one ``Router``
    method, encode. Shadow mirrors start only after the response has been sent.
    """

    def __init__(self, app: Starlette, router: Callable[[], Router]) -> None:
        self.app = app
        self.router = router
        self.state = app.state

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any],
                       send: Callable[[dict[str, Any]], Any]) -> None:
        if scope["type"] == "http" and scope["path"] in ("/recommend", "/feedback"):
            if scope["method"] != "POST":
                return await self._send(send, 405, {
                    "error": f"method {scope['method']} not allowed: use POST",
                    "code": "method_not_allowed"}, allow=b"POST")
            if scope["path"] == "/recommend":
                return await self._recommend(scope, receive, send)
            return await self._feedback(scope, receive, send)
        await self.app(scope, receive, send)

    @staticmethod
    async def _send(send: Callable[[dict[str, Any]], Any], status: int, body: Any,
                    allow: bytes | None = None) -> None:
        payload = orjson.dumps(body)
        headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
        if allow is not None:
            headers.append((b"allow", allow))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _recommend(self, scope: dict[str, Any], receive: Callable[[], Any],
                         send: Callable[[dict[str, Any]], Any]) -> None:
        after: list[Callable[[], None]] = []
        try:
            req = _decode(await _read_body(scope, receive), RecommendRequest)
            body = await self.router().recommend(req, after)
        except RouterError as exc:
            if exc.status_code < 500:  # refused before any variant was chosen
                self.router().client_error(exc.status_code)
            return await self._send(send, exc.status_code, exc.body())
        await self._send(send, 200, body)
        for start in after:  # each creates a task: nothing here waits for a mirror
            start()

    async def _feedback(self, scope: dict[str, Any], receive: Callable[[], Any],
                        send: Callable[[dict[str, Any]], Any]) -> None:
        try:
            fb = _decode(await _read_body(scope, receive), FeedbackRequest)
            body = self.router().feedback(fb).model_dump()
        except RouterError as exc:
            return await self._send(send, exc.status_code, exc.body())
        await self._send(send, 202, body)


def create_app(settings: RouterSettings, store: BlobWriter | None = None, *,
               transport: httpx.AsyncBaseTransport | None = None,
               routing_file: str | None = None) -> ProductAPI:
    """The router application.

    ``store``: where exposure and feedback logs go (None: off). ``transport``: the httpx
    transport to the model servers (tests pass ``httpx.MockTransport``; default: the network).
    ``routing_file``: where the router remembers its routing across restarts (None: nowhere).
    """
    state: dict[str, Router] = {}

    def router() -> Router:
        return state["router"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        upstream = make_upstream(settings, transport)
        exposures = feedback = None
        if store is not None and settings.exposure_log_enabled:
            opts = dict(queue_size=settings.log_queue_size, batch_rows=settings.log_batch_rows,
                        flush_seconds=settings.log_flush_seconds)
            exposures = EventLog(store, EXPOSURE_PREFIX, EXPOSURE_SCHEMA, **opts).start()
            feedback = EventLog(store, FEEDBACK_PREFIX, FEEDBACK_SCHEMA, **opts).start()
        r = Router(settings, upstream, exposures=exposures, feedback_log=feedback,
                   routing_file=routing_file, inline_shadow=transport is not None)
        state["router"] = r
        app.state.router = r
        try:
            yield
        finally:
            await r.drain_shadow()
            await r.mirror.aclose()
            await upstream.aclose()
            for lg in (exposures, feedback):
                if lg is not None:
                    lg.close()

    async def get_routing(request: Request) -> Response:
        r = router().routing
        if r is None:
            return _json({"error": "no routing configured", "code": "not_configured"}, 404)
        return _json(r.model_dump())

    async def put_routing(request: Request) -> Response:
        try:
            cfg = _decode(await _read_body(request.scope, request.receive), RoutingConfig)
            return _json(router().apply(cfg).model_dump())
        except RouterError as exc:
            return _error(exc)

    async def get_upstreams(request: Request) -> Response:
        return _json(router().settings.upstreams)

    async def put_upstream(request: Request) -> Response:
        try:
            reg = _decode(await _read_body(request.scope, request.receive),
                          UpstreamRegistration)
        except RouterError as exc:
            return _error(exc)
        router().register_upstream(reg.version, reg.url.rstrip("/"))
        return _json(router().settings.upstreams)

    async def stats(request: Request) -> Response:
        r = router()
        q = request.query_params
        try:
            since = float(q.get("since", "0"))
            until = float(q["until"]) if "until" in q else None
            if not (math.isfinite(since) and (until is None or math.isfinite(until))):
                raise ValueError
        except ValueError:
            return _error(BadRequest(f"since/until: expected unix seconds, got {dict(q)!r}",
                                     field="since"))
        epoch = r.routing.epoch if r.routing else None
        return _json(r.stats.window(since, until, epoch).model_dump())

    async def metrics_endpoint(request: Request) -> Response:
        router().shadow_gauges()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok", "time": time.time()})

    async def readyz(request: Request) -> Response:
        r = router().routing
        if r is None:
            return _json({"status": "not ready", "reason": "no routing configured"}, 503)
        return _json({"status": "ready", "epoch": r.epoch, "strategy": r.strategy})

    admin = _admin_guard(settings.admin_token.get_secret_value().strip()
                         if settings.admin_token else None)
    routes = [
        Route("/admin/routing", admin(get_routing), methods=["GET"]),
        Route("/admin/routing", admin(put_routing), methods=["PUT"]),
        Route("/admin/upstreams", admin(get_upstreams), methods=["GET"]),
        Route("/admin/upstreams", admin(put_upstream), methods=["PUT"]),
        Route("/admin/stats", admin(stats), methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    return ProductAPI(Starlette(routes=routes, lifespan=lifespan), router)
