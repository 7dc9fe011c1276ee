"""Request and response bodies of the model server (pydantic), shared by both runtimes.

A validation failure becomes :class:`serving.errors.BadRequest` whose message starts with the
dotted path of the offending field and the value it got, e.g.
``instances.0.k: Input should be less than or equal to 500 (got 900)``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from serving.errors import BadRequest

__all__ = ["Instance", "V1Request", "Prediction", "V1Response", "MAX_K", "bad_request_from",
           "parse_v1"]

MAX_K = 500
MAX_HISTORY = 1000
_INT64_MAX = 2**63 - 1
_TS_MAX = 4_102_444_800  # 2100-01-01: a context "ts" is unix seconds

ItemId = Annotated[int, Field(strict=True, ge=1, le=_INT64_MAX)]
ContextValue = str | int | float | bool | None


class Instance(BaseModel):
    """One recommendation request: ``{"user_id": 42, "k": 10, "history": [..], "context": {..}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Annotated[int, Field(strict=True, ge=1, le=_INT64_MAX)]
    k: Annotated[int, Field(strict=True, ge=1, le=MAX_K)] = 10
    history: Annotated[list[ItemId], Field(max_length=MAX_HISTORY)] | None = None
    context: Annotated[dict[Annotated[str, Field(max_length=64)], ContextValue],
                       Field(max_length=32)] | None = None
    request_id: Annotated[str, Field(min_length=1, max_length=128,
                                     pattern=r"^[A-Za-z0-9._:\-]+$")] | None = None

    @field_validator("context")
    @classmethod
    def _context_ts(cls, v: dict[str, ContextValue] | None) -> dict[str, ContextValue] | None:
        ts = (v or {}).get("ts")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)
                               or not 0 <= ts <= _TS_MAX):
            raise ValueError(f"context.ts must be unix seconds within 0..{_TS_MAX}")
        return v


class V1Request(BaseModel):
    """KServe V1 body: ``{"instances": [...]}``."""

    model_config = ConfigDict(extra="forbid")

    instances: Annotated[list[Instance], Field(min_length=1)]


class Prediction(BaseModel):
    user_id: int
    items: list[int]
    scores: list[float]
    model_version: str
    request_id: str
    cold_start: bool
    fallback: bool
    features: dict[str, Any] | None = None


class V1Response(BaseModel):
    predictions: list[Prediction]


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bad_request_from(exc: ValidationError, prefix: str = "") -> BadRequest:
    """The first validation error as a 400 naming the field and the value received."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
    field = loc or "body"
    got = f" (got {_short(err['input'])})" if err["type"] != "missing" else ""
    more = f" [+{exc.error_count() - 1} more]" if exc.error_count() > 1 else ""
    return BadRequest(f"{field}: {err['msg']}{got}{more}", field=field)


def parse_v1(body: Any, max_instances: int) -> V1Request:
    """Validate a decoded V1 body; raise :class:`BadRequest` naming the field."""
    if not isinstance(body, dict):
        raise BadRequest(f"body: expected a JSON object with 'instances' (got {_short(body)})",
                         field="body")
    instances = body.get("instances")
    if isinstance(instances, list) and len(instances) > max_instances:
        raise BadRequest(f"instances: at most {max_instances} per request "
                         f"(got {len(instances)})", field="instances")
    try:
        return V1Request.model_validate(body)
    except ValidationError as exc:
        raise bad_request_from(exc) from None
