"""`marquee replay` prints the variant names the server at --router answers with as text,
not rich markup: before, a variant "[/x]" ended the replay's table in a rich MarkupError
traceback (exit 1, after every request had been sent) and one holding "[bold]" lost it.
The server here is a stand-in on 127.0.0.1 (some other service at the --router URL, or a
router with variants named by hand), answering /recommend and /feedback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from serving.replay.cli import app
from tests.stand_in_http import replay_router, serving


def stand_in_router(variants: list[str]):  # noqa: ANN201
    return serving(replay_router(variant=lambda i: variants[i % len(variants)]))


def test_variant_names_with_brackets_are_printed_as_given(tmp_path: Path) -> None:
    holdout = tmp_path / "holdout.parquet"
    pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [8, 9, 15, 22],
                  "timestamp": [1, 2, 3, 4]}).to_parquet(holdout)
    with stand_in_router(["[bold]", "canary[/x]"]) as url:
        result = CliRunner().invoke(app, ["replay", "--holdout", str(holdout), "--router", url,
                                          "--rate", "200", "--requests", "4",
                                          "--concurrency", "1"], env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines()
            if line.count("│") > 2}
    assert "[bold]" in rows and "canary[/x]" in rows, result.output
