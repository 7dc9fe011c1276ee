"""``marquee router``: run the rollout router in front of the model servers.

    marquee router --port 8090 --upstream 1=http://127.0.0.1:8081 --upstream 2=http://127.0.0.1:8082 \
        --baseline 1

Flags override ``MARQUEE_ROUTER_*`` variables (``serving.router.settings``). The rollout
controller then sets the routing through ``PUT /admin/routing``.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

__all__ = ["app", "run"]

app = typer.Typer(add_completion=False, help="Run the rollout router in front of model servers.")


def _parse_upstreams(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        version, sep, url = v.partition("=")
        if not sep or not version or not url.startswith(("http://", "https://")):
            raise typer.BadParameter(f"expected VERSION=http://host:port, got {v!r}",
                                     param_hint="--upstream")
        out[version] = url
    return out


@app.command()
def run(
    port: Annotated[int | None, typer.Option(
        help="HTTP port (default MARQUEE_ROUTER_PORT, 8090).")] = None,
    host: Annotated[str | None, typer.Option(
        help="Bind address (default MARQUEE_ROUTER_HOST, else MARQUEE_BIND_HOST: "
        "127.0.0.1).")] = None,
    upstream: Annotated[list[str] | None, typer.Option(
        help="VERSION=URL of a model server; repeat for each version.")] = None,
    baseline: Annotated[str | None, typer.Option(
        help="Version to serve until a controller sets the routing.")] = None,
    routing_file: Annotated[str | None, typer.Option(
        help="Remember the routing here across restarts (default <MARQUEE_HOME>/router/"
        "routing.json; 'none' to disable).")] = None,
    no_logs: Annotated[bool, typer.Option("--no-logs",
                                          help="Do not write exposure/feedback logs.")] = False,
    log_level: Annotated[str, typer.Option(
        help="Python log level: debug, info, warning or error.")] = "info",
) -> None:
    """Run the router (uvicorn, one process)."""
    import uvicorn

    from marquee.settings import Settings
    from marquee.store import open_store
    from serving.router.app import create_app
    from serving.router.settings import RouterSettings

    settings = Settings()
    overrides: dict[str, object] = {}
    if port is not None:
        overrides["port"] = port
    if host is not None:
        overrides["host"] = host
    if upstream:
        overrides["upstreams"] = _parse_upstreams(upstream)
    if baseline is not None:
        overrides["baseline_version"] = baseline
    if no_logs:
        overrides["exposure_log_enabled"] = False
    rs = RouterSettings(**overrides)
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter(f"expected debug, info, warning or error, got {log_level!r}",
                                 param_hint="--log-level")
    if (rs.baseline_version and rs.baseline_version not in rs.upstreams
            and not rs.upstream_url_template):
        raise typer.BadParameter(
            f"no model server URL for version {rs.baseline_version!r}: give it with --upstream "
            f"{rs.baseline_version}=http://HOST:PORT (or MARQUEE_ROUTER_UPSTREAM_URL_TEMPLATE)",
            param_hint="--baseline")
    if routing_file is None:
        routing_file = str(settings.home / "router" / "routing.json")
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    store = (open_store(settings.resolved_store_uri, settings.s3_endpoint_url)
             if rs.exposure_log_enabled else None)
    bind = rs.host or settings.bind_host
    # uvloop and httptools when installed (uvicorn[standard]), asyncio and h11 otherwise.
    app_ = create_app(rs, store, routing_file=None if routing_file == "none" else routing_file)
    config = uvicorn.Config(app_, host=bind, port=rs.port, loop="auto",
                            http="auto", access_log=False, log_level="warning",
                            lifespan="on", timeout_graceful_shutdown=10)
    uvicorn.Server(config).run()
