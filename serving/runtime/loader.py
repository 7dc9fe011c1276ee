"""Load a model version for serving: registry reference → bundle URI → verified bundle → Runtime.

A reference is a registry alias (``production``), a version number, or a bundle URI (a local
directory, ``file://``, ``s3://…/models/<name>/<version>/``, or a key in the object store).
Every file of the bundle is checked against ``bundle.json`` (``marquee.bundle``) before the
recommender reads it; a changed, missing or unlisted file raises ``BundleIntegrityError``.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import shutil
from pathlib import Path

from marquee.errors import InvalidArgumentError, redact_uri
from marquee.settings import Settings
from serving.runtime.online import history_source
from serving.runtime.runtime import Runtime
from serving.settings import ServingSettings

__all__ = ["resolve_bundle_uri", "pinned", "fetch_verified", "load_recommender", "load_runtime",
           "open_payload_logger", "start_payload_logger", "build_service", "log_serving",
           "check_listen"]

log = logging.getLogger(__name__)


def resolve_bundle_uri(serving: ServingSettings, settings: Settings) -> str:
    """The bundle URI that ``serving`` names: its ``bundle_uri`` as given, else what the
    registry resolves its version or alias (default ``production``) to. An alias is never
    read as a path: ``--alias production`` run in a directory holding a ``production/`` folder
    asks the registry, as everywhere else."""
    if serving.bundle_uri:
        return serving.bundle_uri
    from marquee.registry import Registry

    ref = str(serving.model_version or serving.alias or "production")
    # a reader: a sqlite registry URI naming no database is named, not created empty
    return Registry.from_settings(settings).resolve(ref)


def pinned(serving: ServingSettings, uri: str) -> ServingSettings:
    """``serving`` naming its bundle by ``uri`` (the one its reference resolved to), with no
    alias or version left to resolve again: what is loaded is what was resolved."""
    return serving.model_copy(update={"bundle_uri": uri, "alias": None, "model_version": None})


def fetch_verified(uri: str, settings: Settings, cache_dir: Path) -> Path:
    """A local, verified copy of the bundle at ``uri`` (a local bundle is verified in place)."""
    from marquee.bundle import fetch_bundle, verify_bundle
    from marquee.store import local_path_of, open_store

    local = local_path_of(uri) if not uri.startswith("models/") else None
    if local is not None and (local / "bundle.json").is_file():
        verify_bundle(local)
        return local.resolve()
    if local is not None and local.is_absolute():  # a local path that holds no bundle
        from marquee.errors import BundleNotFoundError

        raise BundleNotFoundError(f"no bundle.json in {local}: not a model bundle"
                                  + ("" if local.is_dir() else " (no such directory)"))
    dest = cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if (dest / "bundle.json").is_file():
        try:
            verify_bundle(dest)  # bundles are immutable: a verified cached copy is the bundle
            return dest
        except Exception as exc:  # noqa: BLE001 - a damaged cache is fetched again
            log.warning("cached bundle %s failed verification (%s); fetching again", dest, exc)
            shutil.rmtree(dest, ignore_errors=True)
    elif dest.exists():
        shutil.rmtree(dest, ignore_errors=True)
    store = open_store(settings.resolved_store_uri, settings.s3_endpoint_url)
    path, _ = fetch_bundle(uri, dest, store=store, s3_endpoint_url=settings.s3_endpoint_url)
    return path


def load_recommender(bundle_dir: Path):  # -> recsys.Recommender
    """Read the recommender from a verified bundle and stamp it with the bundle's version."""
    from marquee.bundle import read_manifest
    from recsys import Recommender

    manifest = read_manifest(bundle_dir)
    rec = Recommender.load(bundle_dir)
    rec.version = str(manifest.version)
    rec.prepare_online()  # compile the request path now, not on the first requests
    return rec


def load_runtime(settings: Settings, serving: ServingSettings) -> Runtime:
    """Everything ``marquee serve`` does before it is ready."""
    uri = resolve_bundle_uri(serving, settings)
    cache = Path(serving.cache_dir) if serving.cache_dir else settings.home / "bundles"
    bundle_dir = fetch_verified(uri, settings, cache)
    if serving.torch_threads:  # one request is a tiny forward pass: threads only add contention
        import torch

        torch.set_num_threads(serving.torch_threads)
    rec = load_recommender(bundle_dir)
    history = history_source(serving.redis_url, serving.redis_key_prefix,
                             serving.redis_timeout_ms)
    runtime = Runtime.build(rec, serving, history=history, bundle_uri=uri,
                            bundle_dir=str(bundle_dir))
    runtime.warm_up()
    log.debug("loaded %s version %s from %s", settings.model_name, runtime.version,
              redact_uri(uri))
    # The loaded model's objects are permanent: moved out of the collector's generations, so
    # a collection on the request path does not walk them (the tail of request latency).
    gc.collect()
    gc.freeze()
    return runtime


def check_listen(host: str, port: int, what: str = "port") -> None:
    """Refuse ``host:port`` with one error naming it when it cannot be listened on (taken, or
    no address of this host), before a server is started on it: KServe exited 3 after
    uvicorn's start-up lines, BentoML printed a 50-line traceback. Bound as uvicorn and
    circus bind (``SO_REUSEADDR``), so a port in TIME_WAIT after the previous server is free."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            # a host that is no name or no address of this machine is the host's fault, not
            # the port's ("port=8080: … Name or service not known" sent the reader to the port)
            bad_host = isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL
            raise InvalidArgumentError("host" if bad_host else what, host if bad_host else port,
                                       f"cannot listen on {host}:{port}: "
                                       f"{exc.strerror or exc}") from None


def log_serving(runtime: Runtime, name: str, host: str, port: int, server: str) -> None:
    """The one line a model server logs when it starts serving: the version, the bundle (no
    password in it) and the address, so a log shows what answered from where."""
    log.info("serving %s version %s from %s on http://%s:%d (%s)", name, runtime.version,
             redact_uri(runtime.bundle_uri or "-"), host, port, server)


def open_payload_logger(settings: Settings, serving: ServingSettings):  # -> PayloadLogger | None
    """The started payload logger writing to the object store, or None when disabled."""
    if not serving.payload_log_enabled:
        return None
    return start_payload_logger(settings, serving)


def start_payload_logger(settings: Settings, serving: ServingSettings):  # -> PayloadLogger
    """A started payload logger writing to the object store, with the settings' queue size,
    batch size and flush interval (the payload sink's logger, whatever payload_log_enabled)."""
    from marquee.store import open_store
    from serving.payload.logger import PayloadLogger

    store = open_store(settings.resolved_store_uri, settings.s3_endpoint_url)
    return PayloadLogger(store, queue_size=serving.payload_log_queue_size,
                         queue_bytes=serving.payload_log_queue_mib * 2**20,
                         batch_rows=serving.payload_log_batch_rows,
                         flush_seconds=serving.payload_log_flush_seconds).start()


def build_service(settings: Settings, serving: ServingSettings, payload=None):
    """Load the runtime and wrap it in the request handler both model servers share."""
    from serving.runtime.service import RecommendService

    return RecommendService.from_settings(load_runtime(settings, serving), serving, payload)
