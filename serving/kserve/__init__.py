"""The KServe model server: ``marquee serve --runtime kserve``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from marquee.settings import Settings
    from serving.settings import ServingSettings

__all__ = ["run"]


def run(settings: Settings, serving: ServingSettings) -> None:
    """Load the bundle, then serve it until SIGTERM/SIGINT; payload logs flushed on the way out."""
    from serving.kserve.model import RecommenderModel
    from serving.kserve.server import MarqueeModelServer
    from serving.payload.sink import sink_pairer
    from serving.runtime.loader import build_service, open_payload_logger

    payload = open_payload_logger(settings, serving)
    try:
        model = RecommenderModel(settings.model_name,
                                 lambda: build_service(settings, serving, payload))
        model.load()
        server = MarqueeModelServer(
            host=serving.host or settings.bind_host, http_port=serving.port,
            enable_grpc=serving.enable_grpc, grpc_port=serving.grpc_port,
            grace_period=serving.grace_period_seconds, max_body_bytes=serving.max_body_bytes,
            variant=serving.variant,
            pairer=sink_pairer(serving, payload),
            sink_token=serving.sink_token)
        server.start([model])
    finally:
        if payload is not None:
            payload.close()
