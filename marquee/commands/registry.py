"""``marquee registry``: list, inspect and alias registered model versions."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from marquee.errors import MarqueeError, redact_uri
from marquee.registry import PRODUCTION, ModelVersionInfo, Registry
from marquee.settings import Settings

__all__ = ["app"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="List and alias registered model versions.")


def _registry(settings: Settings) -> Registry:
    if settings.registry_uri is None:  # the embedded default: SQLite under MARQUEE_HOME
        settings.home.mkdir(parents=True, exist_ok=True)
    import mlflow  # noqa: F401 - configures its loggers on import; quieten them afterwards

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # a reader: a sqlite registry URI naming no database is named, not created empty
    return Registry.from_settings(settings)


@contextmanager
def _errors_to_exit() -> Iterator[None]:
    try:
        yield
    except MarqueeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from exc  # SystemExit: typer.Exit is unknown to a plain click group


def _created(info: ModelVersionInfo) -> str:
    return f"{info.created:%Y-%m-%d %H:%M:%S} UTC"


@app.command("list")
def list_versions() -> None:
    """Every version with its aliases, NDCG@10 and gate decision, newest first."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    settings = Settings()
    with _errors_to_exit():
        registry = _registry(settings)
        versions = registry.list_versions()
    console = Console()
    where = escape(redact_uri(registry.tracking_uri))
    if not versions:
        console.print(f"no versions of {settings.model_name} in {where}")
        return
    table = Table(title=f"{settings.model_name} ({where})")
    for column in ("version", "aliases", "ndcg@10", "gate decision", "created"):
        table.add_column(column, justify="right" if column in ("version", "ndcg@10") else "left")
    for info in reversed(versions):
        ndcg = info.metrics.get("ndcg_at_10")
        table.add_row(str(info.version), ", ".join(info.aliases) or "-",
                      "-" if ndcg is None else f"{ndcg:.4f}", escape(info.gate_decision or "-"),
                      _created(info))
    console.print(table)


@app.command()
def show(version: str = typer.Argument(..., help="A version number or an alias.")) -> None:
    """One version: bundle URI, aliases and every tag."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    settings = Settings()
    with _errors_to_exit():
        registry = _registry(settings)
        info = registry.get_version(registry.resolve_version(version))
    table = Table(title=f"{settings.model_name} version {info.version}", show_header=True)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    table.add_row("bundle_uri", escape(info.bundle_uri))
    table.add_row("aliases", ", ".join(info.aliases) or "-")
    table.add_row("created", _created(info))
    for key in sorted(info.tags):  # text, not rich markup: a tag set by hand may hold "[/x]"
        if key != "bundle_uri":
            table.add_row(escape(key), escape(info.tags[key]))
    console = Console()
    console.print(table)
    # the URI once more on a line of its own, whole: the table folds a long one into pieces
    # that cannot be copied (docs/DEPLOY.md has users copy it into a version's bundleUri)
    console.print(f"bundle_uri {info.bundle_uri}", soft_wrap=True, highlight=False, markup=False)


@app.command()
def alias(
    name: str = typer.Argument(..., help="Alias: candidate, previous, production, …"),
    version: str = typer.Argument(..., help="Version number (or an alias to copy)."),
    force: bool = typer.Option(False, "--force",
                               help="Allow setting 'production' by hand (normally the rollout "
                                    "controller's job)."),
) -> None:
    """Point alias NAME at VERSION."""
    if name == PRODUCTION and not force:
        typer.echo("error: 'production' is moved by the rollout controller "
                   "(`marquee rollout promote`); pass --force to set it by hand", err=True)
        raise SystemExit(2)
    settings = Settings()
    with _errors_to_exit():
        registry = _registry(settings)
        number = registry.resolve_version(version)
        registry.set_alias(name, number)
    typer.echo(f"{settings.model_name}@{name} -> version {number}")


@app.command()
def unalias(
    name: str = typer.Argument(..., help="Alias to remove: candidate, previous, …"),
    force: bool = typer.Option(False, "--force",
                               help="Allow removing 'production' (then nothing is production: "
                                    "servers and rollouts that follow it have no version)."),
) -> None:
    """Remove alias NAME (a stale candidate, say); the version itself stays registered."""
    if name == PRODUCTION and not force:
        typer.echo("error: removing 'production' leaves no production version for servers and "
                   "rollouts that follow it; pass --force to remove it anyway", err=True)
        raise SystemExit(2)
    settings = Settings()
    with _errors_to_exit():
        registry = _registry(settings)
        was = registry.get_alias(name)
        registry.delete_alias(name)
    typer.echo(f"{settings.model_name}@{name} removed (was version {was.version})" if was
               else f"{settings.model_name}@{name} was not set; nothing to remove")
