"""`marquee data validate DIR` prints the directory it was given and the data's own values as
text, not rich markup: before, a directory named "ds[/x]" ended the command in a rich
MarkupError traceback (exit 1 with no counts) although the data was valid, and on a terminal a
bad value "[/x]" in the data did the same instead of showing the findings table."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from marquee.commands.data import app

runner = CliRunner()


def _compact(text: str) -> str:
    """Without colours and white space: a table wraps its title to its own width."""
    return re.sub(r"\s+", "", re.sub(r"\x1b\[[0-9;]*m", "", text))


@pytest.fixture()
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path / "home"))
    out = tmp_path / "ds[/x] [bold]"
    result = runner.invoke(app, ["synth", "--out", str(out), "--users", "30", "--items", "20",
                                 "--events", "300", "--seed", "3"])
    assert result.exit_code == 0, result.output
    return out


def test_a_valid_directory_with_brackets_in_its_name_is_printed_whole(dataset: Path) -> None:
    result = runner.invoke(app, ["validate", str(dataset)])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code == 0, result.output
    assert _compact(f"{dataset}: valid") in _compact(result.output)  # "[bold]" too
    assert "interactions" in result.output and "fingerprint: " in result.output


def test_a_bad_value_with_brackets_is_shown_in_the_terminal_table(
        dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users = pd.read_parquet(dataset / "users.parquet")
    users.loc[0, "gender"] = "[/x]"
    users.to_parquet(dataset / "users.parquet", index=False)
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich's terminal table, as on a terminal
    monkeypatch.setenv("COLUMNS", "250")
    result = runner.invoke(app, ["validate", str(dataset)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert _compact(f"{dataset}: 1 problem(s)") in _compact(result.output)
    assert "'[/x]'" in result.output and "allowed values" in result.output
    assert "data validation failed: 1 problem(s)" in result.output
