"""The request handler both runtimes share: validated instances in, predictions out.

KServe's ``Model`` and the BentoML service decode their protocol, then call
:meth:`RecommendService.predict`; it applies fault injection, asks the runtime, writes one
payload-log row per answered instance (before the response leaves, so every 2xx has its row)
and returns plain prediction dicts (the V1 ``predictions`` entries).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from serving.errors import BadRequest, InjectedFault
from serving.fields import indexed_request_id
from serving.payload.logger import PayloadLogger
from serving.payload.schema import payload_row
from serving.runtime.faults import FaultInjector
from serving.runtime.runtime import Recommendation, Runtime
from serving.runtime.schema import Instance
from serving.settings import ServingSettings

__all__ = ["RecommendService"]

log = logging.getLogger(__name__)


def _request_ids(instances: Sequence[Instance], request_id: str | None) -> list[str]:
    """Each instance's own ``request_id``, else one derived from the request's (the
    ``x-request-id`` header or V2 ``id``: itself for one instance, ``<id>-<i>`` within the
    length rule for a batch), else a generated one. Payload and feedback logs join on it, so
    a derived id that another instance gives as its own is a 400 naming that instance's."""
    if not request_id:
        return [inst.request_id or uuid.uuid4().hex for inst in instances]
    if len(instances) == 1:
        return [instances[0].request_id or request_id]
    derived = {indexed_request_id(request_id, i): i
               for i, inst in enumerate(instances) if inst.request_id is None}
    for i, inst in enumerate(instances):
        if inst.request_id in derived:
            field = f"instances.{i}.request_id"
            raise BadRequest(f"{field}: {inst.request_id!r} is also the request_id derived for "
                             f"instance {derived[inst.request_id]} from the request's id; each "
                             "answer needs its own", field=field)
    return [inst.request_id or indexed_request_id(request_id, i)
            for i, inst in enumerate(instances)]


class RecommendService:
    def __init__(self, runtime: Runtime, *, payload: PayloadLogger | None = None,
                 faults: FaultInjector | None = None, variant: str = "",
                 return_features: bool = False, max_instances: int = 64) -> None:
        self.runtime = runtime
        self.payload = payload
        self.faults = faults or FaultInjector()
        self.variant = variant
        self.return_features = return_features
        self.max_instances = max_instances

    @classmethod
    def from_settings(cls, runtime: Runtime, serving: ServingSettings,
                      payload: PayloadLogger | None) -> RecommendService:
        return cls(runtime, payload=payload,
                   faults=FaultInjector(serving.fault_error_rate, serving.fault_extra_latency_ms,
                                        serving.fault_seed),
                   variant=serving.variant, max_instances=serving.max_instances)

    @property
    def version(self) -> str:
        return self.runtime.version

    async def predict(self, instances: Sequence[Instance], request_id: str | None = None,
                      started: float | None = None) -> list[dict[str, Any]]:
        """Recommendations for validated instances; logs each answered instance."""
        started = time.perf_counter() if started is None else started
        ids = _request_ids(instances, request_id)
        try:
            await self.faults.apply()
        except InjectedFault:
            now = time.time()
            for inst, rid in zip(instances, ids, strict=True):
                self._log_error(inst, rid, now, 500, started)
            raise
        return self.predict_sync(instances, ids, started)

    def predict_sync(self, instances: Sequence[Instance], ids: Sequence[str],
                     started: float) -> list[dict[str, Any]]:
        out = []
        for inst, rid in zip(instances, ids, strict=True):
            rec = self.runtime.recommend(inst.user_id, inst.k, inst.context, inst.history,
                                         request_id=rid, demographics=inst.demographics)
            pred = self._prediction(inst, rec)
            self._log_ok(inst, rec, pred, started)
            out.append(pred)
        return out

    def _prediction(self, inst: Instance, rec: Recommendation) -> dict[str, Any]:
        pred: dict[str, Any] = {
            "user_id": inst.user_id, "items": rec.items, "scores": rec.scores,
            "model_version": rec.model_version, "request_id": rec.request_id,
            "cold_start": rec.cold_start, "fallback": rec.fallback,
        }
        if self.return_features:
            pred["features"] = rec.features
        return pred

    def _log_ok(self, inst: Instance, rec: Recommendation, pred: dict[str, Any],
                started: float) -> None:
        if self.payload is None:
            return
        try:
            self.payload.log(payload_row(
                request_id=rec.request_id, ts=time.time(), model_version=rec.model_version,
                variant=self.variant, user_id=inst.user_id, k=inst.k,
                cold_start=rec.cold_start, fallback=rec.fallback, status=200,
                latency_ms=(time.perf_counter() - started) * 1e3, items=rec.items,
                scores=rec.scores,
                request_json=inst.model_dump_json(exclude_none=True),
                response_json=orjson.dumps(pred).decode(), features=rec.features))
        except Exception:  # noqa: BLE001 - logging never fails a request
            log.exception("payload row for %s could not be built", rec.request_id)

    def _log_error(self, inst: Instance, request_id: str, ts: float, status: int,
                   started: float) -> None:
        if self.payload is None:
            return
        self.payload.log(payload_row(
            request_id=request_id, ts=ts, model_version=self.version, variant=self.variant,
            user_id=inst.user_id, k=inst.k, cold_start=None, fallback=None, status=status,
            latency_ms=(time.perf_counter() - started) * 1e3, items=None, scores=None,
            request_json=inst.model_dump_json(exclude_none=True), response_json=None,
            features=None))
