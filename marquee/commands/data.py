"""``marquee data``: fetch, synthesise and validate datasets.

    marquee data fetch movielens-100k [--source PATH] [--refresh]
    marquee data synth --users N --items N --events N [--seed S] --out DIR
    marquee data validate DIR

``fetch`` keeps the raw download under ``<data_dir>/raw/movielens-100k/`` and writes the ingested
contract tables to ``<data_dir>/datasets/movielens-100k/<fingerprint>/`` (the same layout as
``datasets/<name>/<fingerprint>/`` in the object store). ``validate`` exits with code 1 and prints
the findings when the data breaks the contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from marquee.errors import error_text

__all__ = ["app"]

MAX_ROWS = 2 ** 31 - 2  # users and items of ``data synth``: int32 rows (recsys.data.synth)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Fetch, synthesise and validate datasets.")
fetch_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Fetch a public dataset into the local cache.")
app.add_typer(fetch_app, name="fetch")


def _print_counts(console: Console, title: str, counts: dict[str, int],
                  extra: dict[str, str]) -> None:
    """Row counts as a table, then one ``key: value`` line each for the fingerprint and path:
    whole, never cut to the console's width (a pipe's is 80), so they can be copied. The
    title, which may name a directory given on the command line, is text, not rich markup."""
    table = Table(title=escape(title), show_header=True)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    console.print(table)
    for key, value in extra.items():
        console.print(f"{key}: {value}", markup=False, highlight=False, soft_wrap=True)


@fetch_app.command("movielens-100k")
def fetch_movielens(
    source: Annotated[Path | None, typer.Option(
        help="Local MovieLens-100k: a directory or zip in the GroupLens layout or holding "
             "RecBole atomic files. Default: the recbole wheel from PyPI.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write the ingested tables here instead of <data_dir>/datasets/…")] = None,
    refresh: Annotated[bool, typer.Option(help="Ignore the cached download.")] = False,
) -> None:
    """Fetch MovieLens-100k, ingest it and write the contract tables as Parquet."""
    from marquee.settings import Settings
    from recsys.data import DataError, fetch_movielens_100k, ingest, write_dataset
    from recsys.data.validate import validate_dataset

    settings = Settings()
    console = Console()
    try:
        with console.status("fetching MovieLens-100k …"):
            raw = fetch_movielens_100k(settings.movielens_cache_dir, source=source,
                                       refresh=refresh)
            dataset = ingest(raw)
            validate_dataset(dataset)
    except DataError as exc:
        typer.secho(f"error: {error_text(exc)}", fg="red", err=True)
        raise SystemExit(1) from exc
    fingerprint = dataset.fingerprint()
    target = out or settings.data_dir / "datasets" / "movielens-100k" / fingerprint
    write_dataset(dataset, target)
    _print_counts(console, "movielens-100k", dataset.counts(),
                  {"fingerprint": fingerprint, "written to": str(target)})


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Directory for the three Parquet tables.")],
    users: Annotated[int, typer.Option(min=1, max=MAX_ROWS, help="Number of users.")] = 10_000,
    items: Annotated[int, typer.Option(min=1, max=MAX_ROWS, help="Number of items.")] = 2_000,
    events: Annotated[int, typer.Option(
        min=1, max=2 ** 63 - 1, help="Number of interactions.")] = 200_000,
    seed: Annotated[int | None, typer.Option(
        min=0, help="Random seed, >= 0 (default: settings.seed).")] = None,
    groups: Annotated[int, typer.Option(min=1, max=64, help="Taste groups.")] = 8,
    demographic_shift: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Drift: fraction of users with shifted demographics.")] = 0.0,
    genre_shift: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Drift: fraction of taste events moved to other genres.")] = 0.0,
) -> None:
    """Generate a synthetic dataset with planted structure and write it as Parquet."""
    from marquee.settings import Settings
    from recsys.data import write_dataset
    from recsys.data.synth import Drift, generate

    settings = Settings()
    console = Console()
    try:
        dataset = generate(users, items, events, seed=settings.seed if seed is None else seed,
                           n_groups=groups, progress=console.is_terminal,
                           drift=Drift(demographic_shift=demographic_shift,
                                       genre_shift=genre_shift))
    except ValueError as exc:  # a size or seed (settings.seed too) the generator cannot take
        typer.secho(f"error: {error_text(exc)}", fg="red", err=True)
        raise SystemExit(2) from exc
    except MemoryError as exc:  # nothing is written: the tables are built before any file
        typer.secho(f"error: not enough memory for {users:,} users, {items:,} items and "
                    f"{events:,} events ({error_text(exc)}); ask for fewer", fg="red", err=True)
        raise SystemExit(1) from exc
    # the generator's bar ends with the events; writing and fingerprinting millions of them
    # takes as long again (a spinner on a terminal only: a status prints nothing elsewhere)
    with console.status(escape(f"writing {dataset.counts()['interactions']:,} interactions "
                               f"to {out} …")):
        write_dataset(dataset, out)
    with console.status("fingerprinting the tables …"):
        fingerprint = dataset.fingerprint()
    _print_counts(console, "synthetic", dataset.counts(),
                  {"fingerprint": fingerprint, "written to": str(out)})


@app.command()
def validate(
    directory: Annotated[Path, typer.Argument(
        exists=True, file_okay=False, help="Directory with interactions/users/items as "
        ".parquet, .csv or .tsv.")],
) -> None:
    """Check a dataset directory against the data contract; exit code 1 on any problem."""
    from recsys.data import DataValidationError
    from recsys.data.validate import validate_directory

    console = Console()
    try:
        # half a minute on 20 million events: a spinner on a terminal (nothing elsewhere)
        with console.status(escape(f"reading and validating {directory} …")):
            dataset = validate_directory(directory)
    except DataValidationError as exc:
        if not console.is_terminal:  # pipes and CI logs: one plain line per finding
            console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        else:
            # the directory and the data's own column names and values are text, not rich
            # markup: a value "[x]" vanished from its example, a "[/x]" was a MarkupError
            table = Table(title=escape(f"{directory}: {len(exc.report)} problem(s)"),
                          show_lines=False)
            for column in ("table", "column", "rule", "bad rows", "first rows", "examples",
                           "detail"):
                table.add_column(column, overflow="fold")
            for f in exc.report:
                table.add_row(*map(escape, (f.table, f.column, f.rule, str(f.bad_count),
                                            ", ".join(map(str, f.rows)),
                                            ", ".join(map(repr, f.examples)), f.detail)))
            console.print(table)
        # the report above is on stdout; the command ends, like every other, with one line
        typer.secho(f"error: {directory}: data validation failed: {len(exc.report)} "
                    "problem(s)", fg="red", err=True)
        raise SystemExit(1) from exc
    with console.status("fingerprinting the tables …"):
        fingerprint = dataset.fingerprint()
    _print_counts(console, f"{directory}: valid", dataset.counts(), {"fingerprint": fingerprint})
