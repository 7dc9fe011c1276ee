"""What the release owner sees and types in ``marquee rollout`` (helper G, session 16).

Each test failed on the code before its fix: a traceback for a name the file store refuses,
``start -f`` silently ignoring ``--candidate``/``--baseline``, a traceback when the
controller's health port is taken, a status table without the figures of A/B, shadow and
interleaving analyses (and with times in no stated timezone), a traceback or lost text for a
reason holding square brackets, a JSON status without the pending command, and the live
output of ``rollout start`` going silent once "not yet" decisions were folded."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.router.schema import InterleaveWindow, ShadowWindow, VariantWindow, WindowStats
from serving.rollout.controller import Controller
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Decision, Outcome, Phase, RolloutStatus
from serving.rollout.store import FileStatusStore
from tests.rollout.test_rollout_controller import Clock, DictRegistry
from tests.unit.test_cli_errors import marquee

REPO = Path(__file__).resolve().parents[2]
NOBODY = "http://127.0.0.1:9"  # nothing listens on the discard port
WIDE = {"COLUMNS": "250"}


def _create(store: FileStatusStore, name: str, **spec: object) -> None:
    body = {"modelName": f"model-{name}",  # one rollout of a model at a time
            "baseline": {"alias": "production"}, "candidate": {"version": "2"},
            "intervalSeconds": 1, **spec}
    store.create(parse_rollout({"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
                                "metadata": {"name": name}, "spec": body}))


class Windows:
    """What a router reports per tick, one kind per strategy (the router itself runs in
    test_rollout_e2e.py; here only what the CLI shows of the analysis matters)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def window(self, since: float, until: float) -> WindowStats:
        if self.kind == "shadow":
            return WindowStats(since=since, until=until, shadow=ShadowWindow(
                mirrored=120, errors=1, dropped=3, latency_p99_ms=12.5,
                baseline_latency_p99_ms=10.0, topk_overlap_mean=0.4213, rbo_mean=0.5117,
                kendall_tau_mean=None))  # no list shared two items: unmeasured
        if self.kind == "ab":
            return WindowStats(since=since, until=until, variants={
                "baseline": VariantWindow(requests=300, latency_p99_ms=10.0, exposures=300,
                                          clicked_exposures=60, users=100),
                "candidate": VariantWindow(requests=300, latency_p99_ms=None, exposures=300,
                                           clicked_exposures=66, users=101)})
        return WindowStats(since=since, until=until, variants={
            "baseline": VariantWindow(requests=300, latency_p99_ms=10.0),
            "candidate": VariantWindow(requests=300, latency_p99_ms=10.0)},
            interleave=InterleaveWindow(impressions=300, baseline_wins=41, candidate_wins=57,
                                        ties=7))


@pytest.fixture()
def rollouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileStatusStore:
    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    store = FileStatusStore(tmp_path / "rollouts")
    _create(store, "sh", strategy="shadow", shadow={"minRequests": 100_000},
            analysis={"minRequests": 50, "metrics": [{"name": "errorRate", "max": 0.05},
                                                     {"name": "kendallTau", "min": 0.1}]})
    _create(store, "ab", strategy="ab", ab={"minSamplesPerVariant": 100})
    _create(store, "il", strategy="interleave", interleave={"minDecisions": 1000})
    _create(store, "pend", strategy="canary")
    for name, kind in (("sh", "shadow"), ("ab", "ab"), ("il", "interleave")):
        c = Controller(store, name, Windows(kind), registry=DictRegistry(production="1"),
                       clock=Clock())
        for _ in range(4):
            c.tick()
    return store


def test_status_shows_the_figures_of_each_strategy_with_missing_ones_as_n_a(
        rollouts: FileStatusStore) -> None:
    """Before: a shadow showed only the configured checks (no mirrored count, no top-k
    overlap), an A/B only 'msprt p 1' (no CTRs, difference or interval), an interleaving
    nothing at all of its wins; an unmeasured check (None) vanished from the table."""
    from serving.rollout.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["status", "sh"], env=WIDE)
    assert out.exit_code == 0, out.output
    assert "120 (errors 1, dropped 3)" in out.output
    assert "top-k overlap 0.4213, RBO 0.5117, Kendall tau n/a" in out.output
    assert "kendallTau n/a" in out.output and "candidate 12.5 ms · baseline 10 ms" in out.output
    out = runner.invoke(app, ["status", "ab"], env=WIDE)
    assert out.exit_code == 0, out.output
    assert "CTR candidate 0.22 vs baseline 0.2, difference +0.02 in [" in out.output
    assert "66/300 lists), users 101" in out.output
    assert "p99 n/a" in out.output  # the candidate's latency is missing in the window
    out = runner.invoke(app, ["status", "il"], env=WIDE)
    assert out.exit_code == 0, out.output
    assert "candidate wins 57, baseline wins 41, ties 7" in out.output
    out = runner.invoke(app, ["status", "pend"], env=WIDE)  # has not ticked: no figures
    assert out.exit_code == 0 and "Pending" in out.output, out.output


def test_times_state_their_timezone(rollouts: FileStatusStore) -> None:
    """Before: '2026-01-01 00:00:01', UTC without saying so, next to log lines in local time."""
    from serving.rollout.cli import app

    runner = CliRunner()
    for args in (["status", "ab"], ["history", "ab"]):
        out = runner.invoke(app, args, env=WIDE)
        assert out.exit_code == 0, out.output
        assert "time (UTC)" in out.output and "2026-01-01 00:00:01" in out.output


def test_json_status_is_json_with_the_pending_command_of_the_table(
        rollouts: FileStatusStore) -> None:
    from serving.rollout.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["abort", "il"]).exit_code == 0
    table = runner.invoke(app, ["status", "il"], env=WIDE).output
    assert "pending command: abort" in table
    out = runner.invoke(app, ["status", "-o", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert sorted(doc) == ["ab", "il", "pend", "sh"]
    assert doc["il"]["pendingCommand"] == "abort" and doc["ab"]["pendingCommand"] is None
    assert doc["il"]["decisions"][-1]["statistics"]["interleave"]["candidate_wins"] == 57


def test_a_reason_with_square_brackets_is_shown_as_written(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision reasons and the routing error carry other programs' text (registry, router,
    Prometheus errors). Before, rich read '[...]' in them as markup: '[movie-recommender]'
    vanished and '[/tmp/x]' ended `rollout status` and `history` with a MarkupError."""
    from serving.rollout.cli import app

    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    store = FileStatusStore(tmp_path / "rollouts")
    _create(store, "r1", strategy="canary")
    reason = "cannot start: candidateVersion unresolved (see [/tmp/x] of [movie-recommender])"
    store.save_status("r1", RolloutStatus(
        phase=Phase.FAILED, message=reason, routing_error="refused [bad routing]",
        decisions=[Decision(time=datetime(2026, 1, 1, tzinfo=timezone.utc), phase=Phase.FAILED,
                            step=0, outcome=Outcome.FAILED, reason=reason)]))
    for args in (["status", "r1"], ["history", "r1"]):
        out = CliRunner().invoke(app, args, env=WIDE)
        assert out.exit_code == 0, out.output
        assert "[/tmp/x] of [movie-recommender]" in out.output
    assert "refused [bad routing]" in CliRunner().invoke(app, ["status", "r1"], env=WIDE).output


@pytest.mark.parametrize("args", [("status", "a/b"), ("history", ".x"), ("promote", "../x"),
                                  ("abort", "a/b"), ("run", "a/b", "--router", NOBODY)])
def test_a_name_the_store_refuses_is_one_error_line(tmp_path: Path, args: tuple[str, ...]
                                                    ) -> None:
    """Before: a ValueError traceback from the file store."""
    out = marquee(tmp_path, "rollout", *args, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid rollout name"), lines


def test_start_from_a_file_applies_candidate_and_baseline(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: `start -f rollout-canary.yaml --candidate 3 --baseline production` created a
    rollout of candidate 2 against version 1 (the file's), without a word."""
    from serving.rollout.cli import app

    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    example = REPO / "k8s" / "examples" / "rollout-canary.yaml"
    r = CliRunner().invoke(app, ["start", "-f", str(example), "--candidate", "3",
                                 "--baseline", "production", "--name", "v3", "--detach"])
    assert r.exit_code == 0, r.output
    spec = FileStatusStore(tmp_path / "rollouts").get("v3").rollout.spec
    assert (spec.candidate.version, spec.baseline.alias, spec.baseline.version) == \
        ("3", "production", None)
    assert [s.weight for s in spec.steps][:2] == [5, 25]  # the rest is the file's
    # as it is, in another home (v3, of the same model, has not ended)
    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path / "other"))
    r = CliRunner().invoke(app, ["start", "-f", str(example), "--detach"])
    assert r.exit_code == 0, r.output
    spec = FileStatusStore(tmp_path / "other" / "rollouts").get("recommender-v2").rollout.spec
    assert (spec.candidate.version, spec.baseline.version) == ("2", "1")


def test_a_taken_health_port_is_one_error_line(tmp_path: Path) -> None:
    """Before: an OSError traceback (the default 8080 is a common port)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = marquee(tmp_path, "rollout", "controller", "--router", NOBODY, "--host",
                      "127.0.0.1", "--port", str(port), timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == \
        f"error: cannot serve /healthz on 127.0.0.1:{port}: Address already in use"
    out = marquee(tmp_path, "rollout", "controller", "--port", "99999", timeout=60)
    assert out.returncode == 2 and "Invalid value for '--port'" in out.stderr, out.stderr


def test_start_keeps_printing_decisions_that_are_folded(tmp_path: Path) -> None:
    """`marquee rollout start` prints each tick's decision. Repeated "not yet" decisions are
    folded into one in the status (×repeats), which did not lengthen the list, so before the
    live output went silent after the first one: here, with the router down, one
    'metrics unavailable' line and then nothing until the rollout failed."""
    from marquee.registry import Registry
    from marquee.settings import Settings

    home = tmp_path / "home"
    registry = Registry(Settings(home=home).resolved_registry_uri)
    for _ in range(2):
        registry.register((tmp_path / "bundle").as_uri(), {})
    spec = tmp_path / "rollout.yaml"
    spec.write_text("apiVersion: marquee.dev/v1alpha1\nkind: ModelRollout\n"
                    "metadata: {name: watch}\n"
                    "spec: {baseline: {version: '1'}, candidate: {version: '2'}, "
                    "strategy: canary, intervalSeconds: 1, "
                    "limits: {maxDurationSeconds: 8}}\n")  # 2+ ticks on a loaded machine
    out = marquee(home, "rollout", "start", "-f", str(spec), "--router", NOBODY, timeout=120)
    assert out.returncode == 1, out.stderr  # no decision within maxDurationSeconds: Failed
    lines = [x for x in out.stdout.splitlines() if "Inconclusive" in x]
    assert len(lines) >= 2, out.stdout
    assert "Inconclusive ×2" in lines[1] and "metrics unavailable" in lines[1], out.stdout
    assert lines[0].split()[0].endswith("Z"), out.stdout  # the time says it is UTC


def test_one_damaged_rollout_does_not_hide_the_others(rollouts: FileStatusStore,
                                                      tmp_path: Path) -> None:
    """`status` of every rollout ended at the first unreadable one, showing none of the
    others: that one is now its own error line (exit 1), and the others are shown."""
    from serving.rollout.cli import app

    (tmp_path / "rollouts" / "ab" / "status.json").write_text("{not json")
    runner = CliRunner()
    for args in (["status"], ["status", "-o", "json"]):
        out = runner.invoke(app, args, env=WIDE)
        assert out.exit_code == 1, out.output
        assert "error: " in out.output and "ab" in out.output
        if args == ["status"]:
            for other in ("rollout sh", "rollout il", "rollout pend"):
                assert other in out.output
    shown = json.loads(out.stdout)
    assert sorted(shown) == ["il", "pend", "sh"]
    assert runner.invoke(app, ["status", "ab"]).exit_code == 1
