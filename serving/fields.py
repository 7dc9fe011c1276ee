"""The fields of one recommendation request, shared by the model server's schema
(``serving.runtime.schema``) and the router's product API (``serving.router.schema``), so that
a request the router accepts is one the model server accepts. Pure pydantic: importing it
loads neither the runtime (faiss, torch) nor a web framework.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

__all__ = ["MAX_K", "MAX_HISTORY", "REQUEST_ID_PATTERN", "REQUEST_ID_MAX_LENGTH", "UserId",
           "ItemId", "TopK", "History", "ContextValue", "Context", "check_context", "INT64_MAX",
           "Demographics", "indexed_request_id", "short_repr", "flatten"]

MAX_K = 500
MAX_HISTORY = 1000
INT64_MAX = 2**63 - 1
_TS_MAX = 4_102_444_800  # 2100-01-01: a context "ts" is unix seconds
# A request id, wherever it comes from (body field, x-request-id header, V2 id): it is
# echoed in responses and written to logs, so it is kept short and printable.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:\-]+$"
REQUEST_ID_MAX_LENGTH = 128


def indexed_request_id(base: str, i: int) -> str:
    """The request id of item ``i`` of a batch whose ids come from one id ``base`` (a model
    server's ``x-request-id`` or V2 ``id``, the payload sink's ``Ce-Id``): ``<base>-<i>``.
    A ``base`` (itself within the rule) too long for the suffix keeps its first characters
    and a digest of the whole, so the id stays within ``REQUEST_ID_MAX_LENGTH`` and unique
    to ``base``."""
    suffix = f"-{i}"
    if len(base) + len(suffix) <= REQUEST_ID_MAX_LENGTH:
        return base + suffix
    digest = hashlib.sha256(base.encode()).hexdigest()[:16]
    return f"{base[:REQUEST_ID_MAX_LENGTH - len(suffix) - 17]}.{digest}{suffix}"


# The field types of one request, shared with the router's product API so that a request
# the router accepts is one the model server accepts.
UserId = Annotated[int, Field(strict=True, ge=1, le=INT64_MAX)]
ItemId = Annotated[int, Field(strict=True, ge=1, le=INT64_MAX)]
TopK = Annotated[int, Field(strict=True, ge=1, le=MAX_K)]
History = Annotated[list[ItemId], Field(max_length=MAX_HISTORY)]
ContextValue = str | int | float | bool | None


def check_context(v: dict[str, ContextValue] | None) -> dict[str, ContextValue] | None:
    """A context's ``ts``, when given, is unix seconds (the ranker's time features)."""
    ts = (v or {}).get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)
                           or not 0 <= ts <= _TS_MAX):
        raise ValueError(f"context.ts must be unix seconds within 0..{_TS_MAX}")
    return v


Context = Annotated[dict[Annotated[str, Field(max_length=64)], ContextValue], Field(max_length=32),
                    AfterValidator(check_context)]


# A user the model has no record of (signed up after training) can be described by the
# coarsened demographics of the users table (DESIGN.md: age bucket, not age; region, not zip
# code): the user tower takes them without an id and cold start uses the segment's popularity.
# A stored user keeps the demographics the model was trained with.
Demographics = Annotated[
    dict[Literal["age_bucket", "gender", "occupation", "region"],
         Annotated[str, Field(min_length=1, max_length=64)]],
    Field(max_length=4)]


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a refused value echoed in a message."""
    try:
        text = repr(value)
    except RecursionError:  # JSON nested ~1,000 deep parses, but its repr does not
        text = f"<{type(value).__name__} nested too deeply>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def flatten(values: list[Any]) -> list[Any]:
    """The leaves of nested lists in order (V2 tensor ``data`` may be nested to its shape)."""
    flat: list[Any] = []
    stack = list(reversed(values))
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(reversed(x))
        else:
            flat.append(x)
    return flat
