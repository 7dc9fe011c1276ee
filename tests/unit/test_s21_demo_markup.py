"""``marquee demo`` prints outside text as text, not rich markup: a home path, a registry tag
set by hand. Before, a ``MARQUEE_HOME`` holding "[/x]" ended the demo in a MarkupError
traceback before it checked a single option, and a gate decision "[/held]" set in the MLflow
UI ended the --train-only summary the same way, after the training."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from marquee.registry import Registry
from tests.unit.test_cli_errors import marquee


def test_a_home_path_with_brackets_is_printed_whole(tmp_path: Path) -> None:
    home = tmp_path / "team[/x]" / "home"
    out = marquee(home, "demo", "--config-json", '{"bogus": 1}', COLUMNS="300")
    assert "Traceback" not in out.stderr and "MarkupError" not in out.stderr, out.stderr
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"home {home.resolve()}" in out.stdout
    assert "--config-json" in out.stderr


def test_the_registry_table_shows_a_hand_set_gate_decision_as_it_is(
        tmp_path: Path, monkeypatch) -> None:
    from marquee.commands.demo import _registry_table
    from marquee.settings import Settings

    home = tmp_path / "home"
    home.mkdir()
    registry = Registry(f"sqlite:///{home / 'registry.db'}")
    number = registry.register("file:///bundles/movie-recommender/1", {"ndcg_at_10": 0.3}, {})
    registry.client.set_model_version_tag(registry.model_name, str(number), "gate.decision",
                                          "[/held] by hand")
    monkeypatch.setenv("MARQUEE_HOME", str(home))
    buf = io.StringIO()
    Console(file=buf, width=300).print(_registry_table(Settings()))
    assert "[/held] by hand" in buf.getvalue()
