"""``kserve.ModelServer`` bound to the configured address, with Marquee's HTTP extras.

KServe 0.21 hard-codes ``host="0.0.0.0"`` in its REST server and starts gRPC on ``[::]``.
:class:`MarqueeModelServer` keeps KServe's data plane, V1/V2 endpoints and exception handlers
but runs uvicorn with :class:`BoundConfig` (a ``uvicorn.Config`` that binds the configured
host), leaves gRPC off unless asked, and adds:

* a V2 request in the binary data extension (``inference-header-content-length``) whose
  header or binary part does not fit is a 400 naming the body (KServe: a 500 and a traceback);
* a V2 body of JSON sent without a JSON content type is read as JSON, as V1 and the BentoML
  runtime read it (KServe: a 400 asking for the binary extension's header);
* gRPC (``enable_grpc``) on the same configured host, not ``[::]``, without the model
  repository's load/unload (UNIMPLEMENTED, as their REST routes are 404s), messages limited
  to ``max_body_bytes`` (RESOURCE_EXHAUSTED naming the sizes), and a bad request answered
  INVALID_ARGUMENT naming the field (KServe answered INTERNAL and logged a traceback);
* a body-size limit (413) and per-route request/error counters (``marquee_serving_*``),
  gRPC calls counted too (``route`` ``grpc_infer`` or ``grpc_other``, ``code`` the HTTP
  status of the gRPC status, as :func:`_grpc_code` maps one to the other), including a
  message over the limit (413) and a method the server has not (``grpc_other`` 501);
* handlers that turn every validation failure into a 4xx naming the field;
* ``POST /payload-sink`` (KServe's CloudEvents payload logger, bodies up to the sink
  service's 8 MiB; only when given a ``pairer``,
  which ``serving.payload.sink.sink_pairer`` gives only with ``payload_sink_enabled``; with
  ``sink_token`` only for requests that carry it) and ``GET /marquee/model``
  (loaded version, bundle and the index report with its measured recall).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

import kserve
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, ORJSONResponse
from grpc_interceptor import AsyncServerInterceptor
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.rest.server import RESTServer, _RefreshingServer
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import metrics
from serving.errors import ServingError, error_body
from serving.kserve.model import RecommenderModel
from serving.payload.service import SINK_MAX_BODY_BYTES
from serving.payload.sink import CloudEventPairer, sink_router
from serving.runtime.loader import log_serving
from serving.runtime.middleware import ServingMiddleware
from serving.runtime.schema import decode_v2_json

__all__ = ["BoundConfig", "MarqueeModelServer"]

log = logging.getLogger(__name__)


# KServe routes this server does not serve, as (method, path): the model repository extension
# (anyone who can reach the server could unload its one model, for good: it cannot be loaded
# back, and /v2/health/ready stays true), explanations (no explainer) and model versions
# (KServe answers versioned inference, metadata and readiness with a 501 and logs a traceback
# at ERROR on every request). Each is a 404 naming the path, as on the BentoML runtime.
_UNSERVED_ROUTES = frozenset({
    ("POST", "/v2/repository/models/{model_name}/load"),
    ("POST", "/v2/repository/models/{model_name}/unload"),
    ("POST", "/v1/models/{model_name}:explain"),
    ("POST", "/v2/models/{model_name}/versions/{model_version}/infer"),
    ("GET", "/v2/models/{model_name}/versions/{model_version}"),
    ("GET", "/v2/models/{model_name}/versions/{model_version}/ready"),
})


class BoundConfig(uvicorn.Config):
    """A ``uvicorn.Config`` that always binds ``bind_host`` (KServe passes ``0.0.0.0``)."""

    def __init__(self, app: Any, *, bind_host: str, **kwargs: Any) -> None:
        kwargs.pop("host", None)
        super().__init__(app, host=bind_host, **kwargs)


async def _unserved(request: Request) -> None:
    raise StarletteHTTPException(404)


async def _serving_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServingError)
    return JSONResponse(error_body(exc), status_code=exc.status_code)


async def _invalid_input(_: Request, exc: Exception) -> JSONResponse:
    msg = str(exc)
    field = "body"
    return JSONResponse({"error": f"{field}: {msg}", "code": "bad_request", "field": field},
                        status_code=400)


def _json_position(doc: Any, pos: Any) -> str:
    """``line L, column C (character P)`` of a JSON decode error in ``doc`` (1-based)."""
    if not isinstance(pos, int) or not isinstance(doc, str):
        return f"character {pos}"
    line = doc.count("\n", 0, pos) + 1
    column = pos - (doc.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column} (character {pos})"


async def _request_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    if first.get("type") == "json_invalid":  # FastAPI puts the offset where a field would be
        loc = tuple(first.get("loc", ()))
        where = _json_position(exc.body, loc[-1] if loc else None)
        reason = (first.get("ctx") or {}).get("error") or first.get("msg")
        return JSONResponse({"error": f"body: not valid JSON at {where}: {reason}",
                             "code": "bad_request", "field": "body"}, status_code=400)
    loc = [str(p) for p in first.get("loc", ())
           if p not in ("body", "InferenceRequest", "bytes")] or ["body"]
    field = ".".join(loc)
    return JSONResponse({"error": f"{field}: {first.get('msg')}", "code": "bad_request",
                         "field": field}, status_code=422)


async def _model_not_found(request: Request, exc: Exception) -> JSONResponse:
    """A request for a model this server does not hold: the contract's 404, logged in one
    line (KServe's own handler logs each at ERROR with a traceback: anyone could flood it)."""
    log.info("404 %s %s: %s", request.method, request.url.path[:120], exc)
    return JSONResponse({"error": f"model: {exc}", "code": "model_not_found", "field": "model"},
                        status_code=404)


async def _http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    field = {404: "path", 405: "method"}.get(exc.status_code, "body")
    return JSONResponse({"error": f"{field}: {exc.detail}", "code": "bad_request",
                         "field": field}, status_code=exc.status_code, headers=exc.headers)


def _v2_json(body: bytes) -> Any:
    """A V2 body of JSON that came without a JSON content type (``curl -d``, a client that
    sets none), as KServe's V2 model reads a JSON one: InvalidInput (400) when it is no JSON,
    RequestValidationError (422 naming the field) when it is no V2 request; the messages are
    the BentoML runtime's for the same bytes."""
    from kserve.protocol.rest.v2_datamodels import InferenceRequest
    from pydantic import ValidationError

    try:
        doc = decode_v2_json(body)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    try:
        return InferenceRequest.model_validate(doc)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


class _DataPlane(DataPlane):
    """KServe's data plane; a malformed request of the V2 binary data extension is InvalidInput
    (a 400 naming the body), not the ValueError, KeyError or struct.error KServe lets out; a V2
    body of JSON without a JSON content type (and without the extension's header) is read as
    JSON, as V1 bodies are and as the BentoML runtime reads them (KServe refused it with a 400
    about the extension's header)."""

    def metadata(self) -> dict[str, Any]:
        """KServe's server metadata without ``model_repository_extension``: its routes are
        404s here (``_UNSERVED_ROUTES``), so a client must not be told they exist."""
        meta = dict(super().metadata())
        meta["extensions"] = [e for e in meta.get("extensions", [])
                              if e != "model_repository_extension"]
        return meta

    def decode_inference_request(self, body: Any, headers: Any, model_name: str) -> Any:
        if not isinstance(body, bytes):
            return super().decode_inference_request(body, headers, model_name)
        if (headers or {}).get(INFERENCE_CONTENT_LENGTH_HEADER) is None:
            return super().decode_inference_request(_v2_json(body), headers, model_name)
        try:
            return super().decode_inference_request(body, headers, model_name)
        except InvalidInput:
            raise
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, struct.error) as exc:
            what = f"field {exc} missing" if isinstance(exc, KeyError) else str(exc)[:200]
            raise InvalidInput(f"not a valid request of the binary data extension (the "
                               f"{INFERENCE_CONTENT_LENGTH_HEADER} header, the JSON part and "
                               f"each input's binary_data_size must fit the body): {what}"
                               ) from None


class _BoundRESTServer(RESTServer):
    """KServe's REST server on a prepared app, bound to the configured host."""

    def __init__(self, app: FastAPI, server: kserve.ModelServer, *, host: str, port: int,
                 grace_period: int, timeout_keep_alive: int) -> None:
        self.app = app
        self.dataplane = server.dataplane
        self.model_repository_extension = server.model_repository_extension
        self.access_log_format = None
        self.config = BoundConfig(app, bind_host=host, port=port, workers=1, log_config=None,
                                  access_log=False, timeout_graceful_shutdown=grace_period,
                                  timeout_keep_alive=timeout_keep_alive, loop="auto")
        self._server = _RefreshingServer(self.config)

    def create_application(self) -> None:  # the app is built before the server is
        return None


# gRPC ----------------------------------------------------------------------------------------
def _grpc_address(host: str, port: int) -> str:
    """``host:port`` as gRPC spells it (an IPv6 literal in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _grpc_code(status: int) -> Any:
    import grpc

    return {400: grpc.StatusCode.INVALID_ARGUMENT, 422: grpc.StatusCode.INVALID_ARGUMENT,
            404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
            503: grpc.StatusCode.UNAVAILABLE}.get(status, grpc.StatusCode.INTERNAL)


class _Servicer(InferenceServicer):
    """KServe's gRPC servicer without the model repository extension: over gRPC as over REST,
    nobody who reaches the server can unload its one model (it cannot be loaded back)."""

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        import grpc

        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "model repository: load is not served by this server")

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        import grpc

        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "model repository: unload is not served by this server")


class _StatusInterceptor(ExceptionToStatusInterceptor):
    """A ServingError keeps its meaning over gRPC (a bad field is INVALID_ARGUMENT with the
    message naming it), logged in one line; KServe's own interceptor made it INTERNAL."""

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: Any,
                               method_name: str) -> None:
        if isinstance(ex, ServingError):
            log.log(logging.INFO if ex.status_code < 500 else logging.WARNING,
                    "gRPC %s %d: %s", method_name, ex.status_code, ex.message)
            await context.abort(_grpc_code(ex.status_code), ex.message)
        if isinstance(ex, ModelNotFound):
            log.info("gRPC %s 404: %s", method_name, ex)
            await context.abort(_grpc_code(404), f"model: {ex}")
        await super().handle_exception(ex, request_or_iterator, context, method_name)


# gRPC methods answered without being counted, as REST's health and metadata routes are not
_GRPC_UNCOUNTED = frozenset({"ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
                             "ModelMetadata"})


def _grpc_route(method_name: str) -> str | None:
    """The ``route`` label of a gRPC method (``/inference.GRPCInferenceService/ModelInfer``):
    ``grpc_infer`` for inference, ``grpc_other`` for the rest, None for health and metadata
    (not counted, as their REST routes are not)."""
    method = method_name.rsplit("/", 1)[-1]
    if method == "ModelInfer":
        return "grpc_infer"
    return None if method in _GRPC_UNCOUNTED else "grpc_other"


def _http_status(code: Any) -> int:
    """The HTTP status a gRPC status stands for: the inverse of :func:`_grpc_code` (so a
    ServingError is counted under the same code over REST and gRPC), the other statuses as
    ``google.rpc.Code`` maps them. ``code`` is counted in HTTP terms on every route, so that
    ``code=~"5.."`` selects the server errors of both protocols."""
    import grpc

    s = grpc.StatusCode
    return {s.OK: 200, s.INVALID_ARGUMENT: 400, s.FAILED_PRECONDITION: 400, s.OUT_OF_RANGE: 400,
            s.UNAUTHENTICATED: 401, s.PERMISSION_DENIED: 403, s.NOT_FOUND: 404,
            s.ALREADY_EXISTS: 409, s.ABORTED: 409, s.RESOURCE_EXHAUSTED: 413,
            s.CANCELLED: 499, s.UNIMPLEMENTED: 501, s.UNAVAILABLE: 503,
            s.DEADLINE_EXCEEDED: 504}.get(code, 500)


def _abandoned(context: Any) -> Any:
    """The status of a call whose handler grpc cancelled: the client cancelled it, or its
    deadline passed (``time_remaining`` 0) while the server was answering. Either is what the
    client got (CANCELLED 499, DEADLINE_EXCEEDED 504), not an INTERNAL the server never sent:
    counted as 500, a client that cancelled showed as a server error on the dashboard."""
    import grpc

    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


class _MetricsInterceptor(AsyncServerInterceptor):
    """Counts every answered gRPC call in ``marquee_serving_requests_total`` (and
    ``_errors_total``) as ServingMiddleware counts REST requests: without it a client on gRPC
    was invisible to the dashboard and an error spike over gRPC showed nowhere. Outermost, so
    it sees the status the client gets, after :class:`_StatusInterceptor` mapped the error.

    A method this server has not (grpc answers UNIMPLEMENTED before any interceptor runs) is
    answered UNIMPLEMENTED here, counted as ``grpc_other`` 501, as REST counts an unknown path
    under ``other``."""

    def __init__(self, version: Callable[[], str], variant: str) -> None:
        self._version = version
        self._variant = variant

    async def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        handler = await super().intercept_service(continuation, handler_call_details)
        if handler is not None:
            return handler
        import grpc

        # stream-unary: answered at once, without waiting for a request message that a
        # streaming client may never send (how grpc answers an unknown method itself)
        return grpc.stream_unary_rpc_method_handler(
            self._unimplemented(str(handler_call_details.method)))

    def _unimplemented(self, method_name: str) -> Callable:
        async def refuse(request_iterator: Any, context: Any) -> None:
            import grpc

            metrics.count_request(self._version(), self._variant, "grpc_other",
                                  _http_status(grpc.StatusCode.UNIMPLEMENTED))
            await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                                f"method: {method_name[:120]!r} is not a method of this server")

        return refuse

    async def intercept(self, method: Callable, request_or_iterator: Any, context: Any,
                        method_name: str) -> Any:
        import grpc

        route = _grpc_route(method_name)
        if route is None:
            return await method(request_or_iterator, context)
        ended = grpc.StatusCode.INTERNAL  # an exception that set no code
        try:
            response = await method(request_or_iterator, context)
            ended = grpc.StatusCode.OK
            return response
        except asyncio.CancelledError:
            ended = _abandoned(context)
            raise
        finally:  # an abort sets the code and raises
            code = context.code() or ended
            metrics.count_request(self._version(), self._variant, route, _http_status(code))


class _SizeInterceptor(AsyncServerInterceptor):
    """Refuses a request message larger than ``max_bytes`` with RESOURCE_EXHAUSTED naming the
    sizes, inside :class:`_MetricsInterceptor` so the refusal is counted (413, as REST counts
    its own). grpc's own limit (``max_receive_message_length``) refused before any interceptor
    ran, uncounted: it is set ``_GRPC_COUNTED_EXCESS_BYTES`` higher, as the hard limit."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes

    async def intercept(self, method: Callable, request_or_iterator: Any, context: Any,
                        method_name: str) -> Any:
        byte_size = getattr(request_or_iterator, "ByteSize", None)  # unary: a message
        size = byte_size() if byte_size is not None else 0
        if size > self._max_bytes:
            import grpc

            log.info("gRPC %s 413: message of %d bytes", method_name[:120], size)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"body: {size} bytes is more than the limit of "
                                f"{self._max_bytes}")
        return await method(request_or_iterator, context)


# How far above max_body_bytes a gRPC message is still received, to be refused and counted by
# _SizeInterceptor; a larger one grpc refuses itself, uncounted. One call makes the server hold
# at most max_body_bytes + 1 MiB (grpc's own default limit is 4 MiB).
_GRPC_COUNTED_EXCESS_BYTES = 1 << 20


class _BoundGRPCServer(GRPCServer):
    """KServe's gRPC server bound to the configured host (KServe listens on ``[::]``, every
    interface, whatever the REST host), with :class:`_Servicer` and messages up to
    ``max_message_bytes``."""

    def __init__(self, host: str, port: int, dataplane: Any, *, max_message_bytes: int,
                 grace_period: int, version: Callable[[], str], variant: str) -> None:
        super().__init__(port, dataplane, None, kwargs={}, grace_period=grace_period)
        self._host = host
        self._max_message_bytes = max_message_bytes
        self._metrics = _MetricsInterceptor(version, variant)
        self._size = _SizeInterceptor(max_message_bytes)

    async def start(self, max_workers: int) -> None:
        from concurrent import futures

        from grpc import aio
        from kserve.constants.constants import MAX_GRPC_MESSAGE_LENGTH
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(self._metrics, self._size, _StatusInterceptor()),
            options=[("grpc.max_send_message_length", MAX_GRPC_MESSAGE_LENGTH),
                     ("grpc.max_receive_message_length",
                      self._max_message_bytes + _GRPC_COUNTED_EXCESS_BYTES)])
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            _Servicer(self._data_plane, None), self._server)
        address = _grpc_address(self._host, self._port)
        self._server.add_insecure_port(address)
        log.info("serving gRPC on %s", address)
        await self._server.start()
        await self._server.wait_for_termination()


class MarqueeModelServer(kserve.ModelServer):
    def __init__(self, *, host: str, http_port: int, enable_grpc: bool = False,
                 grpc_port: int = 8081, grace_period: int = 20, max_body_bytes: int = 65536,
                 variant: str = "", pairer: CloudEventPairer | None = None,
                 sink_token: str | None = None) -> None:
        super().__init__(http_port=http_port, grpc_port=grpc_port, workers=1,
                         enable_grpc=enable_grpc, enable_docs_url=False,
                         enable_latency_logging=False, grace_period=grace_period)
        self.dataplane = _DataPlane(model_registry=self.registered_models)
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.variant = variant
        self.pairer = pairer
        self.sink_token = sink_token

    def _model(self) -> RecommenderModel | None:
        for model in self.registered_models.get_models().values():
            if isinstance(model, RecommenderModel):
                return model
        return None

    def _version(self) -> str:
        model = self._model()
        return model.service.version if model is not None and model.service else ""

    def create_application(self) -> FastAPI:
        """KServe's routes and handlers on a fresh app, plus Marquee's (no server started)."""
        app = FastAPI(title="marquee model server", docs_url=None, redoc_url=None,
                      default_response_class=ORJSONResponse)
        helper = _BoundRESTServer(app, self, host=self.host, port=self.http_port,
                                  grace_period=self.grace_period,
                                  timeout_keep_alive=self.timeout_keep_alive)
        for method, path in _UNSERVED_ROUTES:  # before KServe's: the first match wins
            app.add_api_route(path, _unserved, methods=[method], include_in_schema=False)
        helper._register_endpoints(app)
        helper._add_exception_handlers(app)
        app.add_exception_handler(ServingError, _serving_error)
        app.add_exception_handler(InvalidInput, _invalid_input)
        app.add_exception_handler(ModelNotFound, _model_not_found)
        app.add_exception_handler(RequestValidationError, _request_validation)
        app.add_exception_handler(StarletteHTTPException, _http_exception)
        if self.pairer is not None:
            app.include_router(sink_router(self.pairer, self.sink_token))

        @app.get("/marquee/model")
        async def model_info() -> dict[str, Any]:
            model = self._model()
            if model is None or model.service is None:
                return {"ready": False}
            rt = model.service.runtime
            return {"ready": model.ready, "name": model.name, "model_version": rt.version,
                    "bundle_uri": rt.bundle_uri, "n_items": rt.n_items,
                    "candidates": rt.candidates, "index": rt.index_report.as_dict()}

        # KServe's logger posts whole requests and responses to the sink: a response to 64
        # instances of k=500 is far above a request's limit (the sink service's limit, too)
        sink_limit = {"payload_sink": max(SINK_MAX_BODY_BYTES, self.max_body_bytes)} \
            if self.pairer is not None else None
        app.add_middleware(ServingMiddleware, max_body_bytes=self.max_body_bytes,
                           version=self._version, variant=self.variant,
                           route_max_body_bytes=sink_limit)
        return app

    def start(self, models: list[kserve.Model]) -> None:
        """Like ``kserve.ModelServer.start`` with one REST server bound to ``self.host``."""
        self._register_and_check_atleast_one_model_is_ready(models)
        app = self.create_application()
        self._rest_server = _BoundRESTServer(app, self, host=self.host, port=self.http_port,
                                             grace_period=self.grace_period,
                                             timeout_keep_alive=self.timeout_keep_alive)
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = _BoundGRPCServer(self.host, self.grpc_port, self.dataplane,
                                                 max_message_bytes=self.max_body_bytes,
                                                 grace_period=self.grace_period,
                                                 version=self._version, variant=self.variant)
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        model = self._model()
        if model is not None and model.service is not None:
            log_serving(model.service.runtime, model.name, self.host, self.http_port, "KServe")
        asyncio.run(self._serve())
