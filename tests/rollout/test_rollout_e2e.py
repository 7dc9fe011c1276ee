"""Rollouts that decide by themselves, with real processes on 127.0.0.1.

Model servers (``marquee serve``, KServe) run the real recommender: a good model and one
trained on shuffled interactions, some with the serving engineer's fault injection (error
rate, extra latency). Each test starts its own router (``marquee router``); the controller
runs in-process on the real router admin API and an MLflow registry on SQLite, except in the
restart test, where ``marquee rollout`` runs as a process that is killed. Replayed users click
what they really interact with in their held-out events. Analysis intervals are 0.5–1 s.

Timings are printed (and recorded by benchmarks/router.py), never asserted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from serving.replay.engine import ReplayReport, run_replay
from serving.replay.users import ReplayUser, load_users
from serving.rollout.controller import Controller, MarqueeRegistry
from serving.rollout.sources import RouterAdmin, RouterStatsSource
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Outcome, Phase, RolloutStatus
from serving.rollout.store import FileStatusStore
from tests.conftest import REPO, stop_process, wait_until
from tests.rollout.rollout_support import (
    MODEL,
    Models,
    PendingServer,
    Proc,
    shared_models,
    start_model_server,
    start_router,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.xdist_group("rollout-e2e")]

RATE = 40.0  # requests per second: below saturation on a shared 2-core machine


@dataclass
class Stack:
    home: Path
    logs: Path
    models: Models
    servers: dict[str, Proc]
    registry_uri: str
    users: list[ReplayUser]

    def upstreams(self) -> dict[str, str]:
        return {v: p.url for v, p in self.servers.items()}

    def registry(self) -> MarqueeRegistry:
        return MarqueeRegistry(self.registry_uri, MODEL)


def _direct_p99(url: str, n: int = 200) -> float:
    lat = []
    with httpx.Client(timeout=10) as c:
        for u in range(1, n + 1):
            t = time.perf_counter()
            r = c.post(f"{url}/v1/models/{MODEL}:predict",
                       json={"instances": [{"user_id": u, "k": 10}]})
            lat.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
    lat.sort()
    return lat[int(0.99 * (len(lat) - 1))]


def _routed_p99(url: str, users: list[ReplayUser], home: Path, logs: Path,
                n: int = 400) -> float:
    """The baseline's p99 as the router measures it (the analysis' own figure) for ``n``
    replayed requests at the tests' rate."""
    probe = start_router({"1": url}, "1", home, logs, exposure_log_enabled=False)
    try:
        run_replay(probe.url, users, rate=RATE, requests=100, seed=0)  # warm-up, not counted
        time.sleep(1.0)  # the window starts on a fresh 1-second bucket
        since = time.time()
        run_replay(probe.url, users[100:], rate=RATE, requests=n, seed=0)
        stats = httpx.get(f"{probe.url}/admin/stats", params={"since": since},
                          timeout=10).json()
        return float(stats["variants"]["baseline"]["latency_p99_ms"])
    finally:
        probe.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    models = shared_models(tmp_path_factory)
    home = tmp_path_factory.mktemp("rollout-home")
    logs = home / "logs"
    logs.mkdir()
    good3 = models.labelled(models.good, "3")
    good4 = models.labelled(models.good, "4")
    # 1 good (production), 2 shuffled, 3 good but failing 20% of requests.
    pending = {"1": PendingServer(models.good, home, logs),
               "2": PendingServer(models.shuffled, home, logs),
               "3": PendingServer(good3, home, logs, fault_error_rate=0.2, fault_seed=7)}
    servers: dict[str, Proc] = {}
    try:
        for version, p in pending.items():
            servers[version] = p.ready()
        users = load_users(models.holdout, models.holdout, order="random", seed=1)
        # 4 (the good model made 3x slower) is started by its test, sized to the load then.
        servers["6"] = servers["1"]  # version 6: the good bundle again, a "better" candidate
        from marquee.registry import Registry

        registry_uri = f"sqlite:///{home / 'registry.db'}"
        reg = Registry(registry_uri, MODEL)
        for bundle in (models.good, models.shuffled, good3, good4, models.good, models.good):
            reg.register(bundle.resolve().as_uri(), {})
        yield Stack(home, logs, models, servers, registry_uri, users)
    finally:
        for p in {id(p.proc): p for p in servers.values()}.values():
            p.stop()
        for p in pending.values():
            stop_process(p.proc)


@pytest.fixture()
def router(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Proc]:
    """A fresh router; indirect parameters are extra router settings."""
    settings = getattr(request, "param", {})
    r = start_router(stack.upstreams(), "1", stack.home, stack.logs, exposure_log_enabled=False,
                     **settings)
    yield r
    r.stop()


def _set_aliases(stack: Stack, **aliases: str | None) -> None:
    reg = stack.registry()
    for alias in ("production", "candidate", "previous"):
        want = aliases.get(alias)
        if want is None:
            reg.delete_alias(alias)
        else:
            reg.set_alias(alias, want)


def _doc(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name}, "spec": {"modelName": MODEL, **spec}}


def run_rollout(stack: Stack, router: Proc, tmp_path: Path, doc: dict[str, Any], *,
                seed: int, max_seconds: float = 40.0, after: float = 1.0,
                rate: float = RATE) -> tuple[RolloutStatus, ReplayReport, float]:
    """Create the rollout, run the controller in a thread and replay users until it ends.

    Traffic goes on for ``after`` seconds past the end (to see what users get then).
    Returns the final status, the replay report, and the replay time at which it ended.
    """
    store = FileStatusStore(tmp_path / "rollouts")
    rollout = parse_rollout(doc)
    store.create(rollout)
    admin = RouterAdmin(router.url)
    controller = Controller(store, rollout.name, RouterStatsSource(admin), admin,
                            stack.registry())
    stop_traffic = threading.Event()
    stop_controller = threading.Event()
    ended_at: list[float] = []
    t0 = time.perf_counter()

    def on_tick(status: RolloutStatus) -> None:
        if status.phase.terminal and not ended_at:
            ended_at.append(time.perf_counter() - t0)
            threading.Timer(after, stop_traffic.set).start()

    final: list[RolloutStatus] = []
    thread = threading.Thread(
        target=lambda: final.append(controller.run(stop_controller, on_tick=on_tick)),
        daemon=True)
    thread.start()
    try:
        users = stack.users[seed * 97 % len(stack.users):] + stack.users
        report = run_replay(router.url, users, rate=rate, duration=max_seconds,
                            stop=stop_traffic, seed=seed)
    finally:
        stop_controller.set()
        thread.join(timeout=30)
        admin.close()
    status = final[0] if final else store.get(rollout.name).status
    print(f"\n{rollout.name}: {status.phase.value} after {ended_at[0] if ended_at else None}s: "
          f"{status.message}\n  traffic: {report.summary()}")
    return status, report, (ended_at[0] if ended_at else float("inf"))


def _analysis_ticks(status: RolloutStatus) -> list[Any]:
    """Decisions after the start, counting folded repeats as the ticks they were."""
    out = []
    for d in status.decisions[1:]:
        out.extend([d] * int(d.statistics.get("repeats", 1)))
    return out


# --- canary ---------------------------------------------------------------------------------
def test_candidate_failing_20_percent_is_rolled_back_within_two_intervals(
        stack: Stack, router: Proc, tmp_path: Path) -> None:
    _set_aliases(stack, production="1")
    weight = 25
    status, report, ended = run_rollout(stack, router, tmp_path, _doc(
        "errors-v3", baseline={"alias": "production"}, candidate={"version": "3"},
        strategy="canary", stickinessSalt="errors", intervalSeconds=1.0,
        steps=[{"weight": weight}, {"weight": 50}, {"weight": 100}],
        analysis={"failureLimit": 2, "minRequests": 15,
                  "metrics": [{"name": "errorRate", "max": 0.05}]}), seed=1)
    assert status.phase == Phase.ROLLED_BACK, status.message
    # From the first interval with enough candidate traffic to judge (minRequests), two
    # intervals: two failed checks, then the rollback; it never got past its first step.
    judged = [d.outcome for d in _analysis_ticks(status) if d.outcome != Outcome.INCONCLUSIVE]
    assert judged == [Outcome.FAILED, Outcome.FAILED], [d.reason for d in status.decisions]
    assert all(d.step == 1 for d in status.decisions)
    assert "errorRate" in status.message
    # Only users assigned to the candidate saw errors; the candidate saw ~its step weight.
    assert report.errors > 0
    assert {o.variant for o in report.outcomes if o.status != 200} == {"candidate"}
    during = [o for o in report.outcomes if o.t < ended]
    users = {o.user_id for o in during}
    on_candidate = {o.user_id for o in during if o.variant == "candidate"}
    share = len(on_candidate) / len(users)
    assert share <= weight / 100 + 3 * (0.25 * 0.75 / len(users)) ** 0.5, share
    assert report.users_with_errors() <= on_candidate
    # After the rollback nobody is routed to the candidate any more.
    late = [o for o in report.outcomes if o.t > ended + 0.3]
    assert late and all(o.status == 200 and o.variant == "baseline" for o in late)
    assert stack.registry().get_alias("production") == "1"
    assert stack.registry().get_alias("candidate") is None  # restored


def test_candidate_with_3x_latency_is_rolled_back(stack: Stack, tmp_path: Path) -> None:
    # Robust on a loaded machine without a softer bar (still a 1.5 p99 ratio against a 3x
    # slower candidate):
    # 1. "3x" is measured where and when it is judged: the slow candidate's extra latency is
    #    2x the baseline's p99 as the router sees it under this traffic, right now (queueing
    #    under load raises it far above an idle sequential measurement taken at start-up).
    # 2. p99 needs samples. With ~15 requests per side a window's p99 is its single slowest
    #    request, so one scheduling stall of the baseline passed the candidate, which then
    #    advanced to 100% and was never judged against the baseline again. The first step
    #    splits 50/50 (the maximum of more samples is larger, which biased a 30% canary's
    #    ratio downwards) and the check waits for 150 requests per side.
    _set_aliases(stack, production="1")
    base_p99 = max(_direct_p99(stack.servers["1"].url),
                   _routed_p99(stack.servers["1"].url, stack.users, stack.home, stack.logs))
    extra = max(20.0, 2 * base_p99)
    slow = start_model_server(stack.models.labelled(stack.models.good, "4"), stack.home,
                              stack.logs, fault_extra_latency_ms=extra)
    router = start_router({**stack.upstreams(), "4": slow.url}, "1", stack.home, stack.logs,
                          exposure_log_enabled=False)
    try:
        status, report, _ = run_rollout(stack, router, tmp_path, _doc(
            "slow-v4", baseline={"version": "1"}, candidate={"version": "4"},
            strategy="canary", intervalSeconds=1.0, steps=[{"weight": 50}, {"weight": 100}],
            analysis={"failureLimit": 2, "minRequests": 150,
                      "metrics": [{"name": "errorRate", "max": 0.05},
                                  {"name": "latencyP99Ratio", "max": 1.5}]}), seed=2)
    finally:
        router.stop()
        slow.stop()
    assert status.phase == Phase.ROLLED_BACK, status.message
    assert "latencyP99Ratio" in status.message
    checks = status.decisions[-1].statistics["checks"]
    assert checks["latencyP99Ratio"] > 1.5
    assert all(d.step == 1 for d in status.decisions)  # judged, and failed, at its first step
    print(f"  baseline p99 (direct or routed, the larger) {base_p99:.1f} ms, injected extra "
          f"{extra:.1f} ms, router-measured p99 ratio {checks['latencyP99Ratio']:.2f}")


# --- A/B ----------------------------------------------------------------------------------------
def test_candidate_trained_on_shuffled_interactions_loses_the_ab_test(
        stack: Stack, router: Proc, tmp_path: Path) -> None:
    _set_aliases(stack, production="1")
    status, report, _ = run_rollout(stack, router, tmp_path, _doc(
        "ab-shuffled-v2", baseline={"alias": "production"}, candidate={"version": "2"},
        strategy="ab", stickinessSalt="ab-shuffled", intervalSeconds=1.0,
        ab={"candidateWeight": 50, "alpha": 0.05, "minSamplesPerVariant": 100},
        analysis={"failureLimit": 2, "minRequests": 20,
                  "metrics": [{"name": "errorRate", "max": 0.05}]}), seed=3, max_seconds=60)
    assert status.phase == Phase.ROLLED_BACK, status.message
    assert "candidate loses the A/B test" in status.message
    m = status.decisions[-1].statistics["msprt"]
    assert m["rate_a"] > m["rate_b"] and m["ci_high"] < 0
    assert stack.registry().get_alias("production") == "1"


def test_a_better_candidate_is_promoted_and_the_aliases_move(
        stack: Stack, router: Proc, tmp_path: Path) -> None:
    # Production is the shuffled model (2); candidate 6 is the good one.
    _set_aliases(stack, production="2", previous="1")
    httpx.put(f"{router.url}/admin/routing",
              json={"strategy": "single", "baseline": {"version": "2"}}).raise_for_status()
    status, report, _ = run_rollout(stack, router, tmp_path, _doc(
        "interleave-v6", baseline={"alias": "production"}, candidate={"version": "6"},
        strategy="interleave", intervalSeconds=0.5,
        interleave={"alpha": 0.05, "minDecisions": 30},
        analysis={"failureLimit": 2, "minRequests": 20,
                  "metrics": [{"name": "errorRate", "max": 0.05}]}), seed=4)
    assert status.phase == Phase.SUCCEEDED, status.message
    win = next(d for d in status.decisions if d.phase == Phase.PROMOTING)
    st = win.statistics["signTest"]
    assert st["wins_b"] > st["wins_a"] and st["reject"]
    reg = stack.registry()
    assert (reg.get_alias("production"), reg.get_alias("previous")) == ("6", "2")
    routing = httpx.get(f"{router.url}/admin/routing").json()
    assert routing["strategy"] == "single" and routing["baseline"]["version"] == "6"
    late = [o for o in report.outcomes if o.variant == "baseline" and o.model_version]
    assert late  # after promotion users are served by the new production only


# --- shadow -------------------------------------------------------------------------------------
def test_shadow_survives_the_candidate_dying(stack: Stack, router: Proc, tmp_path: Path) -> None:
    shadow = start_model_server(stack.models.labelled(stack.models.good, "5"), stack.home,
                                stack.logs)
    try:
        admin = RouterAdmin(router.url)
        single = {"strategy": "single", "baseline": {"version": "1"}}
        mirror = {"strategy": "shadow", "baseline": {"version": "1"},
                  "candidate": {"version": "5", "url": shadow.url}, "shadow_sample_rate": 1.0}
        n = 400
        httpx.put(f"{router.url}/admin/routing", json=single).raise_for_status()
        plain = run_replay(router.url, stack.users, rate=RATE, requests=n, seed=5)
        httpx.put(f"{router.url}/admin/routing", json=mirror).raise_for_status()
        mirrored = run_replay(router.url, stack.users, rate=RATE, requests=n, seed=5)
        killer = threading.Timer(1.0, shadow.kill)
        killer.start()
        dying = run_replay(router.url, stack.users, rate=RATE, requests=n, seed=5)
        killer.join()
        assert shadow.proc.poll() is not None
        assert plain.errors == mirrored.errors == dying.errors == 0
        assert {o.variant for o in dying.outcomes} == {"baseline"}
        sh = admin.stats(0, time.time()).shadow
        assert sh.errors > 0 and sh.mirrored >= 2 * n - sh.dropped - 5
        assert sh.rbo_mean is not None and sh.topk_overlap_mean is not None
        print(f"\n  user p99 ms: no shadow {plain.latency_ms(0.99):.1f}, shadow "
              f"{mirrored.latency_ms(0.99):.1f}, candidate killed {dying.latency_ms(0.99):.1f}; "
              f"p50 {plain.latency_ms(0.5):.1f}/{mirrored.latency_ms(0.5):.1f}/"
              f"{dying.latency_ms(0.5):.1f}; mirrors {sh.mirrored}, failed {sh.errors}, "
              f"dropped {sh.dropped}; RBO {sh.rbo_mean:.3f}")
        admin.close()
    finally:
        shadow.stop()


def test_shadow_rollout_rolls_back_when_the_candidate_dies(stack: Stack,
                                                           tmp_path: Path) -> None:
    _set_aliases(stack, production="1")
    shadow = start_model_server(stack.models.labelled(stack.models.good, "5"), stack.home,
                                stack.logs)
    router = start_router(dict(stack.upstreams(), **{"5": shadow.url}), "1", stack.home,
                          stack.logs, exposure_log_enabled=False)
    killer = threading.Timer(3.0, shadow.kill)
    killer.start()
    try:
        status, report, _ = run_rollout(stack, router, tmp_path, _doc(
            "shadow-v5", baseline={"version": "1"}, candidate={"version": "5"},
            strategy="shadow", intervalSeconds=1.0,
            shadow={"sampleRate": 1.0, "minRequests": 100_000},
            analysis={"failureLimit": 2, "minRequests": 20,
                      "metrics": [{"name": "errorRate", "max": 0.05},
                                  {"name": "rankBiasedOverlap", "min": 0.5}]}),
            seed=6, max_seconds=30)
    finally:
        killer.cancel()
        router.stop()
        shadow.stop()
    assert report.errors == 0 and {o.variant for o in report.outcomes} == {"baseline"}
    assert status.phase == Phase.ROLLED_BACK and "errorRate" in status.message
    # While the candidate was alive the shadow analysis measured agreement with the baseline.
    shadowing = [d for d in status.decisions if d.phase == Phase.SHADOWING]
    rbo = [d.statistics.get("shadow", {}).get("rbo_mean") for d in shadowing]
    assert any(x is not None and x > 0.5 for x in rbo), rbo


# --- sample-ratio mismatch ------------------------------------------------------------------------
@pytest.mark.parametrize("router", [{"fault_assignment_candidate_weight": 40}], indirect=True)
def test_assignment_bug_is_caught_by_the_sample_ratio_check(
        stack: Stack, router: Proc, tmp_path: Path) -> None:
    _set_aliases(stack, production="1")
    status, report, _ = run_rollout(stack, router, tmp_path, _doc(
        "ab-srm", baseline={"version": "1"}, candidate={"version": "6"}, strategy="ab",
        intervalSeconds=1.0,
        ab={"candidateWeight": 50, "minSamplesPerVariant": 100_000, "srmPValue": 0.001},
        analysis={"failureLimit": 2, "minRequests": 20,
                  "metrics": [{"name": "errorRate", "max": 0.05}]}), seed=7)
    assert status.phase == Phase.FAILED, status.message
    assert "sample ratio mismatch" in status.message
    srm = status.decisions[-1].statistics["srm"]
    assert srm["p_value"] < 0.001
    base, cand = srm["observed"]
    assert 0.33 < cand / (base + cand) < 0.47  # the 60/40 bug, not the declared 50/50
    routing = httpx.get(f"{router.url}/admin/routing").json()
    assert routing["strategy"] == "single" and routing["baseline"]["version"] == "1"


# --- restart ----------------------------------------------------------------------------------------
def _controller(stack: Stack, router: Proc, args: list[str], log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update({"MARQUEE_HOME": str(stack.home), "MARQUEE_REGISTRY_URI": stack.registry_uri,
                "MARQUEE_ROUTER_URL": router.url, "PYTHONUNBUFFERED": "1"})
    return subprocess.Popen([sys.executable, "-m", "marquee.cli", "rollout", *args], env=env,
                            cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def test_controller_killed_mid_canary_resumes_with_the_same_decision(
        stack: Stack, router: Proc, tmp_path: Path) -> None:
    _set_aliases(stack, production="1")
    name = "restart-v6"
    spec_file = tmp_path / "rollout.yaml"
    spec_file.write_text(yaml.safe_dump(_doc(
        name, baseline={"alias": "production"}, candidate={"version": "6"}, strategy="canary",
        intervalSeconds=1.0,
        steps=[{"weight": 10}, {"weight": 30}, {"pause": {"seconds": 3}}, {"weight": 60},
               {"weight": 100}],
        analysis={"failureLimit": 2, "minRequests": 10,
                  "metrics": [{"name": "errorRate", "max": 0.05}]})))
    store = FileStatusStore(stack.home / "rollouts")
    stop = threading.Event()
    traffic = threading.Thread(target=lambda: run_replay(
        router.url, stack.users, rate=60, duration=60, stop=stop, seed=8), daemon=True)
    traffic.start()
    log = stack.logs / "controller.log"
    first = _controller(stack, router, ["start", "-f", str(spec_file)], log)
    try:
        def paused() -> bool:
            if first.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:])
            return store.get(name).status.phase == Phase.PAUSED
        wait_until(paused, timeout=60, interval=0.05, what="canary paused at step 3")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        before = store.get(name).status
        assert (before.phase, before.step, before.weights.candidate) == (Phase.PAUSED, 3, 30)
        # With no controller the router keeps the last routing: nothing resets to 0 or 100.
        assert httpx.get(f"{router.url}/admin/routing").json()["candidate_weight"] == 30
        second = _controller(stack, router, ["run", name], log)
        try:
            assert second.wait(timeout=60) == 0, log.read_text()[-3000:]
        finally:
            stop_process(second)
    finally:
        stop.set()
        stop_process(first)
        traffic.join(timeout=30)
    after = store.get(name).status
    assert after.phase == Phase.SUCCEEDED, after.message
    # The restarted controller continued the persisted history: same decisions before the
    # kill, the pause finished from its original start, then steps 4 and 5 and promotion.
    assert [d.model_dump() for d in after.decisions[:len(before.decisions)]] == \
        [d.model_dump() for d in before.decisions]
    steps = [(d.phase.value, d.step) for d in after.decisions]
    assert steps.index(("Progressing", 4)) > steps.index(("Paused", 3))
    assert ("Pending", 0) not in steps and steps.count(("Progressing", 1)) >= 1
    pause_start = next(d.time for d in after.decisions if d.phase == Phase.PAUSED)
    resumed = next(d.time for d in after.decisions if (d.phase, d.step) == (Phase.PROGRESSING, 4))
    assert (resumed - pause_start).total_seconds() >= 3.0
    reg = stack.registry()
    assert (reg.get_alias("production"), reg.get_alias("previous")) == ("6", "1")


