"""``marquee drift check``: the current window of payload logs against a bundle's reference.

Exit codes: 0 no drift, 3 drift detected (data, prediction or embedding), 2 bad input
(nothing in the window, no reference, bad configuration), 1 anything else (the gauges not
pushed included: the verdict is printed first).

A bundle's verdict is taken on the rows that bundle's model version served, and published
under that version: the window is restricted to its ``model_version`` (partitions and rows),
and a window without any of its rows is no data (exit 2, naming the versions it does hold),
never a verdict on another version's traffic published under this one's label.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer
from pyarrow import ArrowException
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from marquee.errors import MarqueeError, error_text
from marquee.settings import Settings
from monitoring.drift.config import DEFAULT_CONFIG, DriftConfig, load_config
from monitoring.drift.summary import DriftSummary, WindowInfo
from monitoring.errors import MonitoringInputError, NoDataError
from monitoring.metrics import pushgateway_url

__all__ = ["app", "check", "run_once", "EXIT_DRIFT"]

EXIT_DRIFT = 3
log = logging.getLogger("marquee.drift")
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Check payload logs for data and prediction drift.")


@app.callback()
def _group() -> None:
    """Check payload logs for data and prediction drift."""  # keeps `check` a sub-command


def _speculate(config: DriftConfig) -> bool:
    """Start Evidently's report worker before the verdict? Its import (4-5 s of CPU) then
    runs on a spare core while the window is read and scored. Always for "always"; for
    "on_drift" only when a core is idle (otherwise the worker would slow the check down and
    be thrown away when there is no drift: it starts after the verdict instead)."""
    import os

    if config.report.evidently == "always":
        return True
    if config.report.evidently == "never":
        return False
    return os.getloadavg()[0] < (os.cpu_count() or 1) - 1.0


def run_once(settings: Settings, config: DriftConfig, *, bundle: str | None,
             reference_file: Path | None, window_path: Path | None, since: str, until: str,
             model_version: str | None, baseline_since: str | None, baseline_until: str,
             store_uri: str | None, publish: bool, html: bool, embeddings: bool,
             pushgateway: str | None, say: Callable[[str], None] = lambda what: None
             ) -> DriftSummary:
    """One drift check, end to end; returns the summary (outputs filled when published).
    ``say`` is told each step as it starts (what a terminal's spinner shows)."""
    from monitoring.drift.report import EvidentlyRenderer

    t0 = time.perf_counter()
    renderer = EvidentlyRenderer() if html and _speculate(config) else None
    try:
        return _check(settings, config, t0, renderer, bundle=bundle,
                      reference_file=reference_file, window_path=window_path, since=since,
                      until=until, model_version=model_version, baseline_since=baseline_since,
                      baseline_until=baseline_until, store_uri=store_uri, publish=publish,
                      html=html, embeddings=embeddings, pushgateway=pushgateway, say=say)
    finally:
        if renderer is not None:
            renderer.cancel()


def _check(settings: Settings, config: DriftConfig, t0: float, renderer, *,  # noqa: ANN001
           bundle: str | None, reference_file: Path | None, window_path: Path | None,
           since: str, until: str, model_version: str | None, baseline_since: str | None,
           baseline_until: str, store_uri: str | None, publish: bool, html: bool,
           embeddings: bool, pushgateway: str | None,
           say: Callable[[str], None]) -> DriftSummary:
    from monitoring.drift.embedding import RecommenderEmbeddings
    from monitoring.drift.job import (
        dictionary_columns,
        require_columns,
        run_check,
        window_columns,
    )
    from monitoring.drift.report import EvidentlyRenderer, prefetch_evidently
    from monitoring.drift.rows import (
        checked_version,
        no_logged_features,
        only_version,
        split_featured,
        version_keys,
    )
    from monitoring.reference import load_reference
    from monitoring.window import (
        list_window_keys,
        parquet_files,
        parse_window,
        read_parquet_path,
        read_window,
    )

    say("loading the reference")
    reference = load_reference(bundle, settings, features_path=reference_file)
    version = checked_version(bundle, reference.model_version, model_version)
    source = None
    if embeddings and reference.bundle_dir is not None and \
            (reference.bundle_dir / "model" / "config.json").is_file():
        source = RecommenderEmbeddings(reference.bundle_dir)
    loader = prefetch_evidently() if source is not None else None
    cols, dcols = window_columns(config), dictionary_columns(config)
    store = None
    if window_path is not None:
        say(f"reading {window_path}")
        table = read_parquet_path(window_path, cols, dcols)
        info = WindowInfo(source=str(window_path), files=len(parquet_files(window_path)),
                          rows=table.num_rows)
    else:
        from marquee.store import open_store

        store = open_store(store_uri or settings.resolved_store_uri, settings.s3_endpoint_url)
        win = parse_window(since, until)
        keys = version_keys(store, win, version)
        say(f"reading {len(keys):,} payload-log files")
        table = read_window(store, keys, win, cols, dcols)
        info = WindowInfo(since=win.since, until=win.until, source=store.uri("payload-logs"),
                          files=len(keys), rows=table.num_rows)
    table = only_version(table, version, info.source)
    table, info.rows_without_features = split_featured(
        table, [f.column for f in config.resolved()])
    info.rows = table.num_rows
    without = info.rows_without_features
    if table.num_rows == 0 and without:
        raise no_logged_features(without, version, "a drift verdict")
    if table.num_rows < config.min_rows:
        featured = " with logged features" if without else ""
        left_out = f" ({without:,} more carry none and are left out)" if without else ""
        raise NoDataError(f"only {table.num_rows} payload rows{featured} in the window"
                          f"{left_out}; a drift verdict needs at least {config.min_rows} "
                          "(min_rows in the drift config)")
    if "model_version" in table.column_names:
        from monitoring.drift.stats import value_counts

        info.model_versions = {str(k): v for k, v in
                               value_counts(table.column("model_version")).items()}
    t_read = time.perf_counter() - t0

    baseline = None
    if baseline_since is not None:
        from marquee.store import open_store

        store = store or open_store(store_uri or settings.resolved_store_uri,
                                    settings.s3_endpoint_url)
        bwin = parse_window(baseline_since, baseline_until)
        say("reading the baseline window")
        baseline = read_window(store, list_window_keys(store, bwin, model_version), bwin,
                               ["ts", "items", "scores"])

    if renderer is not None:  # its samples select every feature: a missing one named first
        require_columns(config, reference.features, table)
        renderer.submit(config, reference.features, table)
    if loader is not None:
        say("loading Evidently (embedding drift)")
        loader.join()
    say(f"scoring drift on {table.num_rows:,} requests")
    summary = run_check(config, reference, table, info, embeddings=source,
                        prediction_reference=baseline, with_embedding=embeddings)
    summary.timings_seconds["read"] = round(t_read, 3)

    if renderer is not None and not summary.drift_detected \
            and config.report.evidently == "on_drift":
        renderer.cancel()  # started speculatively; nobody needs it
        renderer = None
    if renderer is None and summary.drift_detected and html:
        renderer = EvidentlyRenderer()
        try:
            renderer.submit(config, reference.features, table)
            return _finish(settings, config, t0, renderer, summary, store, store_uri, publish,
                           pushgateway, say)
        finally:
            renderer.cancel()
    return _finish(settings, config, t0, renderer, summary, store, store_uri, publish,
                   pushgateway, say)


def _finish(settings: Settings, config: DriftConfig, t0: float, renderer,  # noqa: ANN001
            summary: DriftSummary, store, store_uri: str | None, publish: bool,  # noqa: ANN001
            pushgateway: str | None, say: Callable[[str], None] = lambda what: None
            ) -> DriftSummary:
    """Publish the verdict and the gauges, then Evidently's report when one is coming."""
    from monitoring.drift import metrics
    from monitoring.drift.report import publish as put
    from monitoring.drift.report import put_evidently, summary_html

    # verdict first: summary, report.html and gauges go out before Evidently's report
    if publish:
        from marquee.store import open_store

        say("publishing the verdict")
        store = store or open_store(store_uri or settings.resolved_store_uri,
                                    settings.s3_endpoint_url)
        put(store, summary, summary_html(summary, "evidently.html" if renderer else None))
    summary.timings_seconds["verdict"] = round(time.perf_counter() - t0, 3)
    metrics.export(summary, time.perf_counter() - t0)
    if pushgateway:
        say("pushing the gauges")
        summary.push_error = metrics.push(pushgateway, settings.namespace)
    if renderer is not None:
        say("waiting for Evidently's report")
        t = time.perf_counter()
        try:
            page = renderer.result()
        except RuntimeError as exc:  # the report is for people; the verdict stands without it
            log.warning("no Evidently report: %s", exc)
            if publish:  # report.html linked to an evidently.html that will never be there
                put(store, summary, summary_html(summary, None))
        else:
            summary.timings_seconds["evidently_report_wait"] = round(time.perf_counter() - t, 3)
            if publish:
                put_evidently(store, summary, page)
    summary.timings_seconds["total"] = round(time.perf_counter() - t0, 3)
    return summary


def _print(console: Console, s: DriftSummary) -> None:
    # Names, versions, reasons and URIs come from the bundle, the drift config, the data and
    # the command line: text, not rich markup ("[x]" vanished, "[/x]" was a MarkupError).
    table = Table(title=escape(f"Drift: {s.model_name} {s.model_version} — {s.window.rows:,} "
                               f"requests vs {s.reference_rows:,} reference rows"),
                  title_justify="left",
                  box=box.SIMPLE_HEAD, caption="* computed on a random sample of the window",
                  caption_justify="left")
    table.add_column("feature", no_wrap=True, min_width=23)
    for col in ("method", "score", "thr", "", "rows"):
        table.add_column(col, no_wrap=True, justify="right" if col in ("score", "rows") else
                         "left")
    skipped = []
    for f in s.features:
        if f.skipped is not None:
            skipped.append(f"feature {f.name}: {f.skipped}")
            continue
        mark = "[red]DRIFT[/red]" if f.drifted else ""
        table.add_row(escape(f.name), escape(f.method), f"{f.score:.4f}", f"{f.threshold:g}",
                      mark,
                      f"{f.rows_current:,}" + ("" if f.exact else "*"))
    for p in s.prediction:
        if p.skipped:
            skipped.append(f"prediction {p.name}: {p.skipped}")
        else:
            table.add_row(escape(f"pred. {p.name}"), escape(p.method), f"{p.score:.4f}",
                          f"{p.threshold:g}", "[red]DRIFT[/red]" if p.drifted else "",
                          f"{p.rows_current:,}")
    if s.embedding is not None:
        e = s.embedding
        if e.skipped:
            skipped.append(f"user embeddings: {e.skipped}")
        else:
            table.add_row("user embeddings", escape(e.method), f"{e.score:.4f}",
                          f"{e.threshold:g}",
                          "[red]DRIFT[/red]" if e.drifted else "", f"{e.rows_current:,}")
    console.print(table)
    if s.window.rows_without_features:
        skipped.insert(0, f"{s.window.rows_without_features:,} payload rows without logged "
                          "features (every f_* null: KServe's logger sink)")
    for line in skipped:
        console.print(f"[yellow]skipped[/yellow] {escape(line)}")
    verdict = "[bold red]drift detected[/bold red]" if s.drift_detected else \
        "[bold green]no drift[/bold green]"
    judged = sum(f.skipped is None for f in s.features)
    console.print(f"{verdict}: {len(s.drifted_features)}/{judged} features drifted "
                  f"({s.drift_share:.0%}, dataset drift at {s.drift_share_threshold:.0%})"
                  + (f": {escape(', '.join(s.drifted_features))}" if s.drifted_features
                     else ""))
    for name, uri in s.outputs.items():
        console.print(f"{name}: {uri}", soft_wrap=True, highlight=False, markup=False)
    console.print(f"timings (s): {s.timings_seconds}", highlight=False)


@app.command()
def check(
    bundle: Optional[str] = typer.Option(
        "production", "--bundle", "-b",
        help="Bundle directory, store key/URI, or registry reference (production, 3, …)."),
    reference: Optional[Path] = typer.Option(
        None, help="Reference features Parquet (default: the bundle's reference)."),
    window: Optional[Path] = typer.Option(
        None, help="Read this Parquet file/directory instead of the store's payload logs."),
    since: str = typer.Option("1h", help="Window start: duration before --until (90m, 1h, "
                              "2d) or a time."),
    until: str = typer.Option("now", help="Window end: ISO-8601, unix seconds or now."),
    model_version: Optional[str] = typer.Option(None, help="Only requests served by it."),
    baseline_since: Optional[str] = typer.Option(
        None, help="Recommendations of this earlier window are the prediction-drift "
                   "reference when the bundle has none."),
    baseline_until: str = typer.Option("now", help="End of the baseline window."),
    config: Path = typer.Option(DEFAULT_CONFIG, help="Drift configuration YAML."),
    store: Optional[str] = typer.Option(None, help="Object store (default settings)."),
    publish: bool = typer.Option(True, help="Write summary and reports to the store."),
    evidently: Optional[str] = typer.Option(
        None, help="Evidently's report: always | on_drift | never (default: config)."),
    embeddings: bool = typer.Option(True, help="Embedding drift with the bundle's model."),
    pushgateway: Optional[str] = typer.Option(
        None, help="Push gauges to this Pushgateway, grouped by job and namespace "
                   "(default: MARQUEE_PUSHGATEWAY_URL; '' for none)."),
    metrics_port: Optional[int] = typer.Option(None, min=1, max=65535,
                                               help="Serve /metrics on this port."),
    every: Optional[float] = typer.Option(None, min=0.1, help="Repeat every N seconds (with "
                                          "--metrics-port: a long-running exporter)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Compare the payload-log window with the training reference; exit 3 on drift."""
    console = Console(stderr=as_json)
    settings = Settings()
    pushgateway = pushgateway_url(pushgateway, settings.pushgateway_url)
    if bundle in ("", "none") or (reference is not None and bundle == "production"):
        bundle = None  # --reference alone: no bundle needed
    try:
        cfg = load_config(config)
        if evidently is not None:
            if evidently not in ("always", "on_drift", "never"):
                raise MonitoringInputError(f"evidently={evidently!r}: always, on_drift or never")
            cfg.report.evidently = evidently
        if metrics_port is not None:
            from prometheus_client import start_http_server

            from monitoring.drift.metrics import REGISTRY

            start_http_server(metrics_port, addr=settings.bind_host, registry=REGISTRY)
            console.print(f"metrics on http://{settings.bind_host}:{metrics_port}/metrics")
        while True:
            try:
                # a spinner naming each step on a terminal (a status prints nothing elsewhere)
                with console.status("drift check") as status:
                    summary = run_once(
                        settings, cfg, bundle=bundle, reference_file=reference,
                        window_path=window, since=since, until=until,
                        model_version=model_version, baseline_since=baseline_since,
                        baseline_until=baseline_until, store_uri=store, publish=publish,
                        html=(evidently or cfg.report.evidently) != "never",
                        embeddings=embeddings, pushgateway=pushgateway,
                        say=lambda what: status.update(escape(f"drift check: {what} …")))
            except (MarqueeError, OSError) as exc:
                if every is None:
                    raise
                _withdraw(exc, pushgateway, settings.namespace)
            else:
                if as_json:
                    sys.stdout.write(summary.model_dump_json(indent=2) + "\n")
                else:
                    _print(console, summary)
                if summary.push_error:  # after the verdict, which stands
                    typer.secho(f"error: {summary.push_error}", fg="red", err=True)
                if every is None:
                    raise SystemExit(1 if summary.push_error else
                                     EXIT_DRIFT if summary.drift_detected else 0)
            time.sleep(every)
    except MarqueeError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise SystemExit(getattr(exc, "exit_code", 1)) from None
    except ArrowException as exc:  # e.g. a --reference file that is not Parquet: bad input
        typer.secho(f"error: not a readable Parquet file: {error_text(exc)}", fg="red",
                    err=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _withdraw(exc: Exception, pushgateway: str | None, namespace: str | None) -> None:
    """A check of the long-running exporter failed (the store went away, a bad window): its
    last verdict is no longer served as if fresh. The last completed check's timestamp stays,
    so DriftJobStale fires while the failures go on."""
    from monitoring.drift import metrics

    message = exc.message if isinstance(exc, MarqueeError) else f"{type(exc).__name__}: {exc}"
    typer.secho(f"error: {message} (the last verdict's gauges are withdrawn until a check "
                "completes)", fg="red", err=True)
    metrics.withdraw()
    if pushgateway:
        failed = metrics.push(pushgateway, namespace)
        if failed:  # the gateway may be what is down
            log.warning("withdrawn gauges: %s", failed)


def main() -> None:  # python -m monitoring.drift.cli
    app()


if __name__ == "__main__":
    main()
