"""``marquee traffic replay``: held-out interactions as live users against the router.

    marquee traffic replay --router http://127.0.0.1:8090 --interactions data/interactions.parquet \
        --rate 50 --duration 60 --position-bias 1.0

Users come from ``--holdout`` (a held-out interactions file) or from ``--interactions``, split
per user in time (each user's last ``--test-frac`` events are their future). A user clicks a
recommended item when it is among their future interactions (examined with position bias,
clicked with probability ``--relevant-click``; ``--noise-click`` for the others).
``--duration`` is wall-clock time: a router slower than ``--rate`` gets fewer requests (at most
``--concurrency`` in flight), not a backlog. Ctrl-C or SIGTERM stops it: the requests in flight
finish, the summary is printed, and the exit code is 128 + the signal.
"""

from __future__ import annotations

import json
import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from serving.fields import MAX_K

if TYPE_CHECKING:
    from rich.console import Console

    from serving.replay.engine import Outcome, ReplayReport

__all__ = ["app"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Replay held-out interactions as live traffic.")


@app.command("replay")
def replay_command(
    interactions: Annotated[Path | None, typer.Option(
        help="Interactions (Parquet/CSV/TSV, or a dataset directory).")] = None,
    holdout: Annotated[Path | None, typer.Option(
        help="Held-out interactions instead (the same kinds).")] = None,
    router: Annotated[str, typer.Option(envvar="MARQUEE_ROUTER_URL",
                                        help="Router URL.")] = "http://127.0.0.1:8090",
    rate: Annotated[float, typer.Option(min=0.001, help="Requests per second.")] = 20.0,
    requests: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many requests.")] = None,
    duration: Annotated[float | None, typer.Option(min=0.001,
                                                   help="Stop after this many seconds.")] = None,
    k: Annotated[int, typer.Option(min=1, max=MAX_K, help="Items per request.")] = 10,
    position_bias: Annotated[float, typer.Option(
        min=0.0, help="Examination 1/(pos+1)^b; 0 = no position bias.")] = 0.0,
    relevant_click: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="P(click) of an examined item among the user's future ones.")] = 1.0,
    noise_click: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="P(click) of an examined item that is not.")] = 0.0,
    with_replacement: Annotated[bool, typer.Option(
        help="Visits drawn with replacement from the users (--requests of them).")] = False,
    test_frac: Annotated[float, typer.Option(min=0.01, max=0.99,
                                             help="Per-user held-out share.")] = 0.25,
    order: Annotated[Literal["time", "random"], typer.Option(help="time or random.")] = "time",
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at most.")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed (clicks, order).")] = 0,
    output: Annotated[Literal["table", "json"], typer.Option(
        "-o", "--output", help="table or json.")] = "table",
) -> None:
    """Replay users at a request rate; print requests, errors, latency and CTR per variant."""
    from rich.console import Console

    from marquee.errors import redact_uri
    from serving.replay.engine import check_router_url, run_replay
    from serving.replay.users import load_users

    if not math.isfinite(rate):  # the option's minimum lets inf through: all due at 0 s
        raise typer.BadParameter(f"must be a finite number, got {rate}", param_hint="'--rate'")
    try:  # before the users are read: a typo in the URL is said at once
        check_router_url(router)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--router'") from None
    shown = redact_uri(router)  # what is printed of it: its password masked
    if interactions is None and holdout is None:
        raise typer.BadParameter("give --interactions or --holdout", param_hint="--interactions")
    if interactions is not None and holdout is not None:  # one would be ignored
        raise typer.BadParameter("give --interactions or --holdout, not both",
                                 param_hint="--interactions")
    users = load_users(interactions or holdout, holdout,  # type: ignore[arg-type]
                       test_frac=test_frac, order=order, seed=seed)
    if not users:  # one line that says why, as every refusal (exit 1)
        why = ("the file has no rows" if holdout is not None else
               f"no user has enough events to hold any out (users with fewer than 3 events "
               f"keep them all; each other user's last --test-frac {test_frac} are held out)")
        typer.secho(f"error: no held-out users in {holdout or interactions}: {why}", fg="red",
                    err=True)
        raise typer.Exit(1)
    if with_replacement:
        from serving.replay.users import sample_stream

        users = sample_stream(users, requests or len(users), seed=seed)
    stop = threading.Event()
    stopped_by: list[int] = []  # the signals received
    options = dict(rate=rate, requests=requests, duration=duration, k=k,
                   position_bias=position_bias, relevant_click=relevant_click,
                   noise_click=noise_click, concurrency=concurrency, seed=seed, stop=stop)
    progress = Console(stderr=True)  # stdout keeps the summary (and -o json) as it was
    with _stopped_by_signals(stop, stopped_by):
        if progress.is_terminal:  # a replay lasts --duration, or --requests / --rate seconds
            # the bar's total: --requests, or every user once when there is no --duration
            total = requests if requests is not None or duration else len(users)
            with _progress_bar(progress, shown, total, duration) as on_outcome:
                report = run_replay(router, users, on_outcome=on_outcome, **options)
        else:
            report = run_replay(router, users, **options)
    failed = _show(report, shown, output)
    if stopped_by:  # what it did is shown, but it did not finish: 128 + the signal
        name = signal.Signals(stopped_by[0]).name
        typer.echo(f"stopped by {name} after {report.requests} requests", err=True)
        raise typer.Exit(128 + stopped_by[0])
    if failed:
        raise typer.Exit(1)


@contextmanager
def _progress_bar(console: Console, router: str, total: int | None, duration: float | None
                  ) -> Iterator[Callable[[Outcome], None]]:
    """A bar on ``console`` of the requests answered (of ``total`` when the replay ends after
    a number of them) and how many failed; yields the replay's ``on_outcome``."""
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    what = f"replay to {router}" + (f" for {duration:g}s" if duration and total is None else "")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("requests, {task.fields[failed]} failed"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(escape(what), total=total, failed=0)  # the URL is text
        failed = 0

        def on_outcome(out: Outcome) -> None:
            nonlocal failed
            failed += out.status != 200
            bar.update(task, advance=1, failed=failed)

        yield on_outcome


@contextmanager
def _stopped_by_signals(stop: threading.Event, stopped_by: list[int]) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (the replay starts no more requests, finishes those in
    flight and is reported) and are put in ``stopped_by``; a second one acts as it would
    have without this (Ctrl-C aborts, SIGTERM unwinds)."""
    if threading.current_thread() is not threading.main_thread():  # only it may set them
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM)
    before = {sig: signal.getsignal(sig) for sig in sigs}

    def handle(signum: int, frame: object) -> None:
        stopped_by.append(signum)
        stop.set()
        for sig in sigs:
            signal.signal(sig, before[sig])

    for sig in sigs:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig in sigs:
            signal.signal(sig, before[sig])


def _show(report: ReplayReport, router: str, output: str) -> bool:
    """Print the summary (a table or JSON on stdout) and a warning for what failed; True,
    with an error line instead of the table, when no request got a recommendation."""
    summary = report.summary()
    failed = bool(summary["requests"]) and summary["errors"] == summary["requests"]
    if output == "json":
        typer.echo(json.dumps(summary, indent=2))
    why = "; ".join(f"{n}x {text}" for text, n in summary["error_reasons"].items())
    if failed:  # nothing answered: not a replay, whatever the table says
        typer.secho(f"error: all {summary['requests']} requests to {router} failed: {why}",
                    fg="red", err=True)
        return True
    if why:  # some requests failed, or clicks the router refused are missing from the CTR
        clicks = report.feedback_errors + sum(o.clicks for o in report.outcomes)
        typer.secho(f"warning: {summary['errors']} of {summary['requests']} requests failed, "
                    f"the router refused {report.feedback_errors} of {clicks} clicks (left out "
                    f"of the click-through rates): {why}", fg="yellow", err=True)
    if output == "json":
        return False
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"replay: {summary['requests']} requests in {summary['seconds']}s "
                    f"({summary['rate']}/s), p50 {summary['p50_ms'] or 0:.1f} ms, "
                    f"p99 {summary['p99_ms'] or 0:.1f} ms")
    for col in ("variant", "requests", "errors", "clicked lists", "CTR"):
        t.add_column(col)
    for variant, d in report.by_variant().items():
        # the name is what the server at --router answered: text, not rich markup
        t.add_row(escape(str(variant)), str(int(d["requests"])), str(int(d["errors"])),
                  str(int(d["clicked"])), f"{d['ctr']:.3f}")
    Console().print(t)
    return False


@app.command("users")
def users_command(
    interactions: Annotated[Path, typer.Option(
        help="Interactions (Parquet/CSV/TSV, or a dataset directory).")],
    test_frac: Annotated[float, typer.Option(min=0.01, max=0.99,
                                             help="Per-user held-out share.")] = 0.25,
) -> None:
    """How many users a replay would have, and their mean number of future items."""
    from serving.replay.users import load_users

    users = load_users(interactions, None, test_frac=test_frac)
    mean = sum(len(u.future) for u in users) / max(1, len(users))
    typer.echo(json.dumps({"users": len(users), "mean_future_items": round(mean, 2)}))
