"""``marquee skew check``: served features against the pipeline's feature code, per request.

Exit codes: 0 no skew, 3 skew detected, 2 bad input, 1 anything else (the gauges not pushed
included: the verdict is printed first).

As in ``marquee drift check``, a bundle's verdict is taken on the rows its own model version
served and published under that version (``monitoring.drift.rows``): other versions' rows
are left out, a window without the bundle's rows is no data (exit 2, naming the versions it
holds), and ``--model-version`` may only repeat the bundle's version.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from marquee.errors import MarqueeError, error_text
from marquee.settings import Settings
from monitoring.metrics import pushgateway_url
from monitoring.skew.job import SkewConfig, SkewSummary

__all__ = ["app", "check", "EXIT_SKEW"]

EXIT_SKEW = 3
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Check served features against offline features.")


@app.callback()
def _group() -> None:
    """Check served features against offline features."""  # keeps `check` a sub-command


def _run(settings: Settings, cfg: SkewConfig, *, bundle: str, since: str, until: str,
         model_version: str | None, store_uri: str | None, publish: bool,
         pushgateway: str | None) -> SkewSummary:
    from marquee.store import open_store
    from monitoring.drift.rows import checked_version, only_version, version_keys
    from monitoring.features import feature_kinds
    from monitoring.reference import resolve_bundle_dir
    from monitoring.skew import metrics
    from monitoring.skew.job import run_skew
    from monitoring.skew.offline import bundle_recompute
    from monitoring.drift.report import newer_published
    from monitoring.skew.report import summary_html
    from monitoring.window import parse_window, read_window

    t0 = time.perf_counter()
    win = parse_window(since, until)  # first: a mistyped window is refused before any fetch
    root, manifest = resolve_bundle_dir(bundle, settings)
    version = checked_version(bundle, manifest.version, model_version)
    kinds = feature_kinds()
    store = open_store(store_uri or settings.resolved_store_uri, settings.s3_endpoint_url)
    cols = ["request_id", "user_id", "ts", "request_json", "model_version",
            *(f"f_{n}" for n in kinds)]
    table = read_window(store, version_keys(store, win, version), win, cols)
    table = only_version(table, version, store.uri("payload-logs"))
    summary = run_skew(table, bundle_recompute(root), kinds, cfg, model_name=manifest.name,
                       model_version=version)
    summary.timings_seconds["total"] = round(time.perf_counter() - t0, 3)
    if publish:
        prefix = (f"monitoring/skew/{summary.model_name}/{summary.model_version}/"
                  f"{summary.created:%Y%m%dT%H%M%S.%fZ}")
        summary.outputs = {"report_html": store.uri(f"{prefix}/report.html"),
                           "summary_json": store.uri(f"{prefix}/summary.json")}
        store.put_bytes(f"{prefix}/report.html", summary_html(summary, win).encode())
        body = summary.model_dump_json(indent=2).encode()
        store.put_bytes(f"{prefix}/summary.json", body)
        latest = f"monitoring/skew/{summary.model_name}/{summary.model_version}/latest.json"
        if not newer_published(store, latest, summary.created):  # as the drift check's
            store.put_bytes(latest, body)
    metrics.export(summary)
    if pushgateway:
        summary.push_error = metrics.push(pushgateway, settings.namespace)
    return summary


def _print(console: Console, s: SkewSummary) -> None:
    left_out = (f", {s.rows_without_features:,} rows without logged features left out"
                if s.rows_without_features else "")
    if s.rows_unreadable:  # a foreign or hand-made log: counted, not judged
        left_out += (f", {s.rows_unreadable:,} rows that cannot be recomputed left out "
                     f"(e.g. {s.unreadable_example})")
    # Names, versions, served values and URIs come from the bundle, the payload logs and the
    # command line: text, not rich markup ("[x]" vanished, "[/x]" was a MarkupError).
    table = Table(title=escape(f"Skew: {s.model_name} {s.model_version} — {s.joined:,} "
                               f"requests joined ({s.unmatched} unmatched{left_out})"),
                  title_justify="left",
                  box=box.SIMPLE_HEAD)
    table.add_column("feature", no_wrap=True)
    for col in ("mismatch", "thr", "distance", ""):
        table.add_column(col, no_wrap=True, justify="right" if col else "left")
    for f in s.features:
        table.add_row(escape(f.name), f"{f.mismatch_rate:.2%}", f"{f.threshold:.0%}",
                      "" if f.distance is None else f"{f.distance:.3f}",
                      "[red]SKEW[/red]" if f.skewed else "")
    console.print(table)
    for f in s.features:
        if f.skewed:
            ex = "; ".join(f"{e.request_id}: served {e.served!r}, offline {e.offline!r}"
                           for e in f.examples)
            console.print(f"[red]{escape(f.name)}[/red] e.g. {escape(ex)}", highlight=False)
    verdict = "[bold red]skew detected[/bold red]" if s.skew_detected else \
        "[bold green]no skew[/bold green]"
    console.print(f"{verdict}: "
                  f"{escape(', '.join(s.skewed_features)) or 'every feature matches'}")
    for name, uri in s.outputs.items():
        console.print(f"{name}: {uri}", soft_wrap=True, highlight=False, markup=False)


@app.command()
def check(
    bundle: str = typer.Option("production", "--bundle", "-b",
                               help="Bundle directory, store key/URI or registry reference."),
    since: str = typer.Option("1h", help="Window start (duration before --until, or a time)."),
    until: str = typer.Option("now", help="Window end."),
    model_version: Optional[str] = typer.Option(None, help="Only requests served by it."),
    max_requests: int = typer.Option(20_000, help="Requests recomputed (random sample)."),
    threshold: float = typer.Option(0.01, help="Mismatch rate above which a feature is "
                                    "skewed."),
    store: Optional[str] = typer.Option(None, help="Object store (default settings)."),
    publish: bool = typer.Option(True, help="Write the summary to the store."),
    pushgateway: Optional[str] = typer.Option(
        None, help="Push gauges to this Pushgateway, grouped by job and namespace "
                   "(default: MARQUEE_PUSHGATEWAY_URL; '' for none)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Join served feature vectors with an offline recomputation; exit 3 on skew."""
    console = Console(stderr=as_json)
    settings = Settings()
    try:
        cfg = SkewConfig(max_requests=max_requests, mismatch_threshold=threshold)
        summary = _run(settings, cfg, bundle=bundle, since=since, until=until,
                       model_version=model_version, store_uri=store, publish=publish,
                       pushgateway=pushgateway_url(pushgateway, settings.pushgateway_url))
    except MarqueeError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise SystemExit(getattr(exc, "exit_code", 1)) from None
    except ValueError as exc:  # bad option values
        typer.secho(f"error: {error_text(exc)}", fg="red", err=True)
        raise SystemExit(2) from None
    if as_json:
        sys.stdout.write(summary.model_dump_json(indent=2) + "\n")
    else:
        _print(console, summary)
    if summary.push_error:  # after the verdict, which stands
        typer.secho(f"error: {summary.push_error}", fg="red", err=True)
        raise SystemExit(1)
    raise SystemExit(EXIT_SKEW if summary.skew_detected else 0)
