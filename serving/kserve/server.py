"""``kserve.ModelServer`` bound to the configured address, with Marquee's HTTP extras.

KServe 0.21 hard-codes ``host="0.0.0.0"`` in its REST server and starts gRPC on ``[::]``.
:class:`MarqueeModelServer` keeps KServe's data plane, V1/V2 endpoints and exception handlers
but runs uvicorn with :class:`BoundConfig` (a ``uvicorn.Config`` that binds the configured
host), leaves gRPC off unless asked, and adds:

* a body-size limit (413) and per-route request/error counters (``marquee_serving_*``);
* handlers that turn every validation failure into a 4xx naming the field;
* ``POST /payload-sink`` (KServe's CloudEvents payload logger; only when given a ``pairer``,
  which ``serving.payload.sink.sink_pairer`` gives only with ``payload_sink_enabled``; with
  ``sink_token`` only for requests that carry it) and ``GET /marquee/model``
  (loaded version, bundle and the index report with its measured recall).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import kserve
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, ORJSONResponse
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.rest.server import RESTServer, _RefreshingServer
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.errors import ServingError, error_body
from serving.kserve.model import RecommenderModel
from serving.payload.sink import CloudEventPairer, sink_router
from serving.runtime.middleware import ServingMiddleware

__all__ = ["BoundConfig", "MarqueeModelServer"]

log = logging.getLogger(__name__)


# KServe routes this server does not serve: the model repository extension (anyone who can
# reach the server could unload its one model, for good: it cannot be loaded back, and
# /v2/health/ready stays true), explanations (no explainer) and versioned inference (KServe
# answers both with a 501 and logs a traceback at ERROR). Each is a 4xx naming the path.
_UNSERVED_ROUTES = frozenset({
    "/v2/repository/models/{model_name}/load",
    "/v2/repository/models/{model_name}/unload",
    "/v1/models/{model_name}:explain",
    "/v2/models/{model_name}/versions/{model_version}/infer",
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


class MarqueeModelServer(kserve.ModelServer):
    def __init__(self, *, host: str, http_port: int, enable_grpc: bool = False,
                 grpc_port: int = 8081, grace_period: int = 20, max_body_bytes: int = 65536,
                 variant: str = "", pairer: CloudEventPairer | None = None,
                 sink_token: str | None = None) -> None:
        super().__init__(http_port=http_port, grpc_port=grpc_port, workers=1,
                         enable_grpc=enable_grpc, enable_docs_url=False,
                         enable_latency_logging=False, grace_period=grace_period)
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
        for path in _UNSERVED_ROUTES:  # before KServe's: the first route that matches wins
            app.add_api_route(path, _unserved, methods=["POST"], include_in_schema=False)
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

        app.add_middleware(ServingMiddleware, max_body_bytes=self.max_body_bytes,
                           version=self._version, variant=self.variant)
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
            from kserve.model_server import args as kserve_args
            from kserve.protocol.grpc.server import GRPCServer

            self._grpc_server = GRPCServer(self.grpc_port, self.dataplane,
                                           self.model_repository_extension,
                                           kwargs=vars(kserve_args),
                                           grace_period=self.grace_period)
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        log.info("serving on http://%s:%d", self.host, self.http_port)
        asyncio.run(self._serve())
