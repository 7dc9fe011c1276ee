"""Errors of the model server, each carrying its HTTP status; mapped to a response once.

    ServingError (500)
    ├── BadRequest (400)            a field is missing, has the wrong type or is out of range
    │   └── PayloadTooLarge (413)   the body is larger than ``max_body_bytes``
    ├── ModelNotLoaded (503)        the runtime is not ready yet
    ├── ServerShuttingDown (503)    a request that arrived during the graceful shutdown (BentoML)
    ├── InjectedFault (500)         fault injection for rollout tests (never by default)
    └── RuntimeLoadError (500)      the bundle could not be loaded (raised at start, not per request)
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServingError", "BadRequest", "PayloadTooLarge", "ModelNotFound", "ModelNotLoaded",
           "ServerShuttingDown", "InjectedFault", "RuntimeLoadError", "error_body"]


class ServingError(Exception):
    status_code: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadRequest(ServingError):
    status_code = 400
    code = "bad_request"


class PayloadTooLarge(BadRequest):
    status_code = 413
    code = "payload_too_large"


class ModelNotFound(ServingError):
    """A model path naming a model this server does not hold (KServe's own 404 body)."""

    status_code = 404
    code = "model_not_found"


class ModelNotLoaded(ServingError):
    status_code = 503
    code = "not_ready"


class ServerShuttingDown(ServingError):
    """A request that arrived after the server began its graceful shutdown."""

    status_code = 503
    code = "shutting_down"


class InjectedFault(ServingError):
    status_code = 500
    code = "injected_fault"


class RuntimeLoadError(ServingError):
    code = "load_failed"


def error_body(exc: ServingError) -> dict[str, Any]:
    """The JSON body of an error response (``error`` is what KServe clients read)."""
    body: dict[str, Any] = {"error": exc.message, "code": exc.code}
    if exc.field is not None:
        body["field"] = exc.field
    return body
