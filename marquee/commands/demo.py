"""``marquee demo``: the whole loop on the embedded default, on this machine.

    marquee demo                 # train → serve → replay → drift → alert → retrain → shadow →
                                 # canary → promote, then an HTML report
    marquee demo --train-only    # only the training pipeline and the registry (as before)

Everything runs locally on MovieLens-100k with the local store and the SQLite registry under
``MARQUEE_HOME``: the training pipeline with kfp.local, one model server per version, the
router, the retrain trigger, the drift job, and Prometheus and Alertmanager when installed
(otherwise the alert is posted to the trigger's webhook directly, and the screen says so).
Every process the demo starts is stopped at the end, also on Ctrl-C. The registry keeps every
version, so a second run starts from the production version the first one promoted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from marquee.filelock import LockHeld, flock

__all__ = ["demo"]

console = Console()



def _registry_table(settings) -> Table:
    from marquee.registry import Registry

    table = Table(title=f"registry: {settings.model_name}")
    for col in ("version", "aliases", "ndcg@10", "recall@50", "map@10", "coverage@10", "gate"):
        table.add_column(col)
    for info in Registry.from_settings(settings).list_versions():
        m = info.metrics
        table.add_row(str(info.version), ",".join(info.aliases),
                      *(f"{m.get(k, float('nan')):.4f}" for k in
                        ("ndcg_at_10", "recall_at_50", "map_at_10", "coverage_at_10")),
                      escape(info.gate_decision or ""))
    return table


def _train_only(settings, n_trials: int, config_json: str) -> None:
    from pipelines.run import run_local

    started = time.perf_counter()
    with console.status("training pipeline (kfp.local): ingest → validate → split → features "
                        "→ tune → train → evaluate → register"):
        result = run_local(settings, {"source": "movielens-100k", "n_trials": n_trials,
                                      "config_json": json.loads(config_json)})
    console.print(f"[bold green]registered version {result.version}[/] "
                  f"(gate: {escape(str(result.gate))}) in {time.perf_counter() - started:.0f} s")
    console.print(f"bundle {result.bundle_uri}", soft_wrap=True, highlight=False,
                  markup=False)  # one line, as given
    console.print(_registry_table(settings))


def _json_option(text: str, option: str) -> object:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc} (got {text!r})", param_hint=option) from None


def _segment(text: str) -> dict[str, list[str]]:
    """``--segment``: user columns of the data contract and the values that pick the drifted
    population, checked here rather than minutes later, after the first training."""
    from recsys.data.schema import AGE_BUCKETS, GENDERS, REGIONS, USERS

    vocab = {"age_bucket": AGE_BUCKETS, "gender": GENDERS, "region": REGIONS}
    columns = [c.name for c in USERS.columns if c.name != "user_id"]
    seg = _json_option(text, "--segment")
    example = '{"occupation": ["student"]}'
    if not isinstance(seg, dict) or not seg:
        raise typer.BadParameter(f"a JSON object of user columns and their values, e.g. "
                                 f"{example} (got {text!r})", param_hint="--segment")
    for column, values in seg.items():
        if column not in columns:
            raise typer.BadParameter(f"{column!r} is not a user column (one of "
                                     f"{', '.join(columns)})", param_hint="--segment")
        if (not isinstance(values, list) or not values
                or not all(isinstance(v, str) for v in values)):
            raise typer.BadParameter(f"{column}: a non-empty list of strings, e.g. {example} "
                                     f"(got {values!r})", param_hint="--segment")
        unknown = [v for v in values if column in vocab and v not in vocab[column]]
        if unknown:
            raise typer.BadParameter(f"{column}: {unknown[0]!r} is not one of "
                                     f"{', '.join(vocab[column])}", param_hint="--segment")
    return seg


def _check_pipeline_options(config: dict, n_trials: int) -> None:
    """``--config-json`` and ``--n-trials`` as the training pipeline checks them, here: the
    demo's pipeline run refused them only after the demo had started (a report of a failed run
    left in the home), and a home with a production version trained nothing first, so the
    retrain found them minutes later, with every server up."""
    from components.common import check_params
    from marquee.errors import InvalidArgumentError

    try:  # these two alone: a registry or store the run cannot use is the run's to report
        check_params(n_trials=n_trials, config_json=json.dumps(config))
    except InvalidArgumentError as exc:
        option = {"n_trials": "--n-trials", "config_json": "--config-json"}.get(exc.field)
        if option is None:
            raise
        prefix = f"{exc.field}={exc.value!r}: "  # the option is named, its value was given
        reason = exc.message.removeprefix(prefix)
        raise typer.BadParameter(reason, param_hint=option) from None


def _check_model_name(settings) -> None:  # noqa: ANN001
    """The loop's processes serve, probe and alert on the default model name: with another
    ``MARQUEE_MODEL_NAME`` the version trained for minutes under that name was then looked up
    by the model server under the default one ("no version 1")."""
    from marquee.errors import MarqueeError
    from monitoring.loop.stack import MODEL

    if settings.model_name != MODEL:
        raise MarqueeError(f"MARQUEE_MODEL_NAME={settings.model_name!r}: the demo's loop serves "
                           f"{MODEL!r}; unset it (or run with --train-only)")


@contextmanager
def _home_lock(settings) -> Iterator[None]:  # noqa: ANN001
    """The home, created, for this demo alone: a second demo on the same home removed the
    first one's routing file and retrain token and could take the first one's retraining
    decision for its own."""
    from marquee.errors import MarqueeError

    home = settings.home.resolve()
    if home.exists() and not home.is_dir():
        raise MarqueeError(f"MARQUEE_HOME={home} is not a directory")
    home.mkdir(parents=True, exist_ok=True)
    if not os.access(home, os.W_OK | os.X_OK):
        raise MarqueeError(f"MARQUEE_HOME={home} is not writable")
    try:
        with flock(home / "demo.lock", wait=False, record_pid=True):
            yield
    except LockHeld as held:
        raise MarqueeError(f"another marquee demo (pid {held.holder}) is running on "
                           f"MARQUEE_HOME={home}: wait for it, or use another home") from None


def demo(
    train_only: bool = typer.Option(False, "--train-only",
                                    help="Only train, evaluate, gate and register a version."),
    n_trials: int = typer.Option(2, min=0, help="Optuna trials before each training."),
    config_json: str | None = typer.Option(
        None, help="RecommenderConfig overrides as JSON (default: a small configuration for "
        "the loop, which trains twice; the full defaults with --train-only)."),
    rate: float = typer.Option(20.0, min=1.0, max=200.0, help="Replayed requests per second."),
    segment: str = typer.Option('{"occupation": ["student"]}',
                                help="The drifted population: user columns and values (JSON)."),
    alerting: str = typer.Option("auto", help="auto | prometheus | direct (post the alert to "
                                 "the trigger's webhook without Prometheus/Alertmanager)."),
    drift_window: int = typer.Option(30, min=10, max=600, help="Drift job window, seconds."),
) -> None:
    """Run the whole loop on MovieLens-100k locally and write an HTML report."""
    from marquee.errors import redact_uri
    from marquee.settings import Settings

    settings = Settings()
    console.print(Panel.fit(escape(f"Marquee demo — home {settings.home.resolve()}\n"
                                   f"store {redact_uri(settings.resolved_store_uri)}\n"
                                   f"registry {redact_uri(settings.resolved_registry_uri)}")))
    if config_json is None:
        from monitoring.loop.demo import DEMO_CONFIG

        config_json = "{}" if train_only else DEMO_CONFIG
    config = _json_option(config_json, "--config-json")
    if not isinstance(config, dict):
        raise typer.BadParameter(f"a JSON object of RecommenderConfig overrides (got "
                                 f"{config_json!r})", param_hint="--config-json")
    seg = _segment(segment)
    if alerting not in ("auto", "prometheus", "direct"):
        raise typer.BadParameter("auto, prometheus or direct", param_hint="--alerting")
    _check_pipeline_options(config, n_trials)
    if train_only:
        with _home_lock(settings):
            _train_only(settings, n_trials, config_json)
        return

    from monitoring.loop.demo import DemoOptions, run_demo

    _check_model_name(settings)
    options = DemoOptions(config=config, n_trials=n_trials, rate=rate, segment=seg,
                          alerting=alerting, drift_window_seconds=drift_window)
    with _home_lock(settings):
        record, path, uri = run_demo(settings, options, console)
    console.rule()
    colour = "green" if record.outcome == "Succeeded" else "yellow"
    console.print(f"[bold {colour}]{record.outcome}[/] in {record.wall_seconds:.0f}s — "
                  f"version {record.baseline_version} → {record.new_version or '—'}")
    console.print(f"report {path}" + (f"\n       {uri}" if uri else ""), highlight=False,
                  markup=False)
    if record.outcome == "interrupted":
        raise typer.Exit(code=130)
    if record.outcome == "failed":
        raise typer.Exit(code=1)
