"""`marquee registry show` and `list` print tags as they are (bug hunt, session 21, B).

Tag values were printed as rich markup: a ``[x]`` in a gate reason or a params value vanished
from the table, and a ``[/x]`` (a path in brackets) ended `registry show` in a MarkupError
traceback. The MLflow UI lets anyone set any tag by hand, gate decision included.
"""

from __future__ import annotations

from pathlib import Path

from marquee.registry import Registry
from tests.unit.test_cli_errors import marquee

REASON = "ndcg_at_10 [candidate] below production [/tmp/eval] by 0.002"
PARAMS = '{"note": "[bold]retrained[/bold]", "dims": [32, 64]}'


def _registry_with_bracketed_tags(home: Path) -> None:
    home.mkdir(parents=True)
    registry = Registry(f"sqlite:///{home / 'registry.db'}")
    number = registry.register("file:///bundles/movie-recommender/1", {"ndcg_at_10": 0.3},
                               {"gate.reason": REASON, "params": PARAMS})
    # by hand, as in the MLflow UI: not one of the gate's decisions
    registry.client.set_model_version_tag(registry.model_name, str(number), "gate.decision",
                                          "[/held] by hand")


def test_registry_show_prints_tags_with_brackets_as_they_are(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _registry_with_bracketed_tags(home)
    out = marquee(home, "registry", "show", "1", COLUMNS="300")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stdout + out.stderr
    assert REASON in out.stdout
    assert PARAMS in out.stdout
    assert "[/held] by hand" in out.stdout


def test_registry_list_prints_a_hand_set_gate_decision_as_it_is(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _registry_with_bracketed_tags(home)
    out = marquee(home, "registry", "list", COLUMNS="300")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[/held] by hand" in out.stdout
