"""A sink for KServe's payload logger (CloudEvents, binary mode), writing payload-log rows.

An InferenceService with ``spec.predictor.logger: {mode: all, url: http://<server>/payload-sink}``
POSTs every request and every response as a CloudEvent whose attributes travel in headers:
``Ce-Id`` (shared by a request and its response), ``Ce-Type``
(``org.kubeflow.serving.inference.request`` / ``…response``), ``Ce-Inferenceservicename``,
``Ce-Endpoint``, ``Ce-Time``. The sink pairs the two halves by ``Ce-Id`` and writes one row per
instance through the same :class:`~serving.payload.logger.PayloadLogger`. Halves whose partner
does not arrive within ``ttl_seconds`` are dropped and counted (``reason="unpaired"``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from serving import metrics
from serving.payload.logger import PayloadLogger
from serving.payload.schema import payload_row

__all__ = ["SINK_PATH", "CloudEventPairer", "sink_router", "build_sink_app"]

SINK_PATH = "/payload-sink"
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


class SinkError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _ts(value: str | None) -> float:
    if value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def rows_from_pair(ce_id: str, attrs: Mapping[str, str], request: Any, response: Any
                   ) -> list[dict[str, Any]]:
    """Payload rows for one request/response pair (KServe V1 or V2 bodies)."""
    ts = _ts(attrs.get("ce-time"))
    variant = attrs.get("ce-endpoint") or ""
    fallback_version = attrs.get("ce-modelversion") or ""
    rows = []
    if isinstance(request, dict) and isinstance(response, dict) and "instances" in request:
        instances = request.get("instances") or []
        preds = response.get("predictions") or []
        for i, (inst, pred) in enumerate(zip(instances, preds, strict=False)):
            inst = inst if isinstance(inst, dict) else {}
            pred = pred if isinstance(pred, dict) else {}
            rows.append(payload_row(
                request_id=str(pred.get("request_id") or f"{ce_id}-{i}"), ts=ts,
                model_version=str(pred.get("model_version") or fallback_version),
                variant=variant, user_id=_int(inst.get("user_id")), k=_int(inst.get("k", 10)),
                cold_start=pred.get("cold_start"), fallback=pred.get("fallback"), status=200,
                latency_ms=None, items=pred.get("items"), scores=pred.get("scores"),
                request_json=_dumps(inst), response_json=_dumps(pred),
                features=pred.get("features")))
        return rows
    if isinstance(request, dict) and isinstance(response, dict) and "inputs" in request:
        inputs = {t.get("name"): t.get("data") for t in request.get("inputs") or []
                  if isinstance(t, dict)}
        outputs = {t.get("name"): t.get("data") for t in response.get("outputs") or []
                   if isinstance(t, dict)}
        users = inputs.get("user_id") or []
        ks = inputs.get("k") or [10] * len(users)
        version = str(response.get("model_version") or fallback_version)
        n = len(users)
        width = (len(outputs.get("items") or []) // n) if n else 0
        for i, user in enumerate(users):
            items = (outputs.get("items") or [])[i * width:(i + 1) * width]
            scores = (outputs.get("scores") or [])[i * width:(i + 1) * width]
            ids = outputs.get("request_id") or []
            rows.append(payload_row(
                request_id=str(ids[i] if i < len(ids) else f"{ce_id}-{i}"), ts=ts,
                model_version=version, variant=variant, user_id=_int(user),
                k=_int(ks[i] if i < len(ks) else None), cold_start=None, fallback=None,
                status=200, latency_ms=None, items=[x for x in items if x != -1],
                scores=scores, request_json=_dumps({"user_id": user}),
                response_json=_dumps({"items": items, "scores": scores}), features=None))
        return rows
    raise SinkError("body", "expected a KServe V1 (instances/predictions) or V2 "
                    "(inputs/outputs) request and response")


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


class CloudEventPairer:
    """Holds one half of each pair until the other arrives (bounded, with a time limit)."""

    def __init__(self, logger: PayloadLogger, ttl_seconds: float = 60.0,
                 max_pending: int = 10_000) -> None:
        self._logger = logger
        self._ttl = ttl_seconds
        self._max = max_pending
        self._pending: OrderedDict[str, tuple[float, str, dict[str, str], Any]] = OrderedDict()
        self._lock = threading.Lock()

    def accept(self, headers: Mapping[str, str], body: bytes) -> int:
        """Take one event; return the number of rows written (0 while waiting for its pair)."""
        h = {k.lower(): v for k, v in headers.items()}
        ce_id = h.get("ce-id")
        ce_type = h.get("ce-type")
        if not ce_id:
            raise SinkError("ce-id", "header missing (CloudEvents binary mode)")
        if ce_type not in (REQUEST_TYPE, RESPONSE_TYPE):
            raise SinkError("ce-type", f"expected {REQUEST_TYPE} or {RESPONSE_TYPE}, "
                            f"got {ce_type!r}")
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError as exc:
            raise SinkError("body", f"malformed JSON ({exc})") from None
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            other = self._pending.pop(ce_id, None)
            if other is None or other[1] == ce_type:
                self._pending[ce_id] = (now, ce_type, h, payload)
                return 0
        _, other_type, other_h, other_payload = other
        if ce_type == REQUEST_TYPE:
            request, response, attrs = payload, other_payload, {**other_h, **h}
        else:
            request, response, attrs = other_payload, payload, {**other_h, **h}
        rows = rows_from_pair(ce_id, attrs, request, response)
        for row in rows:
            self._logger.log(row)
        return len(rows)

    def _expire(self, now: float) -> None:
        while self._pending:
            oldest_id, (t, *_rest) = next(iter(self._pending.items()))
            if now - t <= self._ttl and len(self._pending) < self._max:
                break
            self._pending.pop(oldest_id)
            metrics.PAYLOG_DROPPED.labels("unpaired").inc()

    @property
    def pending(self) -> int:
        return len(self._pending)


def sink_router(pairer: CloudEventPairer) -> APIRouter:
    router = APIRouter()

    @router.post(SINK_PATH, status_code=202)
    async def payload_sink(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            rows = pairer.accept(request.headers, body)
        except SinkError as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        return JSONResponse({"rows": rows}, status_code=202)

    return router


def build_sink_app(pairer: CloudEventPairer) -> FastAPI:
    """A standalone sink service (the logger is closed by the caller on shutdown)."""
    app = FastAPI(title="marquee payload sink", docs_url=None, redoc_url=None)
    app.include_router(sink_router(pairer))
    return app
