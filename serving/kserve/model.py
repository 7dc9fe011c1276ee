"""The recommender as a ``kserve.Model``: V1 and V2 (Open Inference) on one runtime.

``load()`` builds the :class:`~serving.runtime.service.RecommendService` (bundle fetched and
verified, index built) and only then sets ``ready``. ``preprocess`` validates the body into
:class:`~serving.runtime.schema.Instance` objects (a bad field → 400 naming it), ``predict``
asks the shared service, ``postprocess`` encodes the protocol's response.

V1: ``{"instances": [{"user_id": 42, "k": 10}]}`` → ``{"predictions": [{...}]}``.
V2: inputs ``user_id`` (INT64 [n]) and optional ``k`` (INT64 [1] or [n], one value) →
outputs ``items`` (INT64 [n, k], -1 padded), ``scores`` (FP64 [n, k]), ``cold_start``,
``fallback`` (BOOL [n]) and ``request_id`` (BYTES [n]). A request's ``outputs`` selects some
of them by name (the response holds those, in the request's order; absent, all five); a name
the model has not, or one asked twice, is a 400 naming ``outputs.<name>``. The same inputs and
outputs are the model's V2 metadata (``GET /v2/models/movie-recommender``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kserve
import numpy as np
import orjson
from kserve import InferOutput, InferRequest, InferResponse
from pydantic import ValidationError

from serving.errors import BadRequest, ModelNotLoaded
from serving.fields import flatten, short_repr
from serving.runtime.schema import Instance, parse_v1, request_id_from
from serving.runtime.service import RecommendService

__all__ = ["RecommenderModel"]

# The integer datatypes of the Open Inference protocol and the values each can hold. The
# model's inputs are ids and counts, so only these are accepted (a float id loses precision).
_INT_RANGES: dict[str, tuple[int, int]] = {
    **{f"INT{b}": (-(2 ** (b - 1)), 2 ** (b - 1) - 1) for b in (8, 16, 32, 64)},
    **{f"UINT{b}": (0, 2**b - 1) for b in (8, 16, 32, 64)},
}


# The model's V2 tensors (its metadata): -1 is a dimension of any size.
V2_INPUTS: tuple[dict[str, Any], ...] = (
    {"name": "user_id", "datatype": "INT64", "shape": [-1]},
    {"name": "k", "datatype": "INT64", "shape": [-1]},
)
V2_OUTPUTS: tuple[dict[str, Any], ...] = (
    {"name": "items", "datatype": "INT64", "shape": [-1, -1]},
    {"name": "scores", "datatype": "FP64", "shape": [-1, -1]},
    {"name": "cold_start", "datatype": "BOOL", "shape": [-1]},
    {"name": "fallback", "datatype": "BOOL", "shape": [-1]},
    {"name": "request_id", "datatype": "BYTES", "shape": [-1]},
)


@dataclass(frozen=True)
class _Parsed:
    protocol: str  # "v1" | "v2"
    instances: list[Instance]
    started: float
    v2_id: str | None = None
    outputs: tuple[str, ...] | None = None  # V2: the requested outputs, None for all


@dataclass(frozen=True)
class _Result:
    parsed: _Parsed
    predictions: list[dict[str, Any]]


class RecommenderModel(kserve.Model):
    def __init__(self, name: str, load_service: Callable[[], RecommendService]) -> None:
        super().__init__(name)
        self._load_service = load_service
        self.service: RecommendService | None = None

    # Lifecycle ------------------------------------------------------------------------------
    def load(self) -> bool:
        self.service = self._load_service()
        self.ready = True
        return self.ready

    def stop(self) -> None:
        self.ready = False
        if self.service is not None and self.service.payload is not None:
            self.service.payload.close()

    # Handlers ---------------------------------------------------------------------------------
    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> _Parsed:
        started = time.perf_counter()
        service = self._service()
        if isinstance(payload, InferRequest):
            return _Parsed("v2", _v2_instances(payload, service.max_instances), started,
                           request_id_from(payload.id, "id"), v2_outputs(payload))
        # bytes: no JSON content-type. A str is a decoded JSON string (no V1 body), never
        # decoded a second time (BentoML refuses '"{\"instances\": ...}"' too).
        if isinstance(payload, bytes | bytearray):
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"body: malformed JSON ({exc})", field="body") from None
        return _Parsed("v1", parse_v1(payload, service.max_instances).instances, started)

    async def predict(self, payload: _Parsed, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> _Result:
        request_id = request_id_from((headers or {}).get("x-request-id"), "x-request-id") \
            or payload.v2_id
        preds = await self._service().predict(payload.instances, request_id, payload.started)
        return _Result(payload, preds)

    async def postprocess(self, result: _Result, headers: dict[str, str] | None = None,
                          response_headers: dict[str, str] | None = None
                          ) -> dict[str, Any] | InferResponse:
        if result.parsed.protocol == "v1":
            return {"predictions": result.predictions}
        return _v2_response(self.name, self._service().version, result)

    def get_input_types(self) -> list[dict[str, Any]]:
        return [dict(t) for t in V2_INPUTS]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [dict(t) for t in V2_OUTPUTS]

    def _service(self) -> RecommendService:
        if self.service is None or not self.ready:
            raise ModelNotLoaded(f"model {self.name} is not loaded yet")
        return self.service


# V2 -------------------------------------------------------------------------------------------
def _ints(inp: Any, field: str) -> list[int]:
    if inp.datatype not in _INT_RANGES:
        raise BadRequest(f"{field}.datatype: expected INT64 or another integer datatype "
                         f"(INT8..INT64, UINT8..UINT64) (got {short_repr(inp.datatype)})",
                         field=f"{field}.datatype")
    low, high = _INT_RANGES[inp.datatype]
    data = inp.data
    if isinstance(data, np.ndarray):
        data = data.tolist()
    if not isinstance(data, list):
        raise BadRequest(f"{field}.data: expected a list of integers", field=f"{field}.data")
    flat = flatten(data)
    for i, x in enumerate(flat):
        if isinstance(x, bool) or not isinstance(x, int):
            raise BadRequest(f"{field}.data.{i}: expected integers (got {short_repr(x)})",
                             field=f"{field}.data")
        if not low <= x <= high:
            raise BadRequest(f"{field}.data.{i}: {short_repr(x)} does not fit datatype "
                             f"{inp.datatype} ({low}..{high})", field=f"{field}.data")
    shape = list(inp.shape or [])
    if any(not isinstance(s, int) or s < 0 for s in shape) or int(np.prod(shape)) != len(flat):
        raise BadRequest(f"{field}.shape: {shape} does not match {len(flat)} values",
                         field=f"{field}.shape")
    return flat


def _v2_instances(req: InferRequest, max_instances: int) -> list[Instance]:
    names = [inp.name for inp in req.inputs]
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:  # the dict below would silently keep the last one
        raise BadRequest(f"inputs.{dup}: given more than once", field=f"inputs.{dup}")
    by_name = {inp.name: inp for inp in req.inputs}
    unknown = sorted(set(by_name) - {"user_id", "k"})
    if unknown:
        raise BadRequest(f"inputs.{unknown[0]}: unknown input (expected user_id, k)",
                         field=f"inputs.{unknown[0]}")
    if "user_id" not in by_name:
        raise BadRequest("inputs.user_id: Field required", field="inputs.user_id")
    users = _ints(by_name["user_id"], "inputs.user_id")
    if not users:
        raise BadRequest("inputs.user_id: at least one user", field="inputs.user_id")
    if len(users) > max_instances:
        raise BadRequest(f"inputs.user_id: at most {max_instances} per request "
                         f"(got {len(users)})", field="inputs.user_id")
    ks = _ints(by_name["k"], "inputs.k") if "k" in by_name else [10]
    if len(set(ks)) != 1 or len(ks) not in (1, len(users)):
        raise BadRequest(f"inputs.k: V2 answers one [n, k] tensor, so give one k "
                         f"(got {ks[:5]})", field="inputs.k")
    out = []
    for i, user in enumerate(users):
        try:
            out.append(Instance(user_id=user, k=ks[0]))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            name = err["loc"][0] if err["loc"] else "user_id"
            raise BadRequest(f"inputs.{name}.data.{i}: {err['msg']} "
                             f"(got {short_repr(err['input'])})",
                             field=f"inputs.{name}") from None
    return out


def v2_outputs(req: InferRequest) -> tuple[str, ...] | None:
    """The output names a V2 request selects (``outputs``), None when it selects none (all);
    a name the model has not, or one given twice, is a 400 naming it."""
    requested = req.request_outputs
    if not requested:
        return None
    known = [t["name"] for t in V2_OUTPUTS]
    names: list[str] = []
    for out in requested:
        name = out.name
        if name not in known:
            shown = name[:64]  # echoed: kept short
            raise BadRequest(f"outputs.{shown}: unknown output (expected one of "
                             f"{', '.join(known)})", field=f"outputs.{shown}")
        if name in names:
            raise BadRequest(f"outputs.{name}: requested more than once",
                             field=f"outputs.{name}")
        names.append(name)
    return tuple(names)


def _v2_response(model_name: str, version: str, result: _Result) -> InferResponse:
    preds = result.predictions
    n = len(preds)
    k = result.parsed.instances[0].k if n else 0
    items = np.full((n, k), -1, dtype=np.int64)
    scores = np.zeros((n, k), dtype=np.float64)
    for i, p in enumerate(preds):
        m = len(p["items"])
        items[i, :m] = p["items"]
        scores[i, :m] = p["scores"]
    outputs = [
        InferOutput("items", [n, k], "INT64", items.reshape(-1).tolist()),
        InferOutput("scores", [n, k], "FP64", scores.reshape(-1).tolist()),
        InferOutput("cold_start", [n], "BOOL", [bool(p["cold_start"]) for p in preds]),
        InferOutput("fallback", [n], "BOOL", [bool(p["fallback"]) for p in preds]),
        InferOutput("request_id", [n], "BYTES", [p["request_id"] for p in preds]),
    ]
    if result.parsed.outputs is not None:  # the request's selection, in its order
        by_name = {o.name: o for o in outputs}
        outputs = [by_name[name] for name in result.parsed.outputs]
    return InferResponse(response_id=result.parsed.v2_id or uuid.uuid4().hex,
                         model_name=model_name, infer_outputs=outputs, model_version=version)
