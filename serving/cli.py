"""``marquee serve``: run one model version with KServe or BentoML.

    marquee serve --runtime kserve --model-version 3 --port 8080
    marquee serve --runtime kserve --alias production
    marquee serve --runtime kserve --bundle-uri s3://bucket/models/movie-recommender/3
    marquee serve --runtime bentoml --alias candidate --port 3000
    marquee serve --runtime payload-sink --port 8080    # no model: the payload-log sink

Flags override ``MARQUEE_SERVING_*`` environment variables (see ``serving.settings``); the
bind address defaults to ``MARQUEE_BIND_HOST`` (127.0.0.1). This is also the container
command of an InferenceService whose ``storageUri`` points at the bundle (``--bundle-uri``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from marquee.settings import Settings
    from serving.settings import ServingSettings

__all__ = ["serve", "bento_command", "resolve_for_bento"]


def _env_of(serving: object) -> dict[str, str]:
    """The serving settings as ``MARQUEE_SERVING_*`` variables (for BentoML's workers)."""
    env: dict[str, str] = {}
    for name, value in serving.model_dump().items():  # type: ignore[attr-defined]
        if value is None:
            continue
        env[f"MARQUEE_SERVING_{name.upper()}"] = (
            ("true" if value else "false") if isinstance(value, bool) else str(value))
    return env


def resolve_for_bento(settings: Settings, serving: ServingSettings) -> ServingSettings:
    """``serving`` naming the bundle by URI, after the reference resolved and the bundle
    verified here: a bad alias, version or bundle fails before BentoML starts (BentoML would
    restart a worker that fails to load, for ever), and the worker loads what was checked."""
    from serving.runtime.loader import fetch_verified, pinned, resolve_bundle_uri

    uri = resolve_bundle_uri(serving, settings)
    cache = Path(serving.cache_dir) if serving.cache_dir else settings.home / "bundles"
    fetch_verified(uri, settings, cache)  # the worker finds the verified copy in this cache
    return pinned(serving, uri)


def bento_command(host: str, port: int, grace_period_seconds: int) -> list[str]:
    """``bentoml serve`` of the service; on SIGTERM its worker waits at most the grace period
    for requests in flight, as KServe's uvicorn does (BentoML's default waits for every one)."""
    return [sys.executable, "-m", "bentoml", "serve", "serving.bento.service:MovieRecommender",
            "--host", host, "--port", str(port),
            "--timeout-graceful-shutdown", str(grace_period_seconds),
            "--working-dir", str(Path(__file__).resolve().parents[1])]


def _run_kserve(settings: Settings, serving: ServingSettings) -> None:
    """The KServe runtime; a bundle it cannot load ends the command with the one ``error:``
    line naming the bundle and the cause, and exit 1, as Marquee's own errors do (it was a
    traceback when the cause was not Marquee's, such as a missing redis package)."""
    from serving.errors import RuntimeLoadError

    argv, sys.argv = sys.argv, sys.argv[:1]  # kserve parses sys.argv when imported
    try:
        from serving.kserve import run
    finally:
        sys.argv = argv
    try:
        run(settings, serving)
    except RuntimeLoadError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


def serve(
    runtime: Annotated[str, typer.Option(
        help="kserve, bentoml, or payload-sink (no model: the CloudEvents payload-log sink "
        "that InferenceServices' loggers post to).")] = "kserve",
    model_version: Annotated[str | None, typer.Option(help="Registry version.")] = None,
    alias: Annotated[str | None, typer.Option(help="Registry alias, e.g. production.")] = None,
    bundle_uri: Annotated[str | None, typer.Option(help="Bundle directory or s3:// URI.")] = None,
    host: Annotated[str | None, typer.Option(
        help="Bind address (default MARQUEE_SERVING_HOST, else MARQUEE_BIND_HOST: "
        "127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port.")] = None,
    enable_grpc: Annotated[bool, typer.Option(help="Also start KServe's gRPC server.")] = False,
    variant: Annotated[str | None, typer.Option(help="Variant label for logs/metrics.")] = None,
) -> None:
    """Serve a model version with KServe or BentoML."""
    from marquee.settings import Settings
    from serving.settings import ServingSettings

    settings = Settings()
    refs = [f"--{k.replace('_', '-')}" for k, v in (("model_version", model_version),
            ("alias", alias), ("bundle_uri", bundle_uri)) if v is not None]
    if len(refs) > 1:  # the settings' own refusal read "value: Value error, set only one of …"
        raise typer.BadParameter(f"give only one of --model-version, --alias, --bundle-uri "
                                 f"(got {' and '.join(refs)})", param_hint=refs[-1])
    if host is not None and not host.strip():  # not "fall back to MARQUEE_BIND_HOST"
        raise typer.BadParameter(f"must not be empty, got {host!r} (leave the option out to "
                                 "bind MARQUEE_SERVING_HOST or MARQUEE_BIND_HOST)",
                                 param_hint="--host")
    if variant is not None:  # a label of every series: named here in one short line
        from serving.settings import variant_problem

        problem = variant_problem(variant)
        if problem:
            got = (repr(variant) if len(variant) <= 40
                   else f"{variant[:40]!r}… ({len(variant)} characters)")
            raise typer.BadParameter(f"{problem}, got {got}", param_hint="--variant")
    given = {"runtime": runtime, "model_version": model_version, "alias": alias,
             "bundle_uri": bundle_uri, "host": host, "port": port, "variant": variant}
    overrides = {k: v for k, v in given.items() if v is not None}
    if enable_grpc:
        overrides["enable_grpc"] = True
    if overrides.keys() & {"model_version", "alias", "bundle_uri"}:  # a flag beats the env
        for key in ("model_version", "alias", "bundle_uri"):
            overrides.setdefault(key, None)
    serving = ServingSettings(**overrides)
    # flags a runtime has no use for were ignored without a word: a server without the gRPC
    # or the model asked for
    if enable_grpc and serving.runtime != "kserve":
        raise typer.BadParameter(f"only the kserve runtime serves gRPC (runtime "
                                 f"{serving.runtime})", param_hint="--enable-grpc")
    unused = [f"--{k.replace('_', '-')}" for k in ("model_version", "alias", "bundle_uri",
                                                   "variant") if given[k] is not None]
    if serving.runtime == "payload-sink" and unused:
        raise typer.BadParameter("not used by the payload-sink runtime, which serves no "
                                 "model", param_hint=unused[0])
    bind = serving.host or settings.bind_host
    from serving.runtime.loader import check_listen

    # before a model is fetched and loaded; uvicorn's own refusal (the sink's) is exit 3
    check_listen(bind, serving.port)  # BentoML's own refusal is a 50-line traceback
    if serving.enable_grpc and serving.runtime == "kserve":
        check_listen(bind, serving.grpc_port, "grpc_port")
    if serving.omp_threads and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(serving.omp_threads)  # before OpenMP loads
    if serving.runtime == "payload-sink":
        from serving.payload.service import run_sink

        run_sink(settings, serving)
        return
    if serving.runtime == "kserve":
        _run_kserve(settings, serving)
        return
    serving = resolve_for_bento(settings, serving)
    # the worker reads exactly these settings: no MARQUEE_SERVING_ALIAS left beside the URI
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_SERVING_")}
    # BENTOML_CONTAINERIZED: BentoML's own images set it. Its arbiter then does not restart a
    # worker that fails to load (for ever, never ready) but exits non-zero, and the pod's
    # restart policy takes over, as for the KServe runtime.
    env.update(_env_of(serving), BENTOML_DO_NOT_TRACK="true", BENTOML_CONTAINERIZED="true")
    cmd = bento_command(bind, serving.port, serving.grace_period_seconds)
    os.execvpe(cmd[0], cmd, env)  # keep the pid: the caller stops the server by it
