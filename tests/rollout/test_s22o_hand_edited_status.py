"""``marquee rollout status / history / report`` on a status edited by hand (helper O,
session 22).

People edit a rollout's status (``kubectl edit modelrollout X --subresource=status``, or
``<MARQUEE_HOME>/rollouts/<name>/status.json``), and a decision's ``statistics`` is free-form
JSON. Before, a value of an unexpected type there ended the command in a traceback: a string
``shadow.mirrored`` (TypeError in the report's shadow section), a number ``baselineVersion``
(AttributeError in ``html.escape``), a number ``srm.observed``, ``checks`` that is not an object
(``status``), a 400-digit integer anywhere (``math.isfinite`` overflows), an analysis window or
a decision time out of a date's range, a ``repeats`` holding rich markup. Each command must
show what it can; a status that fails the status model is one ``error:`` line naming the file
and the field, exit 1.

The statuses are written as the file a person would leave (``json.dumps`` writes NaN and
Infinity as the bare tokens Python's JSON reader accepts back), and every command runs through
the CLI against a real FileStatusStore under tmp_path.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest
from typer.testing import CliRunner

from serving.rollout.cli import app
from serving.rollout.spec import parse_rollout
from serving.rollout.store import FileStatusStore

NAME = "hand"
COMMANDS = (["status", NAME], ["status"], ["status", NAME, "-o", "json"], ["history", NAME],
            ["history", NAME, "-o", "json"], ["report", NAME, "-o", "-"])

# What the controller writes into a decision's statistics, one of each section.
FIGURES: dict[str, Any] = {
    "checks": {"errorRate": 0.01, "errorRateInterval": [0.0, 0.02], "ctr": 0.1,
               "ctrSkipped": "too few lists"},
    "shadow": {"mirrored": 240, "errors": 1, "dropped": 0, "latency_p99_ms": 12.5,
               "baseline_latency_p99_ms": 10.0, "topk_overlap_mean": 0.42, "rbo_mean": 0.51,
               "kendall_tau_mean": 0.25, "latency_delta_ms_mean": 1.5},
    "baseline": {"requests": 900, "errors": 0, "errorRate": 0.0, "latencyP99Ms": 10.0,
                 "clickThroughRate": 0.1, "clickedExposures": 90, "exposures": 900,
                 "users": 450},
    "candidate": {"requests": 100, "errors": 1, "errorRate": 0.01, "latencyP99Ms": 11.0},
    "srm": {"observed": [450, 455], "expected": [452.5, 452.5], "chi2": 0.03,
            "p_value": 0.86, "threshold": 0.001, "mismatch": False},
    "msprt": {"rate_a": 0.1, "rate_b": 0.2, "n_a": 900, "n_b": 100, "difference": 0.1,
              "ci_low": 0.01, "ci_high": 0.19, "p_value": 0.01, "alpha": 0.05, "unit": "list"},
    "interleave": {"impressions": 500, "baseline_wins": 90, "candidate_wins": 260,
                   "ties": 150},
    "signTest": {"share_b": 0.74, "p_value": 0.001, "alpha": 0.05, "n": 350},
    "fixedHorizonSignTestP": 0.0001,
    "window": {"since": 1_700_000_000.0, "until": 1_700_000_060.0},
    "repeats": 3,
}
START = {"baselineVersion": "1", "candidateVersion": "2", "aliasesBefore": {"production": "1"}}


def _doc(name: str) -> dict[str, Any]:
    return {"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name},
            "spec": {"modelName": "model-hand", "baseline": {"alias": "production"},
                     "candidate": {"version": "2"}, "strategy": "canary",
                     "steps": [{"weight": 10}, {"weight": 100}],
                     "analysis": {"metrics": [{"name": "errorRate", "max": 0.05}]}}}


def _decision(time: str, phase: str, outcome: str, reason: str,
              statistics: dict[str, Any]) -> dict[str, Any]:
    return {"time": time, "phase": phase, "step": 1, "outcome": outcome, "reason": reason,
            "statistics": statistics}


def _status(figures: dict[str, Any], start: dict[str, Any] = START,
            last_time: str = "2024-01-01T00:02:00Z") -> dict[str, Any]:
    """Started, then two analyses holding ``figures`` (one while shadowing, so the report
    draws the mirrored line too)."""
    return {"phase": "Progressing", "step": 1, "weights": {"baseline": 90, "candidate": 10},
            "message": "hand-edited",
            "decisions": [
                _decision("2024-01-01T00:00:00Z", "Shadowing", "Successful",
                          "started: shadowing 25% of requests", start),
                _decision("2024-01-01T00:01:00Z", "Shadowing", "Inconclusive", "not yet",
                          figures),
                _decision(last_time, "Progressing", "Successful",
                          "candidate weight 10%", figures)]}


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileStatusStore:
    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "300")  # rich tables wide enough not to wrap the values
    monkeypatch.chdir(tmp_path)
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(parse_rollout(_doc(NAME)))
    return store


def _edit(store: FileStatusStore, status: dict[str, Any]) -> Path:
    """Write status.json as a person would leave it (NaN/Infinity as bare tokens)."""
    path = store.root / NAME / "status.json"
    path.write_text(json.dumps(status, indent=2))
    return path


def _run(*args: str) -> Any:
    r = CliRunner().invoke(app, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"marquee rollout {' '.join(args)} crashed") from r.exception
    return r


def _works(*args: str) -> str:
    r = _run(*args)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    if "json" in args:
        json.loads(r.output)  # still a JSON document
    return r.output


def _page_text(page: str) -> str:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


# --- the two crashes the review found ---------------------------------------------------------
def test_report_on_a_text_mirrored_count_and_a_numeric_baseline_version(
        store: FileStatusStore) -> None:
    figures = {**FIGURES, "shadow": {**FIGURES["shadow"], "mirrored": "about 240"}}
    _edit(store, _status(figures, start={**START, "baselineVersion": 7}))
    text = _page_text(_works("report", NAME, "-o", "-"))
    assert "baseline 7 → candidate 2" in text  # the number shown as text
    assert "Shadow" in text and "1 (n/a)" in text  # errors shown, no rate without a count
    assert "0.420" in text and "+2.5 ms" in text  # the rest of the row still there
    assert "about 240" in text  # in the decision's statistics


def test_report_summary_shows_booleans_as_written(store: FileStatusStore) -> None:
    _edit(store, _status({"srm": {**FIGURES["srm"], "mismatch": True}}))
    text = _page_text(_works("report", NAME, "-o", "-"))
    assert "srm.mismatch=true" in text and "MISMATCH" in text  # was "srm.mismatch=n/a"


# --- every leaf, then every section, of the statistics replaced by one odd value ---------------
def _leaves(value: Any, odd: Any) -> Any:
    """``value`` with each number, string, bool and list replaced by ``odd``."""
    if isinstance(value, dict):
        return {k: _leaves(v, odd) for k, v in value.items()}
    return odd


ODD: dict[str, Any] = {
    "text": "n/a?", "markup": "[/x] [bold] <b>&amp;", "number": 7, "negative": -1e308,
    "null": None, "list": [1, "x", None, {"a": 1}], "object": {"a": {"b": [1]}},
    "true": True, "nan": float("nan"), "infinity": float("inf"), "huge": 10 ** 400,
    "empty": "",
}
SHAPES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "every figure": lambda odd: _leaves(FIGURES, odd),
    "every section": lambda odd: {k: odd for k in FIGURES},
}


@pytest.mark.parametrize("odd", list(ODD), ids=list(ODD))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_command_shows_statistics_of_any_type(store: FileStatusStore, shape: str,
                                                    odd: str) -> None:
    value = ODD[odd]
    _edit(store, _status(SHAPES[shape](value), start=_leaves(START, value)))
    for args in COMMANDS:
        out = _works(*args)
        if args[0] == "history" and "json" not in args:
            assert "not yet" in out and "candidate weight 10%" in out
    text = _page_text(_works("report", NAME, "-o", "-"))
    assert "Rollout hand" in text and "Decisions (3)" in text
    status_out = _works("status", NAME)
    assert "weights" in status_out and "candidate 10%" in status_out


def test_a_huge_integer_is_not_a_figure_but_the_others_are_shown(
        store: FileStatusStore) -> None:
    figures = {**FIGURES, "shadow": {**FIGURES["shadow"], "mirrored": 10 ** 400}}
    _edit(store, _status(figures))
    out = _works("status", NAME)
    assert re.search(r"mirrored\s+│\s+n/a \(errors 1, dropped 0\)", out), out
    text = _page_text(_works("report", NAME, "-o", "-"))
    assert "0.420" in text


def test_a_window_out_of_a_dates_range_is_left_out(store: FileStatusStore) -> None:
    figures = {**FIGURES, "window": {"since": -1e308, "until": float("nan")}}
    _edit(store, _status(figures))
    out = _works("status", NAME)
    assert "window" not in out and "agreement" in out  # the other figures still shown


def test_repeats_holding_markup_is_shown_literally(store: FileStatusStore) -> None:
    _edit(store, _status({**FIGURES, "repeats": "[/oops]"}))
    for args in (["status", NAME], ["history", NAME]):
        assert "×[/oops]" in _works(*args)


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_a_decision_time_beyond_utc_range_is_shown_as_written(store: FileStatusStore,
                                                              when: str) -> None:
    _edit(store, _status(FIGURES, last_time=when))
    shown = when.replace("T", " ")
    for args in (["status", NAME], ["history", NAME]):
        assert shown in _works(*args)
    assert shown in _page_text(_works("report", NAME, "-o", "-"))
    _works("history", NAME, "-o", "json")


# --- a status that fails the status model: one line naming the file and the field ------------
@pytest.mark.parametrize("field", ["time", "phase", "step", "outcome", "reason"])
def test_a_decision_lacking_a_field_is_one_error_line(store: FileStatusStore,
                                                      field: str) -> None:
    status = _status(FIGURES)
    del status["decisions"][1][field]
    path = _edit(store, status)
    for args in (["status", NAME], ["status", NAME, "-o", "json"], ["history", NAME],
                 ["history", NAME, "-o", "json"], ["report", NAME, "-o", "-"]):
        r = _run(*args)
        lines = r.output.strip().splitlines()
        assert r.exit_code == 1 and len(lines) == 1, (args, r.output)
        assert lines[0].startswith("error: ") and str(path) in lines[0], lines[0]
        assert f"decisions.1.{field}: Field required" in lines[0], lines[0]
    assert not (Path.cwd() / f"rollout-{NAME}.html").exists()
