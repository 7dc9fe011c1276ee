"""Calls to model servers over KServe's V1 protocol, on one pooled ``httpx.AsyncClient``.

``POST {url}/v1/models/{model}:predict`` with ``{"instances": [{user_id, k, history, context}]}``
→ ``{"predictions": [{items, scores, model_version, cold_start, fallback, …}]}``. A 5xx, a
timeout, a refused connection or a body without ``items`` is an :class:`UpstreamFailed`
(with ``reason``); a 4xx is the caller's fault and passes through as a bad request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from serving.router.errors import BadRequest, UpstreamFailed, UpstreamTimeout
from serving.router.schema import RecommendRequest

__all__ = ["Prediction", "UpstreamClient", "make_http_client"]


@dataclass(frozen=True, slots=True)
class Prediction:
    items: list[int]
    scores: list[float]
    model_version: str
    cold_start: bool
    fallback: bool


def make_http_client(max_connections: int, timeout: float,
                     transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport,
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_connections, keepalive_expiry=60.0),
        timeout=httpx.Timeout(timeout), trust_env=False)


class UpstreamClient:
    def __init__(self, client: httpx.AsyncClient, model_name: str) -> None:
        self.client = client
        self.model_name = model_name
        self._paths: dict[str, str] = {}

    def _url(self, base: str) -> str:
        url = self._paths.get(base)
        if url is None:
            url = self._paths[base] = f"{base.rstrip('/')}/v1/models/{self.model_name}:predict"
        return url

    async def predict(self, base_url: str, req: RecommendRequest, request_id: str, *,
                      variant: str, timeout: float | None = None) -> Prediction:
        instance: dict[str, Any] = {"user_id": req.user_id, "k": req.k}
        if req.history is not None:
            instance["history"] = req.history
        if req.context is not None:
            instance["context"] = req.context
        body = orjson.dumps({"instances": [instance]})
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            resp = await self.client.post(
                self._url(base_url), content=body,
                headers={"content-type": "application/json", "x-request-id": request_id},
                **kwargs)
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"{variant} model server timed out", reason="timeout",
                                  variant=variant) from None
        except httpx.TransportError as exc:
            raise UpstreamFailed(f"{variant} model server unreachable: {type(exc).__name__}",
                                 reason="connect", variant=variant) from None
        if resp.status_code >= 500:
            raise UpstreamFailed(f"{variant} model server answered {resp.status_code}",
                                 reason="status_5xx", variant=variant,
                                 upstream_status=resp.status_code)
        if resp.status_code >= 400:
            try:
                detail = orjson.loads(resp.content)
                message = detail.get("error") or detail.get("detail") or resp.text
                field = detail.get("field")
            except (orjson.JSONDecodeError, AttributeError):
                message, field = resp.text, None
            raise BadRequest(str(message), field=field, variant=variant)
        try:
            pred = orjson.loads(resp.content)["predictions"][0]
            return Prediction(items=[int(x) for x in pred["items"]],
                              scores=[float(x) for x in pred["scores"]],
                              model_version=str(pred.get("model_version", "")),
                              cold_start=bool(pred.get("cold_start", False)),
                              fallback=bool(pred.get("fallback", False)))
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
            raise UpstreamFailed(f"{variant} model server sent an invalid body",
                                 reason="bad_response", variant=variant) from None
