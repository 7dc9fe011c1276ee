"""The controller loop with a real file store, a scripted metrics source and a dict registry.

Real processes (router, model servers, MLflow registry) are in ``test_rollout_e2e.py``; this
file checks the loop's own logic: version resolution, alias moves, rollback restores,
commands, and that a fresh controller on the same store carries on with the same decision.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from serving.router.schema import VariantWindow, WindowStats
from serving.rollout.controller import Controller
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class DictRegistry:
    """An in-memory stand-in for the registry's alias operations (the real one is MLflow);
    versions 1 to 3 are registered."""

    def __init__(self, **aliases: str) -> None:
        self.aliases: dict[str, str] = dict(aliases)
        self.versions = {"1", "2", "3"}

    def get_alias(self, alias: str) -> str | None:
        return self.aliases.get(alias)

    def has_version(self, version: str) -> bool:
        return version in self.versions

    def set_alias(self, alias: str, version: str) -> None:
        self.aliases[alias] = version

    def delete_alias(self, alias: str) -> None:
        self.aliases.pop(alias, None)

    def promote(self, version: str) -> None:
        old = self.aliases.get("production")
        if old is not None:
            self.aliases["previous"] = old
        self.aliases["production"] = version
        if self.aliases.get("candidate") == version:
            del self.aliases["candidate"]


class ScriptedSource:
    """Candidate error counts per tick; everything else healthy."""

    def __init__(self, errors: list[int]) -> None:
        self.errors = errors
        self.calls: list[tuple[float, float]] = []

    def window(self, since: float, until: float) -> WindowStats:
        i = len(self.calls)
        self.calls.append((since, until))
        e = self.errors[min(i, len(self.errors) - 1)]
        return WindowStats(since=since, until=until, variants={
            "baseline": VariantWindow(requests=900, errors=0, latency_p99_ms=10.0),
            "candidate": VariantWindow(requests=100, errors=e, latency_p99_ms=10.0)})


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


def rollout(**spec: Any) -> Any:
    body = {"baseline": {"alias": "production"}, "candidate": {"version": "2"},
            "strategy": "canary", "intervalSeconds": 1,
            "steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}],
            "analysis": {"failureLimit": 2, "minRequests": 50,
                         "metrics": [{"name": "errorRate", "max": 0.05}]}, **spec}
    return parse_rollout({"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
                          "metadata": {"name": "r1"}, "spec": body})


def test_a_healthy_canary_is_promoted_and_aliases_move(tmp_path: Path) -> None:
    store = FileStatusStore(tmp_path)
    store.create(rollout(intervalSeconds=0.02))
    reg = DictRegistry(production="1")
    c = Controller(store, "r1", ScriptedSource([0]), registry=reg, clock=Clock())
    final = c.run(stop=None, max_ticks=20)
    assert final.phase == Phase.SUCCEEDED
    assert reg.aliases == {"production": "2", "previous": "1"}
    phases = [(d.phase.value, d.step) for d in final.decisions]
    assert phases == [("Progressing", 1), ("Progressing", 2), ("Progressing", 3),
                      ("Promoting", 3), ("Succeeded", 3)]
    assert final.baseline_version == "1"
    assert final.aliases_before == {"production": "1", "candidate": None, "previous": None}


def test_a_failing_canary_rolls_back_and_restores_aliases(tmp_path: Path) -> None:
    store = FileStatusStore(tmp_path)
    store.create(rollout())
    reg = DictRegistry(production="1", candidate="3")
    src = ScriptedSource([20])
    c = Controller(store, "r1", src, registry=reg, clock=Clock())
    status = c.tick()
    assert reg.aliases["candidate"] == "2"  # the controller names what it is rolling out
    status = c.tick()
    assert status.failed_checks == 1 and status.phase == Phase.PROGRESSING
    status = c.tick()
    assert status.phase == Phase.ROLLED_BACK and "errorRate 0.2 > max 0.05" in status.message
    assert reg.aliases == {"production": "1", "candidate": "3"}
    # The analysis window starts when the stage started.
    assert src.calls[0][0] == src.calls[1][0] == status.decisions[0].time.timestamp()
    assert c.tick() == status  # terminal: nothing changes


def test_status_is_exported_for_the_rolloutfailing_alert(tmp_path: Path) -> None:
    """The gauges the RolloutFailing alert and the dashboard read follow the status: the
    failed check while progressing, then the RolledBack phase and no failed-checks series."""
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"rollout": "r1", "model": "movie-recommender",
                                                "model_version": "2", "strategy": "canary",
                                                **labels})

    store = FileStatusStore(tmp_path)
    store.create(rollout())
    c = Controller(store, "r1", ScriptedSource([0, 20]), registry=DictRegistry(production="1"),
                   clock=Clock())
    c.tick()  # started: step 1 at 10%
    assert value("marquee_rollout_phase", stage="Progressing") == 1.0
    assert value("marquee_rollout_phase", stage="Pending") == 0.0
    assert value("marquee_rollout_candidate_weight_ratio") == pytest.approx(0.10)
    assert value("marquee_rollout_failure_limit") == 2.0
    c.tick()  # healthy: step 2
    assert value("marquee_rollout_step") == 2.0 and value("marquee_rollout_failed_checks") == 0.0
    c.tick()  # 20% errors: one failed check
    assert value("marquee_rollout_failed_checks") == 1.0
    status = c.tick()  # the second: rolled back
    assert status.phase == Phase.ROLLED_BACK
    assert value("marquee_rollout_phase", stage="RolledBack") == 1.0
    assert value("marquee_rollout_phase", stage="Progressing") == 0.0
    assert value("marquee_rollout_failed_checks") is None  # the alert resolves


def test_commands_from_the_cli_are_applied_once(tmp_path: Path) -> None:
    store = FileStatusStore(tmp_path)
    store.create(rollout(steps=[{"weight": 10}, {"pause": {}}]))
    reg = DictRegistry(production="1")
    c = Controller(store, "r1", ScriptedSource([0]), registry=reg, clock=Clock())
    c.tick()
    status = c.tick()
    assert status.phase == Phase.PAUSED
    store.request("r1", "promote")
    status = c.tick()
    assert status.phase == Phase.PROMOTING and store.pending_command("r1") is None
    assert c.tick().phase == Phase.SUCCEEDED and reg.aliases["production"] == "2"


def test_unresolvable_baseline_fails_at_start(tmp_path: Path) -> None:
    store = FileStatusStore(tmp_path)
    store.create(rollout())
    c = Controller(store, "r1", ScriptedSource([0]), registry=DictRegistry(), clock=Clock())
    status = c.tick()
    assert status.phase == Phase.FAILED and "production" in status.message


def test_a_candidate_version_the_registry_lacks_fails_at_start(tmp_path: Path) -> None:
    """A typo in the candidate's version number (99 for 9): the rollout fails before any
    traffic moves, naming the version; no alias changes."""
    store = FileStatusStore(tmp_path)
    store.create(rollout(candidate={"version": "99"}))
    reg = DictRegistry(production="1")
    c = Controller(store, "r1", ScriptedSource([0]), registry=reg, clock=Clock())
    status = c.tick()
    assert status.phase == Phase.FAILED
    assert status.message == ("cannot start: candidateVersion unresolved (version 99 is not in "
                              "the registry)")
    assert (status.weights.baseline, status.weights.candidate) == (100, 0)
    assert reg.aliases == {"production": "1"}


@pytest.mark.parametrize("kill_after", [1, 2, 3, 4])
def test_a_new_controller_resumes_with_the_same_decisions(tmp_path: Path, kill_after: int) -> None:
    errors = [0, 0, 30, 30, 30]

    def run(root: Path, restart_at: int | None) -> Any:
        store = FileStatusStore(root)
        store.create(rollout())
        reg, clock = DictRegistry(production="1"), Clock()
        src = ScriptedSource(errors)
        c = Controller(store, "r1", src, registry=reg, clock=clock)
        for i in range(12):
            if i == restart_at:  # a fresh process: nothing but the store survives
                c = Controller(FileStatusStore(root), "r1", src, registry=reg, clock=clock)
            c.tick()
        return store.get("r1").status, reg.aliases

    plain = run(tmp_path / "a", None)
    restarted = run(tmp_path / "b", kill_after)
    assert plain[0].phase == Phase.ROLLED_BACK
    assert plain[0].to_dict() == restarted[0].to_dict() and plain[1] == restarted[1]


def test_cli_status_history_promote_abort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.rollout.cli import app

    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(rollout())
    c = Controller(store, "r1", ScriptedSource([0, 20]), registry=DictRegistry(production="1"),
                   clock=Clock())
    c.tick()
    c.tick()
    runner = CliRunner()
    r = runner.invoke(app, ["status", "r1"], env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    assert "Progressing" in r.output and "candidate 50%" in r.output
    r = runner.invoke(app, ["abort", "r1"])
    assert r.exit_code == 0 and store.pending_command("r1") == "abort"
    r = runner.invoke(app, ["status", "r1"], env={"COLUMNS": "160"})
    assert "pending command: abort" in r.output
    c.tick()
    r = runner.invoke(app, ["history", "r1"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "aborted by user" in r.output and "RolledBack" in r.output
    r = runner.invoke(app, ["promote", "r1"])
    assert r.exit_code == 1 and "error: rollout r1 already ended" in r.output
    r = runner.invoke(app, ["status", "nope"])
    assert r.exit_code == 1 and "error: no rollout named 'nope'" in r.output
    r = runner.invoke(app, ["history", "r1", "-o", "json"])
    assert r.exit_code == 0 and '"outcome": "Failed"' in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: marquee.dev/v1alpha1\nkind: ModelRollout\nmetadata: {name: x}\n"
                   "spec: {candidate: {version: '2'}, strategy: canary, intervalSecond: 3}\n")
    r = runner.invoke(app, ["start", "-f", str(bad), "--detach"])
    assert r.exit_code == 1 and "spec.intervalSecond" in r.output
    assert len(r.output.strip().splitlines()) == 1  # every problem, on one error line


def test_cli_start_from_flags_creates_a_rollout(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.rollout.cli import app

    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    runner = CliRunner()
    r = runner.invoke(app, ["start", "--strategy", "canary", "--candidate", "2", "--detach",
                            "--interval", "5"])
    assert r.exit_code == 0, r.output
    stored = FileStatusStore(tmp_path / "rollouts").get("canary-v2")
    spec = stored.rollout.spec
    assert (spec.strategy, spec.candidate.version, spec.baseline.alias) == ("canary", "2",
                                                                            "production")
    assert [s.weight for s in spec.steps] == [10, 25, 50, 100] and spec.interval_seconds == 5
    assert stored.status.phase == Phase.PENDING
    r = runner.invoke(app, ["start", "--strategy", "canary", "--candidate", "2", "--detach",
                            "--interval", "5"])
    assert r.exit_code == 0 and "resuming" in r.output
    r = runner.invoke(app, ["start", "--strategy", "canary"])
    assert r.exit_code == 2 and "--candidate" in r.output  # a usage error
    r = runner.invoke(app, ["start", "--strategy", "canary", "--candidate", "3", "--detach",
                            "--interval", "0"])  # before: 0 was taken as "not given" (30 s)
    assert r.exit_code == 1 and "intervalSeconds" in r.output
    r = runner.invoke(app, ["status", "-o", "json"])
    assert r.exit_code == 0 and '"phase": "Pending"' in r.output


def test_the_controller_process_runs_every_rollout_and_serves_health(tmp_path: Path) -> None:
    import httpx

    from serving.rollout.manager import RolloutManager, serve_health
    from tests.conftest import free_port

    store = FileStatusStore(tmp_path)
    # two models: two rollouts of one model at once are refused (one routing, one production)
    for name, errors in (("good", 0), ("bad", 20)):
        body = rollout().model_dump(by_alias=True, mode="json")
        body["metadata"]["name"] = name
        body["spec"]["modelName"] = f"{name}-recommender"
        store.create(parse_rollout(body))
    sources = {"good": ScriptedSource([0]), "bad": ScriptedSource([20])}

    class BySpec:  # each rollout sees its own traffic
        current = "good"

        def window(self, since: float, until: float) -> WindowStats:
            return sources[self.current].window(since, until)

    src = BySpec()
    t = [0.0]
    registries = {m: DictRegistry(production="1") for m in ("good-recommender",
                                                             "bad-recommender")}
    mgr = RolloutManager(store, src, None, registries.__getitem__, clock=lambda: t[0])
    port = free_port()
    health = serve_health("127.0.0.1", port, lambda: mgr.ready)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503
        original = Controller.tick

        def tick(self: Controller) -> Any:
            src.current = self.name
            return original(self)
        Controller.tick = tick  # type: ignore[method-assign]
        try:
            for step in range(8):
                t[0] = step * 1.0
                mgr.run_once()
                assert mgr.run_once() == {}  # not due again within the interval
        finally:
            Controller.tick = original  # type: ignore[method-assign]
        assert store.get("good").status.phase == Phase.SUCCEEDED
        assert store.get("bad").status.phase == Phase.ROLLED_BACK
        # each rollout moved its own model's aliases only
        assert registries["good-recommender"].aliases == {"production": "2", "previous": "1"}
        assert registries["bad-recommender"].aliases == {"production": "1"}
        # Nothing runs now: the routing the last rollout ended with is re-applied.
        applied: list[Any] = []

        class Admin:
            def apply(self, routing: Any) -> None:
                applied.append(routing)

        mgr.router = Admin()  # type: ignore[assignment]
        t[0] = 100.0
        mgr.run_once()
        last = max(("good", "bad"), key=lambda n: store.get(n).status.decisions[-1].time)
        want = "2" if last == "good" else "1"
        assert applied and applied[-1].strategy == "single"
        assert applied[-1].baseline.version == want
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'marquee_rollout_decisions_total{reason="Failed",strategy="canary"}' in text
    finally:
        health.shutdown()


def test_a_running_rollouts_routing_is_reapplied_between_its_ticks(tmp_path: Path) -> None:
    """A router replica started mid-rollout comes up on its configured baseline; the manager
    re-applies the rollout's routing every few seconds, not only at analysis ticks."""
    from serving.rollout.machine import desired_routing
    from serving.rollout.manager import RolloutManager

    store = FileStatusStore(tmp_path)
    store.create(rollout(intervalSeconds=60))
    applied: list[Any] = []

    class Admin:
        def apply(self, routing: Any) -> None:
            applied.append(routing)

    t = [0.0]
    mgr = RolloutManager(store, ScriptedSource([0]), Admin(),  # type: ignore[arg-type]
                         DictRegistry(production="1"), clock=lambda: t[0])
    mgr.run_once()  # the first tick starts the canary and applies its routing
    stored = store.get("r1")
    decisions = len(stored.status.decisions)
    assert stored.status.phase == Phase.PROGRESSING and len(applied) == 1
    t[0] = 3.0
    mgr.run_once()
    assert len(applied) == 1  # within reconcile_seconds of the last apply
    t[0] = 6.0
    assert mgr.run_once() == {}  # no analysis tick before intervalSeconds…
    assert len(applied) == 2  # …but the routing went out again, unchanged
    assert applied[1] == applied[0] == desired_routing(stored.rollout.spec, stored.status, "r1")
    assert applied[1].candidate_weight == 10
    assert len(store.get("r1").status.decisions) == decisions


def test_healthz_fails_while_a_pass_over_the_rollouts_hangs(tmp_path: Path) -> None:
    """The liveness endpoint reports progress, not only a live process: when a call inside
    the loop hangs (here the store's listing), /healthz turns 503 after ``stall_seconds``,
    so Kubernetes restarts the pod; once passes end again it is 200."""
    import threading

    import httpx

    from serving.rollout.manager import RolloutManager, serve_health
    from tests.conftest import free_port, wait_until

    store = FileStatusStore(tmp_path)
    store.create(rollout())
    release, hung = threading.Event(), threading.Event()
    release.set()
    real_list = store.list

    def listing() -> list[str]:
        if not release.is_set():
            hung.set()
            release.wait(30)
        return real_list()

    store.list = listing  # type: ignore[method-assign]
    mgr = RolloutManager(store, ScriptedSource([0]), None, DictRegistry(production="1"))
    port = free_port()
    health = serve_health("127.0.0.1", port, lambda: mgr.ready, lambda: mgr.alive(0.5))
    stop = threading.Event()
    loop = threading.Thread(target=mgr.run, args=(stop, 0.05), daemon=True)
    loop.start()
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        wait_until(lambda: mgr.ready, timeout=10)
        assert httpx.get(url).status_code == 200
        release.clear()
        assert hung.wait(10)
        wait_until(lambda: httpx.get(url).status_code == 503, timeout=10)
        assert httpx.get(url).json() == {"status": "stalled"}
        release.set()
        wait_until(lambda: httpx.get(url).status_code == 200, timeout=10)
    finally:
        release.set()
        stop.set()
        loop.join(10)
        health.shutdown()


def test_cli_run_exits_1_when_the_rollout_fails(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``rollout run`` ends as ``rollout start`` does: exit 1 for Failed or RolledBack (it
    exited 0 whatever the outcome). Version 99 is not in the (empty) registry: the rollout
    fails at start (its baseline, the production alias, is not set either), before any
    routing."""
    from serving.rollout.cli import app

    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    runner = CliRunner()
    r = runner.invoke(app, ["start", "--strategy", "canary", "--candidate", "99", "--detach",
                            "--name", "c99"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["run", "c99", "--router", "http://127.0.0.1:9"])
    assert r.exit_code == 1, r.output
    assert "rollout c99: Failed: cannot start" in r.output


def test_status_says_when_the_router_does_not_run_the_decided_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, with the router unreachable, `rollout status` showed 'candidate 10%' as if in
    force; only the controller's log said the routing was not applied."""
    from serving.rollout.cli import app
    from serving.rollout.sources import SourceError

    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(rollout())
    up = [False]

    class Admin:
        def apply(self, routing: Any) -> None:
            if not up[0]:
                raise SourceError("router http://127.0.0.1:9 unreachable: ConnectError")

    c = Controller(store, "r1", ScriptedSource([0, 0, 0]), Admin(),  # type: ignore[arg-type]
                   registry=DictRegistry(production="1"), clock=Clock())
    c.tick()
    status = store.get("r1").status
    assert status.phase == Phase.PROGRESSING and status.weights.candidate == 10
    assert "unreachable" in status.routing_error
    r = CliRunner().invoke(app, ["status", "r1"], env={"COLUMNS": "200"})
    assert "NOT applied" in r.output and "unreachable" in r.output
    up[0] = True
    c.tick()
    assert store.get("r1").status.routing_error == ""
    r = CliRunner().invoke(app, ["status", "r1"], env={"COLUMNS": "200"})
    assert "NOT applied" not in r.output


def test_abort_is_carried_out_while_the_metrics_are_unreadable(tmp_path: Path) -> None:
    """Before, the tick returned on the source's error before it read the command: with the
    router (or Prometheus) down, `rollout abort` said yes and nothing happened."""
    from serving.rollout.sources import SourceError

    store = FileStatusStore(tmp_path)
    store.create(rollout())
    reg = DictRegistry(production="1")
    src = ScriptedSource([0, 0, 0])
    clock = Clock()
    c = Controller(store, "r1", src, registry=reg, clock=clock)
    c.tick()
    assert store.get("r1").status.phase == Phase.PROGRESSING

    class Down:
        def window(self, since: float, until: float) -> Any:
            raise SourceError("router http://127.0.0.1:9 unreachable")

    c = Controller(store, "r1", Down(), registry=reg, clock=clock)  # type: ignore[arg-type]
    assert c.tick().phase == Phase.PROGRESSING  # no command: the tick waits for metrics
    store.request("r1", "abort")
    status = c.tick()
    assert status.phase == Phase.ROLLED_BACK and "aborted by user" in status.message
    assert reg.aliases["production"] == "1" and store.pending_command("r1") is None


def test_the_manager_leaves_a_rollout_that_another_controller_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, `marquee rollout controller` ticked a rollout that `marquee rollout run` was
    running too (0.4 s apart, one status write over the other), and two `rollout controller`
    processes on one home both acted."""
    from serving.rollout.cli import app
    from serving.rollout.manager import RolloutManager

    store = FileStatusStore(tmp_path / "rollouts")
    store.create(rollout())
    t = [0.0]
    mgr = RolloutManager(store, ScriptedSource([0, 0]), None,  # type: ignore[arg-type]
                         DictRegistry(production="1"), clock=lambda: t[0])
    with store.lock("r1"):  # as `marquee rollout run r1` holds it
        assert mgr.run_once() == {}
        assert store.get("r1").status.phase == Phase.PENDING
    assert set(mgr.run_once()) == {"r1"}  # released: the manager takes it at once
    assert store.get("r1").status.phase == Phase.PROGRESSING

    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    with store.manager_lock():  # a `marquee rollout controller` runs these rollouts
        r = CliRunner().invoke(app, ["controller", "--port", "1"])
    assert r.exit_code == 1 and "another `marquee rollout controller`" in r.output


def test_promote_before_the_first_tick_is_refused_with_a_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the first tick cleared a pending promote without a word: the rollout then ran
    its whole analysis while the release owner believed it promoted."""
    from serving.rollout.cli import app

    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(rollout())
    runner = CliRunner()
    r = runner.invoke(app, ["promote", "r1"])
    assert r.exit_code == 1, r.output
    assert "error: rollout r1 has not started yet" in r.output and "Pending" in r.output
    assert store.pending_command("r1") is None
    # the same command set behind the CLI's back (kubectl annotate): refused in the status
    store.request("r1", "promote")
    reg = DictRegistry(production="1")
    c = Controller(store, "r1", ScriptedSource([0]), registry=reg, clock=Clock())
    status = c.tick()
    assert (status.phase, status.step) == (Phase.PROGRESSING, 1)
    assert "promote refused" in status.message and store.pending_command("r1") is None
    assert reg.aliases["production"] == "1"
    r = runner.invoke(app, ["history", "r1"], env={"COLUMNS": "250"})
    assert "promote refused" in r.output
    # once it runs, promote is taken
    r = runner.invoke(app, ["promote", "r1"])
    assert r.exit_code == 0, r.output
    assert c.tick().phase == Phase.PROMOTING
    assert c.tick().phase == Phase.SUCCEEDED and reg.aliases["production"] == "2"


def test_a_pause_does_not_pass_while_the_router_is_down(tmp_path: Path) -> None:
    """A timed pause whose whole interval had no analysis (router down, then back with an
    empty window) waits, Inconclusive, instead of advancing; it advances on healthy data."""
    from serving.rollout.sources import SourceError

    class Flaky:
        def __init__(self) -> None:
            self.mode = "healthy"

        def window(self, since: float, until: float) -> WindowStats:
            if self.mode == "down":
                raise SourceError("router http://127.0.0.1:9 unreachable")
            n = 100 if self.mode == "healthy" else 0
            return WindowStats(since=since, until=until, variants={
                "baseline": VariantWindow(requests=9 * n, errors=0, latency_p99_ms=10.0),
                "candidate": VariantWindow(requests=n, errors=0, latency_p99_ms=10.0)})

    store = FileStatusStore(tmp_path)
    store.create(rollout(steps=[{"weight": 10}, {"pause": {"seconds": 5}}, {"weight": 50}]))
    clock, src = Clock(), Flaky()
    c = Controller(store, "r1", src, registry=DictRegistry(production="1"), clock=clock)
    c.tick()
    status = c.tick()
    assert (status.phase, status.step) == (Phase.PAUSED, 2)
    src.mode = "down"
    for _ in range(10):  # 10 s, twice the pause, without a single window
        status = c.tick()
        assert (status.phase, status.step) == (Phase.PAUSED, 2), status.message
    assert "metrics unavailable" in status.message and status.failed_checks == 0
    last = status.last_decision
    assert last is not None and last.outcome.value == "Inconclusive"
    src.mode = "empty"  # back, but restarted: nothing seen in this stage
    status = c.tick()
    assert (status.phase, status.step) == (Phase.PAUSED, 2), status.message
    src.mode = "healthy"
    status = c.tick()
    assert (status.phase, status.step, status.weights.candidate) == (Phase.PROGRESSING, 3, 50)
