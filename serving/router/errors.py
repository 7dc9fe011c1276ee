"""Errors of the router, each carrying its HTTP status; mapped to a response once in ``app``.

    RouterError (500)
    ├── BadRequest (422)          a field is missing, has the wrong type or is out of range
    │   ├── MalformedBody (400)   the body is not JSON
    │   └── PayloadTooLarge (413) the body is larger than the router reads
    ├── Unauthorized (401)        an admin call without the admin token the router requires
    ├── UnknownRequest (404)      feedback for a request id the router does not know (any more)
    ├── NotConfigured (503)       no routing yet (no baseline version)
    ├── UnknownVersion (422)      routing names a version without a known model server URL
    └── UpstreamFailed (502)      the model server answered an error, garbage, or not at all
        └── UpstreamTimeout (504) the model server did not answer in time

Interleaving calls both model servers: when both fail, the answer is a 504 (variant
``interleaved``) if both timed out, and a 502 if either failed otherwise (an error status, a
bad body, a refused connection), since that server is broken rather than slow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RouterError", "BadRequest", "MalformedBody", "PayloadTooLarge", "Unauthorized",
           "UnknownRequest",
           "NotConfigured", "UnknownVersion", "UpstreamFailed", "UpstreamTimeout"]


class RouterError(Exception):
    status_code = 500
    code = "internal"

    def __init__(self, message: str, *, field: str | None = None,
                 variant: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.variant = variant

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.field is not None:
            out["field"] = self.field
        if self.variant is not None:
            out["variant"] = self.variant
        return out


class BadRequest(RouterError):
    status_code = 422
    code = "bad_request"


class MalformedBody(BadRequest):
    status_code = 400
    code = "malformed_body"


class PayloadTooLarge(BadRequest):
    status_code = 413
    code = "payload_too_large"


class Unauthorized(RouterError):
    status_code = 401
    code = "unauthorized"


class UnknownRequest(RouterError):
    status_code = 404
    code = "unknown_request"


class NotConfigured(RouterError):
    status_code = 503
    code = "not_configured"


class UnknownVersion(BadRequest):
    code = "unknown_version"


class UpstreamFailed(RouterError):
    status_code = 502
    code = "upstream_failed"

    def __init__(self, message: str, *, reason: str = "error", variant: str | None = None,
                 upstream_status: int | None = None) -> None:
        super().__init__(message, variant=variant)
        self.reason = reason
        self.upstream_status = upstream_status


class UpstreamTimeout(UpstreamFailed):
    status_code = 504
    code = "upstream_timeout"
