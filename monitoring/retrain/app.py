"""The retrain trigger's HTTP surface: Alertmanager's webhook, on-call requests, /metrics.

    POST /webhook    Alertmanager webhook (v4), bearer token  -> 200 {"decisions": [...]}
    POST /retrain    ManualRequest, bearer token              -> 202 started | 409 refused
    POST /runs/<run>/cancel  CancelRequest, bearer token      -> 202 canceled | 404 unknown
                     run | 409 ended, or not this process's
    GET  /runs       recent runs and decisions, bearer token
    GET  /healthz    liveness: 503 once the worker thread has ended
    GET  /readyz     readiness: the worker runs and the state file is readable; else 503
                     {"ready": false, "reason": ...}
    GET  /metrics    Prometheus

Handlers decode, call the trigger, encode. Errors are MonitoringError subclasses mapped to a
response in one place; 401 and 400 name what was wrong.
"""

from __future__ import annotations

import hmac

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from marquee.errors import MarqueeError
from monitoring.errors import BodyTooLargeError, MalformedAlertError, UnauthorizedError
from monitoring.retrain import metrics
from monitoring.retrain.models import CancelRequest, ManualRequest, WebhookMessage
from monitoring.retrain.trigger import RetrainTrigger

__all__ = ["create_app", "MAX_BODY_BYTES"]

# Alertmanager sends one notification per group; even a thousand alerts is about 1 MB.
MAX_BODY_BYTES = 4 * 1024 * 1024


async def _body(request: Request) -> bytes:
    """The body, refused with a 413 past :data:`MAX_BODY_BYTES` (by ``Content-Length`` before
    reading, or while reading a chunked one)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise BodyTooLargeError(f"body: {int(length)} bytes is more than the limit of "
                                f"{MAX_BODY_BYTES}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLargeError(f"body: more than the limit of {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def _parse(body: bytes, model: type):
    try:  # orjson: also refuses lone surrogates and nesting deeper than 1,024 (json: 500s)
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedAlertError(f"body is not JSON: {exc}") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MalformedAlertError(f"not a valid {model.__name__}: "
                                  f"{_validation_message(exc)}") from exc


def create_app(trigger: RetrainTrigger, token: str) -> FastAPI:
    """The ASGI app around ``trigger``; every mutating route needs ``Bearer <token>``."""
    if not token:
        raise ValueError("the retrain trigger needs a non-empty bearer token")
    expected = token.encode()
    app = FastAPI(title="Marquee retrain trigger", docs_url=None, redoc_url=None,
                  openapi_url=None)

    def check_auth(request: Request) -> None:
        header = request.headers.get("authorization")
        if header is None:
            raise UnauthorizedError("missing Authorization: Bearer <token> header")
        # the scheme is case-insensitive (RFC 9110 11.1): Alertmanager sends its
        # authorization.type as written, and "bearer" was refused with every alert it sent
        scheme, _, credentials = header.strip().partition(" ")
        if not hmac.compare_digest(credentials.strip().encode(), expected) or \
                scheme.lower() != "bearer":
            raise UnauthorizedError("wrong bearer token")

    @app.exception_handler(MarqueeError)
    async def _error(request: Request, exc: MarqueeError) -> JSONResponse:
        if isinstance(exc, UnauthorizedError):
            await run_in_threadpool(trigger.record_unauthorized,
                                    f"{request.method} {request.url.path}: {exc.message}")
        if request.url.path == "/webhook":
            metrics.WEBHOOK_REQUESTS.labels(code=str(exc.status_code)).inc()
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        check_auth(request)
        message = _parse(await _body(request), WebhookMessage)
        decisions = await run_in_threadpool(trigger.handle_webhook, message)
        metrics.WEBHOOK_REQUESTS.labels(code="200").inc()
        return JSONResponse({"decisions": [d.model_dump(mode="json") for d in decisions]})

    @app.post("/retrain")
    async def retrain(request: Request) -> JSONResponse:
        check_auth(request)
        req = _parse(await _body(request), ManualRequest)
        decision = await run_in_threadpool(trigger.handle_manual, req)
        return JSONResponse(decision.model_dump(mode="json"),
                            status_code=202 if decision.started else 409)

    @app.post("/runs/{run_id}/cancel")
    async def cancel(run_id: str, request: Request) -> JSONResponse:
        check_auth(request)
        req = _parse(await _body(request), CancelRequest)
        decision = await run_in_threadpool(trigger.cancel, run_id, req)
        return JSONResponse(decision.model_dump(mode="json"), status_code=202)

    @app.get("/runs")
    async def runs(request: Request, limit: int = 20) -> JSONResponse:
        check_auth(request)
        limit = max(1, min(limit, 500))
        return JSONResponse({
            "runs": [r.model_dump(mode="json") for r in trigger.store.runs(limit)],
            "decisions": [d.model_dump(mode="json") for d in trigger.store.decisions(limit)],
        })

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if trigger.worker_died:  # liveness: restart a trigger that can no longer run anything
            return JSONResponse({"status": "the retrain worker thread has ended"},
                                status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        reason = await run_in_threadpool(trigger.not_ready)
        if reason is not None:  # e.g. a corrupt state file: every decision would be a 503
            return JSONResponse({"ready": False, "reason": reason}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
