"""``marquee demo``: the whole loop on the embedded default, on this machine.

Stage by stage: fetch MovieLens-100k, run the training pipeline with kfp.local (the same
pipeline that runs in Kubeflow), and show what the registry now holds. Each stage prints what
it did; the registry keeps every version, so running the demo again registers the next one,
gated against production.
"""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

__all__ = ["demo"]

console = Console()


def _registry_table(settings) -> Table:
    from marquee.registry import Registry

    table = Table(title=f"registry: {settings.model_name}")
    for col in ("version", "aliases", "ndcg@10", "recall@50", "map@10", "coverage@10", "gate"):
        table.add_column(col)
    for info in Registry(settings.resolved_registry_uri, settings.model_name).list_versions():
        m = info.metrics
        table.add_row(str(info.version), ",".join(info.aliases),
                      *(f"{m.get(k, float('nan')):.4f}" for k in
                        ("ndcg_at_10", "recall_at_50", "map_at_10", "coverage_at_10")),
                      info.gate_decision or "")
    return table


def demo(
    n_trials: int = typer.Option(0, help="Optuna trials before training."),
    config_json: str = typer.Option("{}", help="RecommenderConfig overrides as JSON."),
) -> None:
    """Train, evaluate, gate and register a recommender on MovieLens-100k, locally."""
    from marquee.settings import Settings
    from pipelines.run import run_local

    settings = Settings()
    console.print(Panel.fit(f"Marquee demo — home {settings.home.resolve()}\n"
                            f"store {settings.resolved_store_uri}\n"
                            f"registry {settings.resolved_registry_uri}"))
    started = time.perf_counter()
    with console.status("training pipeline (kfp.local): ingest → validate → split → features "
                        "→ tune → train → evaluate → register"):
        result = run_local(settings, {"source": "movielens-100k", "n_trials": n_trials,
                                      "config_json": json.loads(config_json)})
    console.print(f"[bold green]registered version {result.version}[/] "
                  f"(gate: {result.gate}) in {time.perf_counter() - started:.0f} s")
    console.print(f"bundle {result.bundle_uri}")
    console.print(_registry_table(settings))
