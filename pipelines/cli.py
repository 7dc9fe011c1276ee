"""``marquee pipeline compile | run --local | submit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand

__all__ = ["app"]

app = typer.Typer(add_completion=False, help="Compile, run locally or submit the training pipeline.")
console = Console()

KEY_METRICS = ("ndcg_at_10", "recall_at_10", "recall_at_50", "map_at_10", "mrr", "coverage_at_10",
               "ndcg_at_10.cold")


PIPELINE_DEFAULT = "Default: the pipeline's (below)."

# The options `run` and `submit` share; one left out takes the pipeline's own default.
SplitModeOpt = Annotated[Optional[str], typer.Option(
    help="user_temporal, temporal, user_random. " + PIPELINE_DEFAULT)]
NTrialsOpt = Annotated[Optional[int], typer.Option(
    help="Optuna trials before training (0: defaults). " + PIPELINE_DEFAULT)]
ConfigJsonOpt = Annotated[Optional[str], typer.Option(
    help="RecommenderConfig overrides as JSON. " + PIPELINE_DEFAULT)]
ParamOpt = Annotated[list[str], typer.Option(
    "--param", help="Any pipeline parameter, NAME=VALUE.")]


class PipelineParamsCommand(TyperCommand):
    """A command whose help ends with every pipeline parameter and its default, read from
    the pipeline itself when the help is shown (building it imports kfp: not at import)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if not self.epilog:
            from pipelines.training import build_pipeline

            inputs = build_pipeline().component_spec.inputs or {}
            self.epilog = "Pipeline parameters (--param NAME=VALUE) and their defaults:\n\n" + (
                "\n".join(f"  {name} = {json.dumps(spec.default)}"
                          for name, spec in inputs.items()))
        super().format_help(ctx, formatter)


def _params(source: str | None, split_mode: str | None, n_trials: int | None,
            config_json: str | None, extra: list[str]) -> dict:
    """The parameters given; one left out takes the pipeline's own default."""
    params: dict = {k: v for k, v in {"source": source, "split_mode": split_mode,
                                      "n_trials": n_trials, "config_json": config_json}.items()
                    if v is not None}
    types = {} if not extra else _param_types()
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--param {item!r}: expected NAME=VALUE", param_hint="--param")
        params[key] = _param_value(value, types.get(key))
    return params


def _param_types() -> dict[str, str]:
    """Each pipeline parameter's declared type (``String``, ``Integer``, ``Float``)."""
    from pipelines.training import build_pipeline

    inputs = build_pipeline().component_spec.inputs or {}
    return {name: str(spec.type) for name, spec in inputs.items()}


def _param_value(value: str, kind: str | None) -> object:
    """A ``--param`` value as the parameter's type reads it: text for a String parameter
    (``home=2024`` is a directory name), Python's number syntax for a number (``.2``, ``1e3``,
    ``+5``, which JSON refuses: they were passed on as text and refused as "must be a
    number"). A value that is not such a number stays text, for the pipeline's own checks
    to refuse naming it; an unknown name keeps the JSON reading, for them to refuse too."""
    if kind == "String":
        return value
    if kind in ("Integer", "Float"):
        try:
            return int(value) if kind == "Integer" else float(value)
        except ValueError:
            return value
    try:
        return json.loads(value) if value[:1] in "0123456789-[{" else value
    except json.JSONDecodeError:
        return value


@app.command("compile")
def compile_cmd(
    output: Path = typer.Option(Path("build/marquee-training.yaml"), "--output", "-o",
                                help="Where to write the pipeline IR YAML."),
    image: Optional[str] = typer.Option(None, help="Base image of the components "
                                        "(default: settings.pipeline_image)."),
) -> None:
    """Write the IR YAML that you upload in the Kubeflow Pipelines UI."""
    from marquee.settings import Settings
    from pipelines.run import compile_pipeline

    if output.is_dir() or output.suffix != ".yaml":
        raise typer.BadParameter(f"{output}: give a file name ending in .yaml (the pipeline's "
                                 "IR YAML)", param_hint="--output")
    settings = Settings()
    path = compile_pipeline(output, image or settings.pipeline_image)
    # the path and image were given: text, not rich markup ("[/x]" was a MarkupError)
    console.print(f"compiled [bold]{escape(str(path))}[/] "  # one line: a path to copy
                  f"(image {escape(image or settings.pipeline_image)})", soft_wrap=True,
                  highlight=False)


@app.command("run", cls=PipelineParamsCommand)
def run_cmd(
    local: bool = typer.Option(True, "--local/--no-local", help="Run with kfp.local here."),
    source: Optional[str] = typer.Option(None, help="movielens-100k[:PATH], synth:…, a dir or "
                                         "s3://bucket/prefix. " + PIPELINE_DEFAULT),
    split_mode: SplitModeOpt = None,
    n_trials: NTrialsOpt = None,
    config_json: ConfigJsonOpt = None,
    param: ParamOpt = [],  # noqa: B006 - typer copies it
) -> None:
    """Run the training pipeline on this machine and print the registered version."""
    from marquee.settings import Settings
    from pipelines.run import run_local, submit

    settings = Settings()
    params = _params(source, split_mode, n_trials, config_json, param)
    if not local:
        if not settings.kubeflow_host:  # submit's own hint names --host, which run lacks
            raise typer.BadParameter("--no-local submits to Kubeflow: set MARQUEE_KUBEFLOW_HOST "
                                     "(or use 'marquee pipeline submit --host URL')",
                                     param_hint="--no-local")
        run_id = submit(settings, params)
        from marquee.errors import redact_uri

        console.print(f"submitted run [bold]{escape(run_id)}[/] to "
                      f"{escape(redact_uri(settings.kubeflow_host))}")
        return
    if isinstance(params.get("source"), str):  # a usage error, before any run is created
        from components.common import check_local_source
        from marquee.errors import InvalidArgumentError

        try:
            check_local_source(params["source"])
        except InvalidArgumentError as exc:
            raise typer.BadParameter(str(exc).removeprefix("source="), param_hint=(
                "--source" if source is not None else "--param source")) from None
    result = run_local(settings, params)
    table = Table(title=escape(f"{settings.model_name} v{result.version} — gate: {result.gate}"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in KEY_METRICS:
        if name in result.metrics:
            table.add_row(name, f"{result.metrics[name]:.4f}")
    console.print(table)
    # soft_wrap: a URI longer than the terminal (or than 80 columns, in a pipe) stays on one
    # line that can be copied whole (rich cut it into lines)
    console.print(f"bundle {result.bundle_uri}\nrun {result.run_id} ({result.seconds:.0f} s)",
                  soft_wrap=True, highlight=False, markup=False)


@app.command("submit", cls=PipelineParamsCommand)
def submit_cmd(
    host: Optional[str] = typer.Option(None, help="Kubeflow Pipelines API (default: settings)."),
    source: Optional[str] = typer.Option(None, help="movielens-100k[:PATH], synth:…, a dir "
                                         "(inside the step's pod) or s3://bucket/prefix. "
                                         + PIPELINE_DEFAULT),
    split_mode: SplitModeOpt = None,
    n_trials: NTrialsOpt = None,
    config_json: ConfigJsonOpt = None,
    param: ParamOpt = [],  # noqa: B006 - typer copies it
    experiment: str = typer.Option("marquee", help="Kubeflow experiment of the run."),
) -> None:
    """Submit a run to a Kubeflow Pipelines host with kfp.Client."""
    from marquee.settings import Settings
    from pipelines.run import submit

    settings = Settings()
    run_id = submit(settings, _params(source, split_mode, n_trials, config_json, param), host,
                    experiment)
    console.print(f"submitted run [bold]{escape(run_id)}[/]")
