"""The recommender as a BentoML service, on the same runtime and handler as KServe.

``bentoml serve serving.bento.service:MovieRecommender`` (what ``marquee serve --runtime
bentoml`` runs) loads the model version named by ``MARQUEE_SERVING_*`` (see
``serving.settings``) in the worker's ``__init__``, so the worker is ready only after the
bundle is verified and the index built. The API speaks KServe V1 on the same path, so the
router can put either runtime behind a variant:
``POST /v1/models/movie-recommender:predict`` with ``{"instances": [...]}``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import Field

from serving.errors import ServingError
from serving.runtime.middleware import ServingMiddleware
from serving.runtime.schema import Instance

__all__ = ["MovieRecommender"]

# Set by the worker's service instance; read by the middleware of the same worker.
_LOADED: dict[str, Any] = {"version": "", "variant": "", "max_body_bytes": 65536}


class _Error(BentoMLException):
    """A serving error with its status, for BentoML's error mapping."""


@bentoml.service(
    name="movie-recommender",
    workers=1,
    traffic={"timeout": 30},
    logging={"access": {"enabled": False}},
)
class MovieRecommender:
    def __init__(self) -> None:
        from marquee.settings import Settings
        from serving.runtime.loader import build_service, open_payload_logger
        from serving.settings import ServingSettings

        settings = Settings()
        serving = ServingSettings()
        self.payload = open_payload_logger(settings, serving)
        self.service = build_service(settings, serving, self.payload)
        _LOADED.update(version=self.service.version, variant=serving.variant,
                       max_body_bytes=serving.max_body_bytes)

    @bentoml.api(route="/v1/models/movie-recommender:predict")
    async def predict(self, instances: Annotated[list[Instance], Field(min_length=1)]
                      ) -> dict[str, Any]:
        if len(instances) > self.service.max_instances:
            raise _Error(f"instances: at most {self.service.max_instances} per request "
                         f"(got {len(instances)})", error_code=HTTPStatus.BAD_REQUEST)
        try:
            preds = await self.service.predict(instances)
        except ServingError as exc:
            raise _Error(exc.message, error_code=HTTPStatus(exc.status_code)) from None
        return {"predictions": preds}

    @bentoml.api(route="/marquee/model")
    def model_info(self) -> dict[str, Any]:
        rt = self.service.runtime
        return {"ready": True, "name": "movie-recommender", "model_version": rt.version,
                "bundle_uri": rt.bundle_uri, "n_items": rt.n_items, "candidates": rt.candidates,
                "index": rt.index_report.as_dict()}

    @bentoml.on_shutdown
    def flush_payload_logs(self) -> None:
        if self.payload is not None:
            self.payload.close()


MovieRecommender.add_asgi_middleware(
    ServingMiddleware, max_body_bytes=lambda: _LOADED["max_body_bytes"],
    version=lambda: _LOADED["version"], variant=lambda: _LOADED["variant"])
