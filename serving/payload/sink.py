"""A sink for KServe's payload logger (CloudEvents, binary mode), writing payload-log rows.

An InferenceService with ``spec.predictor.logger: {mode: all, url: http://<server>/payload-sink}``
POSTs every request and every response as a CloudEvent whose attributes travel in headers:
``Ce-Id`` (shared by a request and its response), ``Ce-Type``
(``org.kubeflow.serving.inference.request`` / ``…response``), ``Ce-Inferenceservicename``,
``Ce-Endpoint``, ``Ce-Time``. The sink pairs the two halves by ``Ce-Id`` and writes one row per
instance through the same :class:`~serving.payload.logger.PayloadLogger`. A ``Ce-Id`` follows
the request-id rule below (else a 400 naming ``ce-id``): a row whose body carries no request
id is ``<Ce-Id>-<i>``, shortened with a digest of the ``Ce-Id`` when that would pass 128.
Halves whose partner does not arrive within ``ttl_seconds``, or has not arrived when the sink
shuts down, are dropped and counted (``reason="unpaired"``).

Every value a row takes from the bodies is type-checked (a request id as the model servers
hold one: ``serving.fields.REQUEST_ID_PATTERN``, at most ``REQUEST_ID_MAX_LENGTH``
characters): a pair that does not fit is answered
``400 {"error": "<field>: <what was wrong>", "field": "<field>"}`` and writes no row. A row's
``ts`` (and so its partition) is the ``Ce-Time`` only when that lies within
``CE_TIME_MAX_PAST_SECONDS`` / ``CE_TIME_MAX_FUTURE_SECONDS`` of the receive time.

With a token (``MARQUEE_SERVING_PAYLOAD_SINK_TOKEN``) every event must carry it, as
``Authorization: Bearer <token>`` or, since KServe's logger sends no custom headers, as
``?token=<token>`` in the logger URL; otherwise ``401 {"error": "authorization: …",
"field": "authorization"}``, counted in ``marquee_serving_payload_sink_unauthorized_total``,
before the body is parsed or any half is held for pairing. (Where the route sits behind
``ServingMiddleware``, as in the sink service and a model server, a chunked body, one without
``Content-Length``, is read by the middleware first, within the route's body limit, so the 401
comes after that read; a body with ``Content-Length`` is refused before it is read.) Without
a token the sink is open, as before, and says so in a warning when it is built.

The sink service (``marquee serve --runtime payload-sink``) always serves this route; a KServe
model server mounts it only with ``MARQUEE_SERVING_PAYLOAD_SINK_ENABLED=true``
(:func:`sink_pairer`).
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from serving import metrics
from serving.fields import (
    INT64_MAX,
    REQUEST_ID_MAX_LENGTH,
    REQUEST_ID_PATTERN,
    flatten,
    indexed_request_id,
    short_repr,
)
from serving.payload import metrics as sink_metrics
from serving.payload.logger import PayloadLogger
from serving.payload.schema import payload_row

if TYPE_CHECKING:
    from serving.settings import ServingSettings

__all__ = ["SINK_PATH", "TOKEN_ENV", "CE_TIME_MAX_FUTURE_SECONDS", "CE_TIME_MAX_PAST_SECONDS",
           "SinkError", "CloudEventPairer", "rows_from_pair", "sink_router", "build_sink_app",
           "sink_pairer"]

log = logging.getLogger(__name__)

SINK_PATH = "/payload-sink"
TOKEN_ENV = "MARQUEE_SERVING_PAYLOAD_SINK_TOKEN"
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


class SinkError(ValueError):
    """A CloudEvent or pair the sink cannot use: a 400 naming ``field``, and nothing written."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


#: A ``Ce-Time`` sets a sink row's ``ts`` (and so its date/hour partition) only when it lies
#: within this window around the receive time. KServe's logger posts within seconds and retries
#: for minutes, and a replayed backlog is days old at most; a time outside the window is a
#: skewed clock or a forged header (``9999-12-31``) that would open a partition no monitoring
#: window reads, so the row gets the receive time instead.
CE_TIME_MAX_FUTURE_SECONDS = 3600.0
CE_TIME_MAX_PAST_SECONDS = 7 * 86400.0


def _ts(value: str | None, now: float | None = None) -> float:
    """Unix seconds of ``Ce-Time`` when it parses and is plausible, else the receive time."""
    now = time.time() if now is None else now
    if not value:
        return now
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if when.tzinfo is None:  # RFC 3339 requires an offset; read a missing one as UTC
            when = when.replace(tzinfo=timezone.utc)
        ts = when.timestamp()
    except (ValueError, OverflowError, OSError):
        return now
    if now - CE_TIME_MAX_PAST_SECONDS <= ts <= now + CE_TIME_MAX_FUTURE_SECONDS:
        return ts
    return now


def _dumps(obj: Any, field: str) -> str:
    try:
        return orjson.dumps(obj).decode()
    except orjson.JSONEncodeError as exc:  # e.g. nested deeper than orjson writes (254)
        raise SinkError(field, f"cannot be stored as JSON ({exc})") from None


def rows_from_pair(ce_id: str, attrs: Mapping[str, str], request: Any, response: Any
                   ) -> list[dict[str, Any]]:
    """Payload rows for one request/response pair (KServe V1 or V2 bodies).

    Every value that goes into a row is type-checked first; the first one that does not fit
    raises :class:`SinkError` naming its field, so a bad pair writes no row at all.
    """
    ts = _ts(attrs.get("ce-time"))
    variant = attrs.get("ce-endpoint") or ""
    fallback_version = attrs.get("ce-modelversion") or ""
    if isinstance(request, dict) and isinstance(response, dict) and "instances" in request:
        return _v1_rows(ce_id, ts, variant, fallback_version, request, response)
    if isinstance(request, dict) and isinstance(response, dict) and "inputs" in request:
        return _v2_rows(ce_id, ts, variant, fallback_version, request, response)
    raise SinkError("body", "expected a KServe V1 (instances/predictions) or V2 "
                    "(inputs/outputs) request and response")


def _v1_rows(ce_id: str, ts: float, variant: str, fallback_version: str,
             request: dict[str, Any], response: dict[str, Any]) -> list[dict[str, Any]]:
    instances = _list(request.get("instances"), "instances")
    if "predictions" not in response:  # an error response: nothing was answered
        return []
    preds = _list(response.get("predictions"), "predictions")
    if len(preds) != len(instances):
        raise SinkError("predictions", f"expected one per instance ({len(preds)} predictions "
                        f"for {len(instances)} instances)")
    rows = []
    for i, (inst, pred) in enumerate(zip(instances, preds, strict=True)):
        inst = _object(inst, f"instances.{i}")
        pred = _object(pred, f"predictions.{i}")
        items = _int_list(pred.get("items"), f"predictions.{i}.items", optional=True)
        scores = _number_list(pred.get("scores"), f"predictions.{i}.scores", optional=True)
        _same_length(items, scores, f"predictions.{i}.scores")
        features = pred.get("features")
        if features is not None and not isinstance(features, dict):
            raise SinkError(f"predictions.{i}.features",
                            f"expected an object or null (got {short_repr(features)})")
        rows.append(payload_row(
            request_id=_request_id(pred.get("request_id"), f"predictions.{i}.request_id")
            or indexed_request_id(ce_id, i), ts=ts,
            model_version=_str(pred.get("model_version"), f"predictions.{i}.model_version")
            or fallback_version,
            variant=variant, user_id=_int(inst.get("user_id"), f"instances.{i}.user_id"),
            k=_int(inst.get("k", 10), f"instances.{i}.k"),
            cold_start=_bool(pred.get("cold_start"), f"predictions.{i}.cold_start"),
            fallback=_bool(pred.get("fallback"), f"predictions.{i}.fallback"), status=200,
            latency_ms=None, items=items, scores=scores,
            request_json=_dumps(inst, f"instances.{i}"),
            response_json=_dumps(pred, f"predictions.{i}"), features=features))
    return rows


def _v2_rows(ce_id: str, ts: float, variant: str, fallback_version: str,
             request: dict[str, Any], response: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = _tensors(request.get("inputs"), "inputs")
    if "outputs" not in response:  # an error response: nothing was answered
        return []
    outputs = _tensors(response.get("outputs"), "outputs")
    users = _int_list(inputs.get("user_id"), "inputs.user_id.data", optional=True) or []
    n = len(users)
    ks = _int_list(inputs.get("k"), "inputs.k.data", optional=True) or [10]
    if len(ks) not in (1, n):
        raise SinkError("inputs.k.data", f"expected 1 or {n} values (got {len(ks)})")
    for k in ks:
        _int(k, "inputs.k.data")
    given_items = _int_list(outputs.get("items"), "outputs.items.data", optional=True)
    given_scores = _number_list(outputs.get("scores"), "outputs.scores.data", optional=True)
    _same_length(given_items, given_scores, "outputs.scores.data")
    all_items, all_scores = given_items or [], given_scores or []
    if n and len(all_items) % n:
        raise SinkError("outputs.items.data",
                        f"{len(all_items)} values do not split into {n} rows")
    ids = outputs.get("request_id")
    ids = _list(ids, "outputs.request_id.data") if ids is not None else []
    for j, rid in enumerate(ids):
        _request_id(rid, f"outputs.request_id.data.{j}")
    # the model servers answer both flags per user; a request that selected other outputs
    # leaves them unknown (null), never false
    cold = _bool_list(outputs.get("cold_start"), "outputs.cold_start.data", n)
    fell = _bool_list(outputs.get("fallback"), "outputs.fallback.data", n)
    version = _str(response.get("model_version"), "model_version") or fallback_version
    width = len(all_items) // n if n else 0
    rows = []
    for i, user in enumerate(users):
        items = all_items[i * width:(i + 1) * width]
        scores = all_scores[i * width:(i + 1) * width]
        kept = [j for j, x in enumerate(items) if x != -1]  # -1 pads a list shorter than k
        rows.append(payload_row(
            request_id=ids[i] if i < len(ids) and ids[i] else indexed_request_id(ce_id, i),
            ts=ts,
            model_version=version, variant=variant,
            user_id=_int(user, f"inputs.user_id.data.{i}"), k=ks[i if len(ks) == n else 0],
            cold_start=cold[i] if cold else None, fallback=fell[i] if fell else None,
            status=200, latency_ms=None,
            items=[items[j] for j in kept],
            scores=[scores[j] for j in kept] if scores else scores,
            request_json=_dumps({"user_id": user}, f"inputs.user_id.data.{i}"),
            response_json=_dumps({"items": items, "scores": scores}, "outputs"),
            features=None))
    return rows


# Type checks: each returns the value it accepts or raises SinkError naming the field ------------
def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise SinkError(field, f"expected a list (got {short_repr(value)})")
    return value


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SinkError(field, f"expected an object (got {short_repr(value)})")
    return value


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT64_MAX:
        raise SinkError(field, f"expected an integer in 1..2^63-1 (got {short_repr(value)})")
    return value


def _str(value: Any, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise SinkError(field, f"expected a string (got {short_repr(value)})")
    return value


_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


def _request_id(value: Any, field: str) -> str | None:
    """A request id as the model servers hold one (``serving.fields``): at most
    ``REQUEST_ID_MAX_LENGTH`` printable characters of ``REQUEST_ID_PATTERN``; None or empty
    when not given (the row then gets the CloudEvent's id)."""
    value = _str(value, field)
    if not value:
        return value
    if len(value) > REQUEST_ID_MAX_LENGTH:
        raise SinkError(field, f"expected at most {REQUEST_ID_MAX_LENGTH} characters (got "
                        f"{len(value)}: {short_repr(value)})")
    if not _REQUEST_ID.fullmatch(value):
        raise SinkError(field, f"expected letters, digits and . _ : - only (got "
                        f"{short_repr(value)})")
    return value


def _bool(value: Any, field: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise SinkError(field, f"expected true, false or null (got {short_repr(value)})")
    return value


def _bool_list(value: Any, field: str, n: int) -> list[bool] | None:
    """A V2 output of one boolean per user, or None when the response does not carry it."""
    flat = _flat(value, field, optional=True)
    if flat is None:
        return None
    if len(flat) != n:
        raise SinkError(field, f"expected {n} values (got {len(flat)})")
    for x in flat:
        _bool(x, field)
    return flat


def _flat(value: Any, field: str, optional: bool) -> list[Any] | None:
    """A list, nested lists flattened (V2 ``data`` may be nested to the tensor's shape)."""
    if value is None and optional:
        return None
    return flatten(_list(value, field))


def _int_list(value: Any, field: str, *, optional: bool = False) -> list[int] | None:
    flat = _flat(value, field, optional)
    if flat is None:
        return None
    for x in flat:
        if isinstance(x, bool) or not isinstance(x, int) or not -INT64_MAX - 1 <= x <= INT64_MAX:
            raise SinkError(field, f"expected 64-bit integers (got {short_repr(x)})")
    return flat


def _number_list(value: Any, field: str, *, optional: bool = False) -> list[float] | None:
    flat = _flat(value, field, optional)
    if flat is None:
        return None
    out = []
    for x in flat:
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise SinkError(field, f"expected numbers (got {short_repr(x)})")
        try:
            out.append(float(x))
        except OverflowError:
            raise SinkError(field, "expected numbers within float64 "
                            f"(got {short_repr(x)})") from None
    return out


def _same_length(items: list[int] | None, scores: list[float] | None, field: str) -> None:
    if items is not None and scores is not None and len(items) != len(scores):
        raise SinkError(field, f"expected one score per item ({len(scores)} scores for "
                        f"{len(items)} items)")


def _tensors(value: Any, field: str) -> dict[str, Any]:
    """``{name: data}`` of a V2 ``inputs``/``outputs`` list."""
    out: dict[str, Any] = {}
    for i, t in enumerate(_list(value, field)):
        t = _object(t, f"{field}.{i}")
        name = t.get("name")
        if not isinstance(name, str):
            raise SinkError(f"{field}.{i}.name", f"expected a string (got {short_repr(name)})")
        out[name] = t.get("data")
    return out


class _Half(NamedTuple):
    """One event of a pair, held until the other arrives."""

    received: float  # time.monotonic()
    ce_type: str
    headers: dict[str, str]
    payload: Any
    size: int  # bytes of the body


class CloudEventPairer:
    """Holds one half of each pair until the other arrives (bounded, with a time limit)."""

    def __init__(self, logger: PayloadLogger, ttl_seconds: float = 60.0,
                 max_pending: int = 10_000, max_pending_bytes: int = 256 * 1024 * 1024) -> None:
        self._logger = logger
        self._ttl = ttl_seconds
        self._max = max_pending
        # bodies of up to 8 MiB each: without a byte bound, 10,000 halves could hold 80 GB
        self._max_bytes = max_pending_bytes
        self._bytes = 0
        self._pending: OrderedDict[str, _Half] = OrderedDict()
        self._lock = threading.Lock()

    def accept(self, headers: Mapping[str, str], body: bytes) -> int:
        """Take one event; return the number of rows written (0 while waiting for its pair)."""
        h = {k.lower(): v for k, v in headers.items()}
        ce_id = h.get("ce-id")
        ce_type = h.get("ce-type")
        if not ce_id:
            raise SinkError("ce-id", "header missing (CloudEvents binary mode)")
        _request_id(ce_id, "ce-id")  # it names the rows whose bodies carry no request id
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
            if other is not None:
                self._bytes -= other.size
            if other is None or other.ce_type == ce_type:
                self._pending[ce_id] = _Half(now, ce_type, h, payload, len(body))
                self._bytes += len(body)
                self._expire(now)  # the count and the byte bound, with this half in
                return 0
        attrs = {**other.headers, **h}
        if ce_type == REQUEST_TYPE:
            request, response = payload, other.payload
        else:
            request, response = other.payload, payload
        rows = rows_from_pair(ce_id, attrs, request, response)
        for row in rows:
            self._logger.log(row)
        return len(rows)

    def _expire(self, now: float) -> None:
        """Drop the oldest halves past the time limit, the count or the byte bound."""
        while self._pending:
            oldest_id, oldest = next(iter(self._pending.items()))
            if (now - oldest.received <= self._ttl and len(self._pending) <= self._max
                    and self._bytes <= self._max_bytes):
                break
            self._bytes -= self._pending.pop(oldest_id).size
            metrics.PAYLOG_DROPPED.labels("unpaired").inc()

    def close(self) -> int:
        """The process is stopping: every half still waiting for its pair is dropped, counted
        (``reason="unpaired"``) and named in an error line, as the time limit would; how many."""
        with self._lock:
            n = len(self._pending)
            self._pending.clear()
            self._bytes = 0
        if n:
            metrics.PAYLOG_DROPPED.labels("unpaired").inc(n)
            log.error("payload sink: %d unpaired events dropped at shutdown (their pair had "
                      "not arrived); their rows are not written", n)
        return n

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """Bytes of the bodies of the halves waiting for their pair."""
        return self._bytes


def _presented_token(request: Request) -> str | None:
    """The token a request carries: the ``Authorization: Bearer`` header when there is one,
    else the ``token`` query parameter (KServe's logger URL); None when neither is given."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    return request.query_params.get("token")


def _refusal(request: Request, expected: bytes) -> str | None:
    """Why the request may not write (``missing`` or ``wrong``), or None when it may."""
    presented = _presented_token(request)
    if presented is None:
        return "missing"
    if not hmac.compare_digest(presented.encode(), expected):
        return "wrong"
    return None


def _unauthorized(reason: str) -> JSONResponse:
    sink_metrics.SINK_UNAUTHORIZED.labels(reason).inc()
    what = ("missing token" if reason == "missing" else "wrong token")
    return JSONResponse(
        {"error": f"authorization: {what} (send Authorization: Bearer <token>, or ?token=<token> "
                  "in the logger URL)", "field": "authorization"},
        status_code=401, headers={"WWW-Authenticate": "Bearer"})


def sink_router(pairer: CloudEventPairer, token: str | None = None) -> APIRouter:
    """``POST /payload-sink``; with ``token``, only for requests that carry it."""
    router = APIRouter()
    expected = token.encode() if token else None
    if expected is None:
        log.warning("%s is unauthenticated: anyone who can reach it can write payload-log "
                    "rows (which feed drift detection); set %s", SINK_PATH, TOKEN_ENV)

    @router.post(SINK_PATH, status_code=202)
    async def payload_sink(request: Request) -> JSONResponse:
        if expected is not None and (reason := _refusal(request, expected)) is not None:
            return _unauthorized(reason)
        body = await request.body()
        try:
            rows = pairer.accept(request.headers, body)
        except SinkError as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        return JSONResponse({"rows": rows}, status_code=202)

    return router


def build_sink_app(pairer: CloudEventPairer, token: str | None = None) -> FastAPI:
    """A standalone sink service (the logger is closed by the caller on shutdown)."""
    app = FastAPI(title="marquee payload sink", docs_url=None, redoc_url=None)
    app.include_router(sink_router(pairer, token))
    return app


def sink_pairer(serving: ServingSettings, payload: PayloadLogger | None) -> CloudEventPairer | None:
    """The pairer behind a model server's own ``POST /payload-sink``, or None to mount no sink.

    Only when ``serving.payload_sink_enabled`` and a payload logger exists: by default nothing
    posts there (the model server writes its own payload log), and an open route would let
    anyone who reaches the server write the rows that drift detection judges."""
    if not serving.payload_sink_enabled or payload is None:
        return None
    return CloudEventPairer(payload)
