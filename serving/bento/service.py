"""The recommender as a BentoML service, on the same runtime and handler as KServe.

``bentoml serve serving.bento.service:MovieRecommender`` (what ``marquee serve --runtime
bentoml`` runs) loads the model version named by ``MARQUEE_SERVING_*`` (see
``serving.settings``) in the worker's ``__init__``, so the worker is ready only after the
bundle is verified and the index built. ``marquee serve`` resolves an alias or version to a
bundle URI before it starts BentoML, so a bad reference fails there and not in a worker that
BentoML would restart forever.

The HTTP API is a small Starlette app mounted on the service, not ``@bentoml.api`` methods:
the raw body goes through the validation KServe uses (:func:`serving.runtime.schema.parse_v1`),
so both runtimes answer the same request with the same status and body:

* ``POST /v1/models/movie-recommender:predict`` with ``{"instances": [...]}`` (KServe V1);
  the ``x-request-id`` header is the request id when given (checked like the body's
  ``request_id``), else one is generated;
* ``POST /v2/models/movie-recommender/infer`` (Open Inference, JSON): the body is validated
  by KServe's own V2 request model and the inputs by the KServe runtime's checks, and the
  response has the same outputs (``items``, ``scores``, ``cold_start``, ``fallback``,
  ``request_id``; a request's ``outputs`` selects some by name), so a V2 client gets the same
  answer from either runtime; the binary data extension is refused (a 400 naming
  ``inference-header-content-length``);
* ``GET /v2/models/movie-recommender``: the model's V2 metadata (inputs and outputs), as the
  KServe runtime answers it;
* ``GET /marquee/model``, ``GET /``, ``GET /metrics`` and KServe's health and readiness
  paths (``/v2/health/live``, ``/v2/health/ready``, ``/v1/models/movie-recommender``,
  ``/v2/models/movie-recommender/ready``), its model lists (``GET /v1/models``,
  ``/v2/models``) and server metadata (``GET /v2``, naming BentoML);
* a model path naming another model is KServe's 404 ``model_not_found`` naming ``model``
  (a V2 infer body is validated first, as KServe's FastAPI route does);
* every 4xx is ``{"error": "<field>: <message>", "code": ..., "field": ...}`` (an unknown path
  is a 404 naming ``path``, a known path with another method a 405 naming ``method``) and is
  logged in one line at INFO.

BentoML's own HTTP metrics are off (``metrics={"enabled": False}``): they label requests by
raw path, so any client could add series. ``/metrics`` serves the ``marquee_serving_*``
metrics, whose ``route`` label comes from a fixed set.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from typing import Any

import bentoml
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from serving.bento.shutdown import DrainRefuser, listening_socket
from serving.errors import BadRequest, ModelNotFound, ServingError, error_body
from serving.runtime.middleware import ServingMiddleware, route_of
from serving.runtime.schema import decode_v2_json, parse_v1, request_id_from

__all__ = ["MovieRecommender", "http_app"]

log = logging.getLogger(__name__)

MODEL_NAME = "movie-recommender"
#: A ``bentoml serve`` worker that cannot load its model exits with this code.
EXIT_LOAD_FAILED = 3
_BINARY_HEADER = "inference-header-content-length"

# Content types KServe decodes as JSON itself (``kserve.protocol.dataplane.JSON_HEADERS``):
# its message for a malformed body differs between these and any other content type.
_JSON_TYPES = ("application/json", "application/cloudevents+json", "application/ld+json")


# Set by the worker's service instance; read by the middleware of the same worker.
_LOADED: dict[str, Any] = {"version": "", "variant": "", "max_body_bytes": 65536}


def _json(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, headers=headers,
                    media_type="application/json")


def _decode(body: bytes, content_type: str | None) -> Any:
    """The JSON body, or a 400 with the message KServe gives for the same bytes."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if content_type is None or content_type in _JSON_TYPES:
            raise BadRequest(f"body: Unrecognized request format: {exc}", field="body") from None
        raise BadRequest(f"body: malformed JSON ({exc})", field="body") from None


def _decode_v2(body: bytes) -> Any:
    """A V2 body decoded as KServe's V2 endpoint decodes it, and a 400 naming the body with
    the same message when it is not JSON."""
    try:
        return decode_v2_json(body)
    except ValueError as exc:
        raise BadRequest(f"body: {exc}", field="body") from None


def request_id_of(headers: Any) -> str | None:
    """The ``x-request-id`` header if it passes the ``request_id`` rule, None if absent."""
    return request_id_from(headers.get("x-request-id"), "x-request-id")


def _error(request: Request, exc: ServingError, status: int | None = None,
           headers: dict[str, str] | None = None) -> Response:
    """The contract's error body; one log line (INFO for a 4xx, WARNING for a 5xx)."""
    status = status or exc.status_code
    try:
        request_id = request_id_of(request.headers) or "-"
    except BadRequest:
        request_id = "-"  # not echoed: it is what was refused
    log.log(logging.INFO if status < 500 else logging.WARNING,
            "%d %s %s: %s (request_id=%s model_version=%s variant=%s)", status, request.method,
            route_of(request.url.path), exc.message, request_id, _LOADED["version"],
            _LOADED["variant"])
    return _json(error_body(exc), status, headers)


def _log_refused(method: str, path: str) -> None:
    """The one log line of a request refused because the worker is shutting down."""
    log.info("503 %s %s: server shutting down (model_version=%s variant=%s)", method,
             route_of(path), _LOADED["version"], _LOADED["variant"])


def _instance() -> MovieRecommender:
    return bentoml.get_current_service()


def _check_model(request: Request) -> None:
    """The 404 KServe gives for a path naming a model other than the one served."""
    name = request.path_params.get("name", MODEL_NAME)
    if name != MODEL_NAME:
        from kserve.errors import ModelNotFound as KServeModelNotFound

        raise ModelNotFound(f"model: {KServeModelNotFound(name)}", field="model")


def _internal_error(route: str) -> Response:
    """A 500 for a bug on ``route``, its traceback logged (call it from an ``except``)."""
    log.exception("500 POST %s (model_version=%s variant=%s)", route, _LOADED["version"],
                  _LOADED["variant"])
    return _json(error_body(ServingError("internal error: see the server log")), 500)


async def predict(request: Request) -> Response:
    """KServe V1 predict: the body validated as KServe does, predictions from the service."""
    started = time.perf_counter()
    service = _instance().service
    try:
        _check_model(request)
        body = _decode(await request.body(), request.headers.get("content-type"))
        instances = parse_v1(body, service.max_instances).instances
        preds = await service.predict(instances, request_id_of(request.headers), started)
    except ServingError as exc:
        return _error(request, exc)
    except Exception:  # a bug, not a bad request: the traceback belongs in the log
        return _internal_error("v1_predict")
    return _json({"predictions": preds})


async def infer_v2(request: Request) -> Response:
    """Open Inference (V2) infer, as the KServe runtime answers it: KServe's request model,
    the KServe runtime's input checks (:mod:`serving.kserve.model`) and response encoding."""
    from kserve import InferRequest
    from kserve.protocol.rest.v2_datamodels import InferenceRequest, InferenceResponse
    from pydantic import ValidationError

    from serving.kserve.model import _Parsed, _Result, _v2_instances, _v2_response, v2_outputs

    started = time.perf_counter()
    service = _instance().service
    try:
        if request.headers.get(_BINARY_HEADER) is not None:
            _check_model(request)
            raise BadRequest(f"{_BINARY_HEADER}: the binary data extension is not served by "
                             "the BentoML runtime; send the tensors as JSON",
                             field=_BINARY_HEADER)
        body = _decode_v2(await request.body())
        try:
            parsed = InferenceRequest.model_validate(body)
        except ValidationError as exc:  # as KServe's FastAPI validation: a 422 naming the field
            err = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in err["loc"]) or "body"
            return _error(request, BadRequest(f"{field}: {err['msg']}", field=field), 422)
        _check_model(request)
        infer = InferRequest.from_inference_request(parsed, MODEL_NAME)
        instances = _v2_instances(infer, service.max_instances)
        v2_id = request_id_from(infer.id, "id")
        outputs = v2_outputs(infer)
        preds = await service.predict(instances, request_id_of(request.headers) or v2_id,
                                      started)
    except ServingError as exc:
        return _error(request, exc)
    except Exception:  # a bug, not a bad request: the traceback belongs in the log
        return _internal_error("v2_infer")
    response = _v2_response(MODEL_NAME, service.version,
                            _Result(_Parsed("v2", instances, started, v2_id, outputs), preds))
    rest, _ = response.to_rest()
    # KServe answers with its pydantic response model: the same fields, unset ones as null.
    return _json(InferenceResponse.model_validate(rest).model_dump(mode="json"))


async def model_info(_: Request) -> Response:
    rt = _instance().service.runtime
    return _json({"ready": True, "name": MODEL_NAME, "model_version": rt.version,
                  "bundle_uri": rt.bundle_uri, "n_items": rt.n_items,
                  "candidates": rt.candidates, "index": rt.index_report.as_dict()})


async def v2_model_metadata(request: Request) -> Response:
    """The model's Open Inference metadata, as KServe's ``GET /v2/models/<name>`` answers."""
    from serving.kserve.model import V2_INPUTS, V2_OUTPUTS

    try:
        _check_model(request)
    except ServingError as exc:
        return _error(request, exc)
    return _json({"name": MODEL_NAME, "versions": None, "platform": "",
                  "inputs": list(V2_INPUTS), "outputs": list(V2_OUTPUTS)})


async def alive(_: Request) -> Response:
    return _json({"status": "alive"})


async def server_metadata(_: Request) -> Response:
    """Open Inference server metadata (``GET /v2``): this server's name and version, and no
    extensions (KServe's model repository is not served by either runtime)."""
    return _json({"name": "bentoml", "version": bentoml.__version__, "extensions": []})


async def models(_: Request) -> Response:
    """The served models (KServe's ``GET /v1/models`` and ``GET /v2/models``)."""
    return _json({"models": [MODEL_NAME]})


async def kserve_health(request: Request) -> Response:
    """KServe's V1/V2 health and readiness answers (routes exist once the model is loaded),
    so a client's or probe's readiness check works on either runtime."""
    path = request.url.path
    if path == "/v2/health/live":
        return _json({"live": True})
    if path == "/v2/health/ready":
        return _json({"ready": True})
    try:
        _check_model(request)
    except ServingError as exc:
        return _error(request, exc)
    return _json({"name": MODEL_NAME, "ready": True})


async def metrics(_: Request) -> Response:
    """The process's Prometheus metrics (every worker's, under ``bentoml serve``)."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # set by ``bentoml serve`` for its workers
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def not_found(request: Request) -> Response:
    """Any other path: 405 if a route has the path with another method, else 404."""
    methods = {m for route in request.app.router.routes
               if isinstance(route, Route) and route.endpoint is not not_found
               and route.matches(request.scope)[0] is Match.PARTIAL for m in route.methods or ()}
    if methods:
        raise HTTPException(405, headers={"Allow": ", ".join(sorted(methods))})
    raise HTTPException(404)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    field = {404: "path", 405: "method"}.get(exc.status_code, "body")
    return _error(request, BadRequest(f"{field}: {exc.detail}", field=field), exc.status_code,
                  exc.headers)


def http_app() -> Starlette:
    """The service's HTTP API (mounted at ``/`` after BentoML's ``/readyz``, ``/livez``)."""
    return Starlette(
        routes=[Route("/v1/models/{name}:predict", predict, methods=["POST"]),
                Route("/v2/models/{name}/infer", infer_v2, methods=["POST"]),
                Route("/marquee/model", model_info, methods=["GET"]),
                Route("/v2/models/{name}", v2_model_metadata, methods=["GET"]),
                Route("/metrics", metrics, methods=["GET"]),
                Route("/", alive, methods=["GET"]),
                Route("/v2", server_metadata, methods=["GET"]),
                *(Route(path, models, methods=["GET"]) for path in ("/v1/models", "/v2/models")),
                *(Route(path, kserve_health, methods=["GET"]) for path in (
                    "/v2/health/live", "/v2/health/ready", "/v1/models/{name}",
                    "/v2/models/{name}/ready")),
                Route("/{path:path}", not_found,
                      methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])],
        exception_handlers={HTTPException: _http_exception})


@bentoml.service(
    name=MODEL_NAME,
    workers=1,
    traffic={"timeout": 30},
    logging={"access": {"enabled": False}},
    metrics={"enabled": False},
)
@bentoml.asgi_app(http_app(), path="/")
class MovieRecommender:
    def __init__(self) -> None:
        from marquee.errors import redact_uri
        from marquee.settings import Settings
        from serving.runtime.loader import build_service, log_serving, open_payload_logger
        from serving.settings import ServingSettings

        logging.getLogger("serving").setLevel(logging.INFO)  # BentoML's root handler prints it
        settings = Settings()
        serving = ServingSettings()
        self.payload = open_payload_logger(settings, serving)
        try:
            self.service = build_service(settings, serving, self.payload)
        except Exception as exc:
            # one line naming the cause; ``marquee serve`` turned BentoML's restarts off, so
            # the server exits non-zero instead of looping
            log.error("cannot load the model: %s: %s", type(exc).__name__,
                      redact_uri(str(exc)))
            if self.payload is not None:
                self.payload.close()
            if bentoml.server_context.worker_index is None:  # in process (a test client)
                raise
            # a ``bentoml serve`` worker: exit here, with that line as the whole story. A
            # raise was logged with its traceback twice more (BentoML's "Initializing
            # service error", then uvicorn's "startup failed" repeating it); BentoML's
            # arbiter still ends with its own "No active process found for watcher".
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(EXIT_LOAD_FAILED)
        log_serving(self.service.runtime, MODEL_NAME, serving.host or settings.bind_host,
                    serving.port, "BentoML")
        self.port = serving.port
        self.refuser: DrainRefuser | None = None  # set by the startup hook in a worker
        importlib.import_module("serving.kserve.model")  # V2's codec: now, not on a request
        _LOADED.update(version=self.service.version, variant=serving.variant,
                       max_body_bytes=serving.max_body_bytes)

    @bentoml.on_startup
    def refuse_new_requests_while_draining(self) -> None:
        """In a ``bentoml serve`` worker: a request that arrives after SIGTERM gets a 503 at
        once, instead of hanging until the server exits (see :mod:`serving.bento.shutdown`)."""
        if bentoml.server_context.worker_index is None:  # in process (a test client)
            return
        sock = listening_socket(self.port)
        if sock is None:
            log.warning("no listening socket on port %d in this worker: a request that "
                        "arrives during the shutdown waits until the server exits", self.port)
            return
        refuser = DrainRefuser(sock, max_body_bytes=_LOADED["max_body_bytes"],
                               on_refused=_log_refused)
        if refuser.install():
            self.refuser = refuser
        else:
            sock.close()

    @bentoml.on_shutdown
    def flush_payload_logs(self) -> None:
        """After the requests in flight finished: their payload rows written, then no more
        503s (the worker exits next)."""
        if self.payload is not None:
            self.payload.close()
        if self.refuser is not None:
            self.refuser.close()


MovieRecommender.add_asgi_middleware(
    ServingMiddleware, max_body_bytes=lambda: _LOADED["max_body_bytes"],
    version=lambda: _LOADED["version"], variant=lambda: _LOADED["variant"])
