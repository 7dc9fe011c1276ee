"""The controller judges only the stats of the routing it applied (session 23, helper E).

``GET /admin/stats`` answers for the routing in force on the router, whoever put it there,
and says its epoch. The controller never looked: after an apply the router refused (a
candidate version it has no model server for yet) or one that was undone before the read (a
hand ``PUT /admin/routing``, another controller, a replica restarted on an older routing
file), it judged another experiment's traffic as its candidate's, and rolled back (or
promoted) on it. Now a window whose epoch is not the one the router answered this tick's
apply with is an Inconclusive "not yet" decision naming both epochs, and the routing is
applied again; its own window is judged as before, and so is a window that says no epoch
(Prometheus, an older router).

A real ``marquee router`` on 127.0.0.1 (rollout_support.start_router) whose model servers are
closed ports: every call fails, so a window with traffic has a candidate error rate of 1 and
any check judged on it fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.rollout.controller import Controller
from serving.rollout.sources import RouterAdmin, RouterStatsSource
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Outcome, Phase
from serving.rollout.store import FileStatusStore
from serving.router.schema import VariantWindow, WindowStats
from tests.conftest import free_port
from tests.rollout.rollout_support import Proc, start_router
from tests.rollout.test_rollout_controller import DictRegistry

#: someone else's experiment on the same router: candidate version 3
HAND = {"strategy": "canary", "baseline": {"version": "1"}, "candidate": {"version": "3"},
        "candidate_weight": 50, "rollout": "hand-test", "salt": "hand"}


def _dead() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens: every call fails (502)


@pytest.fixture
def router(tmp_path: Path) -> Iterator[Proc]:
    proc = start_router({"1": _dead(), "3": _dead()}, "1", tmp_path, tmp_path)
    try:
        yield proc
    finally:
        proc.stop()


def _rollout() -> Any:
    return parse_rollout({
        "apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
        "metadata": {"name": "r1"},
        "spec": {"baseline": {"version": "1"}, "candidate": {"version": "2"},
                 "strategy": "canary", "intervalSeconds": 1,
                 "steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}],
                 "analysis": {"failureLimit": 1, "minRequests": 20,
                              "metrics": [{"name": "errorRate", "max": 0.05}]}}})


def _traffic(url: str, users: range) -> None:
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for user in users:
            r = client.post("/recommend", json={"user_id": user, "k": 5})
            assert r.status_code in (502, 504), r.text  # every model server is down


def _hand_put(url: str) -> str:
    r = httpx.put(f"{url}/admin/routing", json=HAND, timeout=5.0)
    assert r.status_code == 200, r.text
    return r.json()["epoch"]


def _in_force(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/admin/routing", timeout=5.0).raise_for_status().json()


def test_stats_of_a_routing_the_router_refused_to_replace_are_not_judged(
        tmp_path: Path, router: Proc) -> None:
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(_rollout())
    admin = RouterAdmin(router.url)
    controller = Controller(store, "r1", RouterStatsSource(admin), admin,
                            registry=DictRegistry(production="1"))
    status = controller.tick()  # started at 10%; the router has no server for version 2
    assert (status.phase, status.weights.candidate) == (Phase.PROGRESSING, 10)
    assert "no model server URL known for version '2'" in status.routing_error
    hand = _hand_put(router.url)  # the router runs someone else's canary meanwhile
    _traffic(router.url, range(1, 101))

    status = controller.tick()
    last = status.last_decision
    assert last is not None
    assert (status.phase, status.failed_checks, last.outcome) == (
        Phase.PROGRESSING, 0, Outcome.INCONCLUSIVE), (
        f"judged the hand-put routing's traffic as its own: {status.message}")
    assert "not applied" in last.reason and f"routing epoch {hand}" in last.reason
    assert last.statistics["routingMismatch"]["statsEpoch"] == hand
    assert "version '2'" in last.statistics["routingMismatch"]["routingError"]

    # version 2's model server registered: the routing goes in force and its own window is
    # judged (the candidate fails there too: a real failed check, a rollback at the limit)
    r = httpx.put(f"{router.url}/admin/upstreams", json={"version": "2", "url": _dead()},
                  timeout=5.0)
    assert r.status_code == 200, r.text
    status = controller.tick()
    assert status.routing_error == "" and _in_force(router.url)["rollout"] == "r1"
    assert status.last_decision is not None
    assert "routingMismatch" not in status.last_decision.statistics
    assert "candidate requests" in status.message  # judged: too little traffic yet
    _traffic(router.url, range(1000, 1400))  # 10% of 400 users to the candidate
    status = controller.tick()
    assert status.phase == Phase.ROLLED_BACK, status.message
    assert "errorRate 1 > max 0.05" in status.message


class HandPutBeforeRead:
    """The router's stats, read just after someone else's ``PUT /admin/routing`` landed:
    between this tick's apply and its read (a second controller, an engineer's curl)."""

    def __init__(self, admin: RouterAdmin, url: str) -> None:
        self.source, self.url = RouterStatsSource(admin), url
        self.epochs: list[str] = []

    def window(self, since: float, until: float) -> WindowStats:
        self.epochs.append(_hand_put(self.url))
        return self.source.window(since, until)


def test_stats_of_a_routing_put_over_the_controllers_are_not_judged(
        tmp_path: Path, router: Proc) -> None:
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(_rollout())
    httpx.put(f"{router.url}/admin/upstreams", json={"version": "2", "url": _dead()},
              timeout=5.0).raise_for_status()
    admin = RouterAdmin(router.url)
    source = HandPutBeforeRead(admin, router.url)
    controller = Controller(store, "r1", source, admin, registry=DictRegistry(production="1"))
    status = controller.tick()
    assert status.phase == Phase.PROGRESSING and status.routing_error == ""
    ours = _in_force(router.url)["epoch"]
    hand = _hand_put(router.url)
    _traffic(router.url, range(1, 101))  # someone else's canary, all failing

    status = controller.tick()
    last = status.last_decision
    assert last is not None
    assert (status.phase, status.failed_checks, last.outcome) == (
        Phase.PROGRESSING, 0, Outcome.INCONCLUSIVE), (
        f"judged the hand-put routing's traffic as its own: {status.message}")
    assert source.epochs == [hand]
    assert f"routing epoch {hand}, not of this rollout's ({ours})" in last.reason
    assert last.statistics["routingMismatch"] == {
        "statsEpoch": hand, "routingEpoch": ours, "routingError": None}
    in_force = _in_force(router.url)  # re-applied at the end of the tick
    assert (in_force["rollout"], in_force["epoch"]) == ("r1", ours)


def test_a_router_that_does_not_say_its_epoch_is_judged_as_before(tmp_path: Path) -> None:
    """An older router (no ``epoch`` in its answer to the PUT) over a window that names one,
    and a router that took the routing over a window naming none (Prometheus): judged."""

    class OldRouter:
        def apply(self, routing: Any) -> dict[str, Any]:
            return {"strategy": routing.strategy}  # no epoch

    class Source:
        def __init__(self, epoch: str | None) -> None:
            self.epoch = epoch

        def window(self, since: float, until: float) -> WindowStats:
            return WindowStats(since=since, until=until, epoch=self.epoch, variants={
                "baseline": VariantWindow(requests=900),
                "candidate": VariantWindow(requests=100, errors=20)})

    for epoch in ("0123456789ab", None):
        store = FileStatusStore(tmp_path / f"rollouts-{epoch}")
        store.create(_rollout())
        controller = Controller(store, "r1", Source(epoch), OldRouter(),  # type: ignore[arg-type]
                                registry=DictRegistry(production="1"))
        controller.tick()
        status = controller.tick()
        assert status.phase == Phase.ROLLED_BACK and "errorRate 0.2 > max 0.05" in status.message


def test_a_replica_down_does_not_stop_judging_the_replicas_that_took_the_routing(
        tmp_path: Path, router: Proc) -> None:
    """Applied to every replica of a headless Service, one of them down: the apply is an
    error (said in the status) but the replica read took this rollout's routing, so its window
    (the same epoch) is judged: no stall while a pod restarts."""
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(_rollout())
    httpx.put(f"{router.url}/admin/upstreams", json={"version": "2", "url": _dead()},
              timeout=5.0).raise_for_status()
    port = int(router.url.rsplit(":", 1)[1])
    down = free_port()
    admin = RouterAdmin(router.url, replicas_url=f"http://router-replicas:{port}",
                        resolve=lambda host, p: [("127.0.0.1", port), ("127.0.0.1", down)])
    controller = Controller(store, "r1", RouterStatsSource(admin), admin,
                            registry=DictRegistry(production="1"))
    controller.tick()
    _traffic(router.url, range(1000, 1400))
    status = controller.tick()
    assert f"127.0.0.1:{down} unreachable" in status.routing_error
    assert status.phase == Phase.ROLLED_BACK and "errorRate 1 > max 0.05" in status.message
