"""Request and response bodies of the model server (pydantic), shared by both runtimes.

A validation failure becomes :class:`serving.errors.BadRequest` whose message starts with the
dotted path of the offending field and the value it got, e.g.
``instances.0.k: Input should be less than or equal to 500 (got 900)``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from serving.errors import BadRequest
from serving.fields import (
    MAX_HISTORY,
    MAX_K,
    REQUEST_ID_MAX_LENGTH,
    REQUEST_ID_PATTERN,
    Context,
    Demographics,
    History,
    ItemId,
    TopK,
    UserId,
    check_context,
    short_repr,
)

__all__ = ["Instance", "V1Request", "Prediction", "V1Response", "MAX_K", "MAX_HISTORY",
           "REQUEST_ID_PATTERN", "REQUEST_ID_MAX_LENGTH", "UserId", "ItemId", "TopK", "History",
           "Context", "check_context", "bad_request_from", "parse_v1", "request_id_from",
           "decode_v2_json"]

RequestId = Annotated[str, Field(min_length=1, max_length=REQUEST_ID_MAX_LENGTH,
                                 pattern=REQUEST_ID_PATTERN)]
_REQUEST_ID = TypeAdapter(RequestId)


class Instance(BaseModel):
    """One recommendation request: ``{"user_id": 42, "k": 10, "history": [..], "context": {..},
    "demographics": {"age_bucket": "25-34", "gender": "F", ..}}`` (demographics: for a user the
    model has no record of)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: UserId
    k: TopK = 10
    history: History | None = None
    context: Context | None = None
    demographics: Demographics | None = None
    request_id: RequestId | None = None


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


def bad_request_from(exc: ValidationError, prefix: str = "") -> BadRequest:
    """The first validation error as a 400 naming the field and the value received."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
    field = loc or "body"
    got = f" (got {short_repr(err['input'])})" if err["type"] != "missing" else ""
    more = f" [+{exc.error_count() - 1} more]" if exc.error_count() > 1 else ""
    return BadRequest(f"{field}: {err['msg']}{got}{more}", field=field)


def parse_v1(body: Any, max_instances: int) -> V1Request:
    """Validate a decoded V1 body; raise :class:`BadRequest` naming the field."""
    if not isinstance(body, dict):
        raise BadRequest(f"body: expected a JSON object with 'instances' (got {short_repr(body)})",
                         field="body")
    instances = body.get("instances")
    if isinstance(instances, list) and len(instances) > max_instances:
        raise BadRequest(f"instances: at most {max_instances} per request "
                         f"(got {len(instances)})", field="instances")
    try:
        request = V1Request.model_validate(body)
    except ValidationError as exc:
        raise bad_request_from(exc) from None
    seen: dict[str, int] = {}
    for i, inst in enumerate(request.instances):
        # payload and feedback logs join on the request id: two answers under one id could
        # not be told apart (feedback would count for both)
        if inst.request_id is not None:
            if inst.request_id in seen:
                field = f"instances.{i}.request_id"
                raise BadRequest(f"{field}: {inst.request_id!r} is also the request_id of "
                                 f"instance {seen[inst.request_id]}; each answer needs its own",
                                 field=field)
            seen[inst.request_id] = i
    return request


def decode_v2_json(body: bytes) -> Any:
    """A V2 body decoded as KServe's V2 endpoint (FastAPI, the standard library's JSON) decodes
    it; ``ValueError`` with KServe's message for bytes that are no JSON, so that both runtimes
    refuse the same bytes with the same words."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON at line {exc.lineno}, column {exc.colno} "
                         f"(character {exc.pos}): {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid JSON: not UTF-8 at byte {exc.start}") from None
    except RecursionError:  # nested past the parser's depth
        raise ValueError("There was an error parsing the body") from None


def request_id_from(value: Any, field: str) -> str | None:
    """A request id given outside the body (the ``x-request-id`` header, a V2 ``id``): None
    when absent or empty, else checked by the body ``request_id``'s rule, a 400 naming
    ``field`` when it fails (it is echoed and written to the payload logs)."""
    if value is None or value == "":
        return None
    try:
        return _REQUEST_ID.validate_python(value)
    except ValidationError as exc:
        raise bad_request_from(exc, field) from None
