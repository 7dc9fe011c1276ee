"""The KServe model server: ``marquee serve --runtime kserve``."""

from __future__ import annotations

import logging
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
    from serving.runtime.loader import build_service, check_listen, open_payload_logger

    _log_with_kserve()
    payload = open_payload_logger(settings, serving)
    try:
        model = RecommenderModel(settings.model_name,
                                 lambda: build_service(settings, serving, payload))
        model.load()
        host = serving.host or settings.bind_host
        check_listen(host, serving.port)  # one error line, not uvicorn's and exit 3
        if serving.enable_grpc:
            check_listen(host, serving.grpc_port, "grpc_port")
        server = MarqueeModelServer(
            host=host, http_port=serving.port,
            enable_grpc=serving.enable_grpc, grpc_port=serving.grpc_port,
            grace_period=serving.grace_period_seconds, max_body_bytes=serving.max_body_bytes,
            variant=serving.variant,
            pairer=sink_pairer(serving, payload),
            sink_token=serving.sink_token)
        server.start([model])
    finally:
        if payload is not None:
            payload.close()


def _log_with_kserve() -> None:
    """Marquee's INFO lines (the start line, a 404 for another model, the sink's) through
    KServe's handlers and format: KServe configures only its own and uvicorn's loggers, so
    they reached no handler and were dropped."""
    from kserve.logging import configure_logging
    from kserve.logging import logger as kserve_log

    configure_logging()  # KServe's, as its ModelServer would (a no-op once configured)
    ours = logging.getLogger("serving")
    ours.setLevel(logging.INFO)
    for handler in kserve_log.handlers:
        ours.addHandler(handler)
    ours.propagate = False
