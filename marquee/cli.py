"""The ``marquee`` command line.

Each sub-command lives in the package that owns it and is imported only when it is used,
so ``marquee --help`` stays fast and the platform core never imports the layers above it
at import time. A sub-command target is ``module:attr`` naming a Typer app or a Click command.
"""

from __future__ import annotations

import importlib

import click
import typer

__all__ = ["main", "COMMANDS"]

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (target, one-line help)
    "data": ("marquee.commands.data:app", "Fetch, synthesise and validate datasets."),
    "registry": ("marquee.commands.registry:app", "List and alias registered model versions."),
    "pipeline": ("pipelines.cli:app", "Compile, run locally or submit the training pipeline."),
    "serve": ("serving.cli:serve", "Serve a model version with KServe or BentoML."),
    "router": ("serving.router.cli:app", "Run the rollout router in front of model servers."),
    "rollout": ("serving.rollout.cli:app", "Start, watch, promote and abort rollouts."),
    "traffic": ("serving.replay.cli:app", "Replay held-out interactions as live traffic."),
    "drift": ("monitoring.drift.cli:app", "Check payload logs for data and prediction drift."),
    "skew": ("monitoring.skew.cli:app", "Check served features against offline features."),
    "retrain": ("monitoring.retrain.cli:retrain", "Start a retraining run (on-call)."),
    "incidents": ("monitoring.retrain.cli:incidents", "List firing alerts and recent retraining."),
    "trigger": ("monitoring.retrain.cli:trigger", "Run the Alertmanager retrain webhook."),
    "demo": ("marquee.commands.demo:demo", "Run the whole loop on the embedded default."),
}


def _load(target: str) -> click.Command:
    module_name, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module_name), attr)
    if isinstance(obj, typer.Typer):
        return typer.main.get_command(obj)
    if isinstance(obj, click.Command):
        return obj
    if callable(obj):  # a plain function: wrap it as a single Typer command
        app = typer.Typer(add_completion=False)
        app.command()(obj)
        return typer.main.get_command(app)
    raise TypeError(f"{target} is not a command")


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        cmd = _load(COMMANDS[cmd_name][0])
        cmd.name = cmd_name
        if not cmd.help:
            cmd.help = COMMANDS[cmd_name][1]
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="marquee-mlops")
def cli() -> None:
    """Marquee: train, register, serve, roll out and monitor a movie recommender."""


def main() -> None:
    """The ``marquee`` entry point: a bad command line or a refused operation ends with one
    ``error: …`` line (or click's usage text) and a non-zero exit, not a traceback.

    Exit codes: 2 for a usage error or invalid settings, 1 for an operation Marquee refused
    or could not do (:class:`~marquee.errors.MarqueeError`, a file that is missing or
    unreadable), 128 + signal number when stopped by SIGTERM. SIGTERM unwinds like Ctrl-C,
    so a command's ``finally`` blocks run: a retraining run started in this process is
    stopped with it instead of outliving it."""
    import sys

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from marquee.errors import MarqueeError, error_text, unwind_on_sigterm, validation_text

    unwind_on_sigterm()  # servers started by a command install their own
    _replace_unencodable()
    try:
        # Typer bundles its own click: its exceptions are not click's, so the group's
        # standalone mode lets them through; map them here.
        cli(standalone_mode=True)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except _TYPER_CLICK_ERRORS as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ValidationError as exc:
        click.echo(f"error: invalid settings: {validation_text(exc)}", err=True)
        sys.exit(2)
    except SettingsError as exc:  # a MARQUEE_* value that is not even parseable (bad JSON)
        click.echo(f"error: invalid settings: {error_text(exc)}", err=True)
        sys.exit(2)
    except MarqueeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        if exc.filename is None:  # a network or system failure: keep its traceback
            raise
        click.echo(f"error: {exc.filename}: {exc.strerror}", err=True)
        sys.exit(1)


def _replace_unencodable() -> None:
    """Print what stdout and stderr cannot encode as "?" instead of failing on it: the tables
    and lines hold arrows and dashes ("baseline 1 → candidate 2"), and on a stdout that is not
    UTF-8 (a cp1252 console or redirect, a latin-1 or C locale without UTF-8 mode) the command
    ended in a UnicodeEncodeError traceback with nothing shown. A UTF-8 stream is left as it
    is."""
    import codecs
    import sys

    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "utf-8"
        if codecs.lookup(encoding).name != "utf-8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


# The ClickException of the click that typer uses (its own bundled copy since typer 0.16,
# click itself before): usage errors and bad parameters, with show() and exit_code.
_TYPER_CLICK_ERRORS = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


if __name__ == "__main__":
    main()
