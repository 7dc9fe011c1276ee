"""The KServe model server: ``marquee serve --runtime kserve``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from marquee.settings import Settings
    from serving.kserve.model import RecommenderModel
    from serving.settings import ServingSettings

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(settings: Settings, serving: ServingSettings) -> None:
    """Load the bundle, then serve it until SIGTERM/SIGINT; payload logs flushed on the way out."""
    from serving.kserve.model import RecommenderModel
    from serving.kserve.server import MarqueeModelServer
    from serving.payload.sink import sink_pairer
    from serving.runtime.loader import build_service, check_listen, open_payload_logger

    _log_with_kserve()
    serving = _resolved(settings, serving)
    payload = open_payload_logger(settings, serving)
    pairer = None
    try:
        model = RecommenderModel(settings.model_name,
                                 lambda: build_service(settings, serving, payload))
        _load(model, serving.bundle_uri or "")
        host = serving.host or settings.bind_host
        check_listen(host, serving.port)  # one error line, not uvicorn's and exit 3
        if serving.enable_grpc:
            check_listen(host, serving.grpc_port, "grpc_port")
        server = MarqueeModelServer(
            host=host, http_port=serving.port,
            enable_grpc=serving.enable_grpc, grpc_port=serving.grpc_port,
            grace_period=serving.grace_period_seconds, max_body_bytes=serving.max_body_bytes,
            variant=serving.variant,
            pairer=(pairer := sink_pairer(serving, payload)),
            sink_token=serving.sink_token)
        server.start([model])
    finally:
        if pairer is not None:  # halves whose pair never came: counted, not lost in silence
            pairer.close()
        if payload is not None:
            payload.close()


def _resolved(settings: Settings, serving: ServingSettings) -> ServingSettings:
    """``serving`` naming its bundle by URI, so that a load failure can name the bundle it
    could not load (an alias or version alone does not say which one that was)."""
    from serving.runtime.loader import pinned, resolve_bundle_uri

    try:
        uri = resolve_bundle_uri(serving, settings)
    except Exception as exc:  # noqa: BLE001 - Marquee's own errors pass through unchanged
        raise _load_error(exc, _reference(serving)) from exc
    return pinned(serving, uri)


def _load(model: RecommenderModel, bundle_uri: str) -> None:
    """``model.load()``; an exception that is not one of Marquee's own (a feature store
    client that is not installed, a recommender that cannot read its files) becomes a
    :class:`~serving.errors.RuntimeLoadError` naming the bundle and the cause, which
    ``marquee serve`` prints as one ``error:`` line: it ended the command with a traceback."""
    from marquee.errors import redact_uri

    try:
        model.load()
    except Exception as exc:  # noqa: BLE001 - Marquee's own errors pass through unchanged
        raise _load_error(exc, f"bundle {redact_uri(bundle_uri)}") from exc


def _reference(serving: ServingSettings) -> str:
    """What ``serving`` names as the model to serve, for a message."""
    if serving.model_version:
        return f"model version {serving.model_version}"
    return f"alias {serving.alias or 'production'}"


def _load_error(exc: Exception, what: str) -> Exception:
    """``exc`` itself when it is one of Marquee's own errors (``marquee`` prints those as one
    line already), else a RuntimeLoadError naming ``what`` and the cause in one line. The
    traceback is logged at DEBUG (``KSERVE_LOGLEVEL=DEBUG``), for whoever must dig further."""
    from marquee.errors import MarqueeError, redact_uri
    from serving.errors import RuntimeLoadError

    if isinstance(exc, MarqueeError):
        return exc
    log.debug("loading %s failed", what, exc_info=exc)
    cause = " ".join(redact_uri(str(exc)).split())  # one line, whatever the exception wrote
    if len(cause) > _MAX_CAUSE_CHARS:
        cause = cause[:_MAX_CAUSE_CHARS] + "…"
    return RuntimeLoadError(f"cannot load the model from {what}: {type(exc).__name__}"
                            + (f": {cause}" if cause else ""))


_MAX_CAUSE_CHARS = 500


def _log_with_kserve() -> None:
    """Marquee's INFO lines (the start line, a 404 for another model, the sink's) through
    KServe's handlers and format: KServe configures only its own and uvicorn's loggers, so
    they reached no handler and were dropped."""
    from kserve.logging import configure_logging
    from kserve.logging import logger as kserve_log

    configure_logging()  # KServe's, as its ModelServer would (a no-op once configured)
    ours = logging.getLogger("serving")
    # INFO, or DEBUG with KServe's (KSERVE_LOGLEVEL=DEBUG: a load failure's traceback)
    ours.setLevel(min(logging.INFO, kserve_log.getEffectiveLevel()))
    for handler in kserve_log.handlers:
        ours.addHandler(handler)
    ours.propagate = False
