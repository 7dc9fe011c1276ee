"""``marquee data synth`` with seeds and sizes the generator cannot take (defect hunt s21 C).

Before: a negative ``--seed`` (or ``MARQUEE_SEED``) ended in numpy's traceback ("expected
non-negative integer"), and sizes past what the generator holds (int32 rows, numpy's C long,
the machine's memory) in an ``OverflowError`` or ``MemoryError`` traceback. Now each is one
line naming what was wrong, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from marquee.commands.data import app
from recsys.data.synth import generate

runner = CliRunner()
SMALL = ["--users", "5", "--items", "5", "--events", "10"]


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MARQUEE_SEED", raising=False)
    return tmp_path / "home"


def _one_line_error(result, *words: str) -> str:
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exception is None or isinstance(result.exception, SystemExit), text
    assert "Traceback" not in text, text
    for word in words:
        assert word in text, text
    return text


@pytest.mark.parametrize("args, words", [
    (["--seed", "-1"], ["--seed"]),
    (["--users", str(10 ** 14)], ["--users"]),
    (["--items", str(10 ** 14)], ["--items"]),
    (["--events", str(10 ** 23)], ["--events"]),
], ids=["negative-seed", "users-past-int32", "items-past-int32", "events-past-int64"])
def test_a_seed_or_size_it_cannot_take_is_a_usage_error(home, tmp_path, args, words) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["synth", *SMALL, *args, "--out", str(out)])
    assert result.exit_code == 2
    _one_line_error(result, *words)
    assert not out.exists()


def test_a_negative_seed_from_the_settings_is_named(home, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MARQUEE_SEED", "-3")
    out = tmp_path / "out"
    result = runner.invoke(app, ["synth", *SMALL, "--out", str(out)])
    assert result.exit_code == 2
    _one_line_error(result, "seed", "-3")
    assert not out.exists()


def test_more_events_than_memory_is_one_line_and_writes_nothing(home, tmp_path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["synth", "--users", "5", "--items", "5",
                                 "--events", str(10 ** 14), "--out", str(out)])
    assert result.exit_code == 1
    _one_line_error(result, "not enough memory", "100,000,000,000,000 events")
    assert not out.exists()


def test_the_generator_names_a_negative_seed_and_sizes_past_int32() -> None:
    with pytest.raises(ValueError, match="seed must be >= 0"):
        generate(5, 5, 10, seed=-1)
    with pytest.raises(ValueError, match="n_users must be <="):
        generate(2 ** 31, 5, 10)
    with pytest.raises(ValueError, match="n_events must be <="):
        generate(5, 5, 2 ** 64)


def test_edge_seeds_still_generate(home, tmp_path) -> None:
    for seed in ("0", str(10 ** 30)):
        out = tmp_path / f"out-{len(seed)}"
        result = runner.invoke(app, ["synth", *SMALL, "--seed", seed, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert (out / "interactions.parquet").is_file()
