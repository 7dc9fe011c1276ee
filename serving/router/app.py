"""The router's HTTP layer (Starlette): decode, call one ``Router`` method, encode.

Product API: ``POST /recommend``, ``POST /feedback``. Admin API for the rollout controller:
``GET/PUT /admin/routing``, ``GET /admin/stats?since=<unix s>[&until=]``. Operations:
``GET /metrics``, ``/healthz``, ``/readyz``. A bad body is a 400/422 whose message names the
field and the value it got; a failed model server is a 502/504 naming the variant.
"""

from __future__ import annotations

import contextlib
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
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.router.core import Router
from serving.router.errors import BadRequest, MalformedBody, RouterError
from serving.router.exposure import (
    EXPOSURE_PREFIX,
    EXPOSURE_SCHEMA,
    FEEDBACK_PREFIX,
    FEEDBACK_SCHEMA,
    BlobWriter,
    EventLog,
)
from serving.router.schema import FeedbackRequest, RecommendRequest, RoutingConfig
from serving.router.settings import RouterSettings
from serving.router.upstream import UpstreamClient, make_http_client

__all__ = ["create_app"]

log = logging.getLogger("marquee.router")


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(exc: RouterError) -> Response:
    return _json(exc.body(), exc.status_code)


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
        got = err.get("input")
        got_s = "" if err["type"] == "missing" else f" (got {got!r})"
        raise BadRequest(f"{field}: {err['msg']}{got_s}", field=field) from None


async def _start_all(starters: list[Callable[[], None]]) -> None:
    for start in starters:  # each creates a task: nothing here waits for a mirror
        start()


def create_app(settings: RouterSettings, store: BlobWriter | None = None, *,
               transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """The router application.

    ``store``: where exposure and feedback logs go (None: off). ``transport``: the httpx
    transport to the model servers (tests pass ``httpx.MockTransport``; default: the network).
    """
    state: dict[str, Router] = {}

    def router() -> Router:
        return state["router"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = make_http_client(settings.max_connections, settings.upstream_timeout_seconds,
                                  transport)
        exposures = feedback = None
        if store is not None and settings.exposure_log_enabled:
            opts = dict(queue_size=settings.log_queue_size, batch_rows=settings.log_batch_rows,
                        flush_seconds=settings.log_flush_seconds)
            exposures = EventLog(store, EXPOSURE_PREFIX, EXPOSURE_SCHEMA, **opts).start()
            feedback = EventLog(store, FEEDBACK_PREFIX, FEEDBACK_SCHEMA, **opts).start()
        r = Router(settings, UpstreamClient(client, settings.model_name), exposures=exposures,
                   feedback_log=feedback)
        state["router"] = r
        app.state.router = r
        try:
            yield
        finally:
            await r.drain_shadow()
            await client.aclose()
            for lg in (exposures, feedback):
                if lg is not None:
                    lg.close()

    async def recommend(request: Request) -> Response:
        after: list[Callable[[], None]] = []
        try:
            req = _decode(await request.body(), RecommendRequest)
            response = _json(await router().recommend(req, after))
        except RouterError as exc:
            return _error(exc)
        if after:  # shadow mirrors start once the user's answer is on its way
            response.background = BackgroundTask(_start_all, after)
        return response

    async def feedback(request: Request) -> Response:
        try:
            fb = _decode(await request.body(), FeedbackRequest)
            return _json(router().feedback(fb).model_dump(), 202)
        except RouterError as exc:
            return _error(exc)

    async def get_routing(request: Request) -> Response:
        r = router().routing
        if r is None:
            return _json({"error": "no routing configured", "code": "not_configured"}, 404)
        return _json(r.model_dump())

    async def put_routing(request: Request) -> Response:
        try:
            cfg = _decode(await request.body(), RoutingConfig)
            return _json(router().apply(cfg).model_dump())
        except RouterError as exc:
            return _error(exc)

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

    routes = [
        Route("/recommend", recommend, methods=["POST"]),
        Route("/feedback", feedback, methods=["POST"]),
        Route("/admin/routing", get_routing, methods=["GET"]),
        Route("/admin/routing", put_routing, methods=["PUT"]),
        Route("/admin/stats", stats, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
