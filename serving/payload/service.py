"""The payload-log sink as its own service: ``marquee serve --runtime payload-sink``.

In a cluster every InferenceService's ``logger`` posts KServe's CloudEvents here (the chart's
``sink`` Deployment); the sink pairs requests with responses and writes payload-log rows to the
object store, like a model server's own logger. Beside ``POST /payload-sink`` it serves the
probes (``/healthz``, ``/readyz``) and ``/metrics``. It loads no model. SIGTERM flushes what
is queued before the process ends. With ``MARQUEE_SERVING_PAYLOAD_SINK_TOKEN`` set, only events
carrying that token are taken (``serving.payload.sink``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from serving.payload.logger import PayloadLogger
from serving.payload.sink import CloudEventPairer, sink_router

if TYPE_CHECKING:
    from marquee.settings import Settings
    from serving.settings import ServingSettings

__all__ = ["SINK_MAX_BODY_BYTES", "build_sink_service", "run_sink"]

# A CloudEvent carries a whole request or response: up to 64 instances × 500 items with scores
# and features is a few hundred KB, far above a model server's own request limit.
SINK_MAX_BODY_BYTES = 8 * 1024 * 1024


def build_sink_service(logger: PayloadLogger, ttl_seconds: float = 60.0,
                       token: str | None = None) -> FastAPI:
    """The sink application; when it stops, the halves still waiting for their pair are
    counted as dropped and the logger is flushed and closed.
    With ``token``, ``POST /payload-sink`` needs it (``serving.payload.sink``); the probes
    and ``/metrics`` stay open."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from serving.runtime.middleware import ServingMiddleware

    pairer = CloudEventPairer(logger, ttl_seconds=ttl_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            pairer.close()  # halves whose pair never came: counted, not lost in silence
            logger.close()

    app = FastAPI(title="marquee payload sink", docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    app.include_router(sink_router(pairer, token))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        return JSONResponse({"status": "ready", "pending_rows": logger.pending})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(ServingMiddleware, max_body_bytes=SINK_MAX_BODY_BYTES,
                       version=lambda: "sink", variant="sink")
    return app


def run_sink(settings: Settings, serving: ServingSettings) -> None:
    """Serve the sink on ``serving.host`` (default ``MARQUEE_BIND_HOST``) and ``serving.port``
    until SIGTERM or SIGINT."""
    import uvicorn

    from serving.runtime.loader import start_payload_logger

    app = build_sink_service(start_payload_logger(settings, serving), token=serving.sink_token)
    uvicorn.run(app, host=serving.host or settings.bind_host, port=serving.port,
                access_log=False, log_level="warning",
                timeout_graceful_shutdown=serving.grace_period_seconds)
