"""A frozen rollout keeps its routing in force, counts as active, and its abort restores the
registry aliases and stays the routing in force (session 23, helper S).

A running rollout whose spec is edited into one the controller refuses is frozen where it is
(``RolloutManager._refused``): still in force at its current weights until the spec is fixed
or ``marquee rollout abort``. Before:

* its routing was never re-applied, so a router replica that restarted (or was added) while
  it was frozen came up on its configured baseline, all traffic on one version, while the
  status and ``/metrics`` said candidate 10%;
* once aborted while its spec was still refused it never counted as finished, so the manager
  re-applied an older finished rollout's routing (another rollout, another epoch) instead of
  its all-baseline one;
* the abort moved traffic back but left the registry as the rollout had it: ``candidate``
  still named the aborted candidate;
* ``marquee_rollout_active_rollouts`` did not count it.

The routing of a frozen rollout is rebuilt from its status (versions, phase, weights, run) and
what its stored spec document still says (strategy, stickinessSalt, shadow); when that is not
usable, nothing is guessed: the status message says what is missing.

The real RolloutManager over a FileStatusStore; real ``marquee router`` replicas on
127.0.0.1 in front of stand-in model servers; the controller's own ``/metrics`` on 127.0.0.1;
an in-memory registry for the aliases.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from serving.rollout.manager import RolloutManager
from serving.rollout.sources import RouterAdmin, RouterStatsSource
from serving.rollout.spec import parse_rollout
from serving.rollout.status import START_REASON, Decision, Outcome, Phase, RolloutStatus
from serving.rollout.store import FileStatusStore
from tests.rollout.rollout_support import start_router
from tests.rollout.test_rollout_controller import DictRegistry, ScriptedSource
from tests.rollout.test_s20f_refused_spec_in_controller import Router
from tests.rollout.test_s22a_rollout_series_per_name import metrics_url  # noqa: F401 - fixture
from tests.rollout.test_s22i_rerun_epoch import _model_server
from tests.stand_in_http import serving

NAME = "s23s-frozen"


def _doc(name: str = NAME, **spec: Any) -> dict[str, Any]:
    body = {"baseline": {"alias": "production"}, "candidate": {"version": "2"},
            "strategy": "canary", "intervalSeconds": 60,
            "steps": [{"weight": 10}, {"weight": 100}],
            "stickinessSalt": "s23s-experiment",
            "analysis": {"minRequests": 100000, "metrics": [{"name": "errorRate", "max": 0.05}]}}
    body.update(spec)
    return {"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name}, "spec": body}


def _edit(root: Path, name: str, **spec: Any) -> None:
    """Edit the rollout's spec in place (``kubectl edit``), no validation on the way."""
    path = root / name / "rollout.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"].update(spec)
    path.write_text(yaml.safe_dump(doc))


class Replicas:
    """Router replicas on 127.0.0.1 behind one name, as the router's headless Service: the
    controller's RouterAdmin applies routing to each replica the name resolves to."""

    def __init__(self, tmp: Path, stack: ExitStack) -> None:
        self.tmp, self.stack = tmp, stack
        self.upstreams = {"1": stack.enter_context(serving(_model_server)),
                          "2": stack.enter_context(serving(_model_server))}
        self.urls: list[str] = []

    def start(self) -> str:
        """One more replica, started as a restarted pod is: no routing file of its own yet,
        so on its configured baseline (version 1, all traffic)."""
        router = start_router(self.upstreams, "1", self.tmp, self.tmp,
                              stats_bucket_seconds=3600)
        self.stack.callback(router.stop)
        self.urls.append(router.url)
        return router.url

    def admin(self) -> RouterAdmin:
        def resolve(host: str, port: int) -> list[tuple[str, int]]:
            return [("127.0.0.1", httpx.URL(u).port or 80) for u in self.urls]
        return RouterAdmin(self.urls[0], replicas_url="http://routers:1", resolve=resolve)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    with ExitStack() as stack:
        yield Replicas(tmp_path, stack)


def _routing(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/admin/routing", timeout=5.0, trust_env=False).raise_for_status() \
        .json()


def test_a_router_replica_started_while_a_rollout_is_frozen_gets_its_routing(
        tmp_path: Path, replicas: Replicas) -> None:
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(parse_rollout(_doc()))
    first = replicas.start()
    admin = replicas.admin()
    t = [0.0]
    manager = RolloutManager(store, RouterStatsSource(admin), admin,
                             DictRegistry(production="1"), clock=lambda: t[0])
    manager.run_once()
    running = _routing(first)
    assert (running["strategy"], running["candidate_weight"]) == ("canary", 10)

    _edit(tmp_path / "rollouts", NAME, baseline={"version": "2"})  # refused: one version
    t[0] += 10
    manager.run_once()
    frozen = store.get_status(NAME)
    assert frozen.phase == Phase.PROGRESSING and "frozen" in frozen.message
    assert "routing is not re-applied" not in frozen.message

    restarted = replicas.start()  # a router pod restarts while the rollout is frozen
    assert _routing(restarted)["strategy"] == "single"
    t[0] += 10
    manager.run_once()
    joined = _routing(restarted)
    assert (joined["strategy"], joined["candidate_weight"]) == ("canary", 10), (
        f"the replica started while the rollout is frozen runs {joined}, while the status "
        f"says candidate {frozen.weights.candidate}%")
    assert (joined["baseline"]["version"], joined["candidate"]["version"]) == ("1", "2")
    assert (joined["salt"], joined["rollout"], joined["run"]) == (
        "s23s-experiment", NAME, frozen.run_id)
    assert joined["epoch"] == running["epoch"] == _routing(first)["epoch"]  # the same routing
    assert store.get_status(NAME) == frozen  # nothing else changed: still frozen, no error


def test_a_frozen_shadow_rollout_is_reapplied_as_it_ran_after_a_controller_restart(
        tmp_path: Path) -> None:
    """Shadowing, with its own sample rate: the routing a restarted controller re-applies
    is the very routing the controller applied while the spec parsed."""
    store = FileStatusStore(tmp_path)
    store.create(parse_rollout(_doc(strategy="shadow", steps=[],
                                    shadow={"sampleRate": 0.25, "promoteTo": "ab"})))
    router, t = Router(), [0.0]
    manager = RolloutManager(store, ScriptedSource([0]), router, DictRegistry(production="1"),
                             clock=lambda: t[0])
    manager.run_once()
    (applied,) = router.applied
    assert (applied.strategy, applied.shadow_sample_rate) == ("shadow", 0.25)
    _edit(tmp_path, NAME, baseline={"version": "2"})
    restarted = RolloutManager(store, ScriptedSource([0]), router, DictRegistry(production="1"),
                               clock=lambda: t[0])
    restarted.run_once()
    assert store.get_status(NAME).phase == Phase.SHADOWING
    assert router.applied[1:] == [applied], router.applied


def test_a_frozen_rollout_whose_routing_cannot_be_rebuilt_says_what_is_missing(
        tmp_path: Path) -> None:
    """The edit broke the strategy itself: the status does not record it, so the routing is
    not rebuilt (no guess), and the status says why."""
    store = FileStatusStore(tmp_path)
    store.create(parse_rollout(_doc()))
    router, t = Router(), [0.0]
    manager = RolloutManager(store, ScriptedSource([0]), router, DictRegistry(production="1"),
                             clock=lambda: t[0])
    manager.run_once()
    _edit(tmp_path, NAME, strategy="blue-green")
    applied = len(router.applied)
    for _ in range(3):
        t[0] += 10
        manager.run_once()
    message = store.get_status(NAME).message
    assert "frozen" in message
    assert "its routing is not re-applied" in message, message
    assert "spec.strategy" in message and "'blue-green'" in message, message
    assert len(router.applied) == applied


def _finished_older(store: FileStatusStore) -> None:
    """An older rollout of the model that ended (rolled back, candidate 3), long ago."""
    store.create(parse_rollout(_doc("s23s-older", candidate={"version": "3"})))
    store.save_status("s23s-older", RolloutStatus(
        phase=Phase.ROLLED_BACK, step=1, message="rolled back", decisions=[Decision(
            time=datetime(2026, 1, 1, tzinfo=timezone.utc), phase=Phase.ROLLED_BACK, step=1,
            outcome=Outcome.FAILED, reason=START_REASON,
            statistics={"baselineVersion": "1", "candidateVersion": "3"})]))


def test_an_aborted_frozen_rollout_keeps_its_routing_over_an_older_finished_one(
        tmp_path: Path, replicas: Replicas) -> None:
    store = FileStatusStore(tmp_path / "rollouts")
    _finished_older(store)
    store.create(parse_rollout(_doc()))
    url = replicas.start()
    admin = replicas.admin()
    t = [0.0]
    manager = RolloutManager(store, RouterStatsSource(admin), admin,
                             DictRegistry(production="1"), clock=lambda: t[0])
    manager.run_once()
    assert _routing(url)["candidate_weight"] == 10
    _edit(tmp_path / "rollouts", NAME, baseline={"version": "2"})
    t[0] += 10
    manager.run_once()
    store.request(NAME, "abort")
    t[0] += 10
    manager.run_once()
    assert store.get_status(NAME).phase == Phase.ROLLED_BACK
    aborted = _routing(url)
    assert (aborted["strategy"], aborted["rollout"], aborted["baseline"]["version"]) == (
        "single", NAME, "1")
    for _ in range(3):  # passes over which the ended routing is re-applied
        t[0] += 10
        manager.run_once()
    kept = _routing(url)
    assert (kept["rollout"], kept["salt"], kept["epoch"]) == (
        NAME, "s23s-experiment", aborted["epoch"]), (
        f"the aborted rollout's routing was replaced by an older finished one's: {kept}")


def test_the_ended_routing_of_a_refused_rollout_follows_production(tmp_path: Path) -> None:
    """As any ended rollout's: once ``production`` moves, routing follows the registry."""
    store = FileStatusStore(tmp_path)
    store.create(parse_rollout(_doc()))
    registry, router, t = DictRegistry(production="1"), Router(), [0.0]
    manager = RolloutManager(store, ScriptedSource([0]), router, registry, clock=lambda: t[0])
    manager.run_once()
    _edit(tmp_path, NAME, baseline={"version": "2"})
    t[0] += 10
    manager.run_once()
    store.request(NAME, "abort")
    t[0] += 10
    manager.run_once()
    registry.promote("3")  # `marquee registry promote` since the abort
    t[0] += 10
    manager.run_once()
    last = router.applied[-1]
    assert (last.strategy, last.baseline.version, last.rollout, last.salt) == (
        "single", "3", NAME, "s23s-experiment"), last


def test_aborting_a_frozen_rollout_restores_the_registry_aliases(tmp_path: Path) -> None:
    store = FileStatusStore(tmp_path)
    store.create(parse_rollout(_doc(modelName="recs-s23s")))
    registries = {"recs-s23s": DictRegistry(production="1", previous="3"),
                  "movie-recommender": DictRegistry(production="7")}
    router, t = Router(), [0.0]
    manager = RolloutManager(store, ScriptedSource([0]), router, registries.__getitem__,
                             clock=lambda: t[0])
    manager.run_once()
    assert registries["recs-s23s"].aliases == {"production": "1", "previous": "3",
                                               "candidate": "2"}
    _edit(tmp_path, NAME, baseline={"version": "2"})
    t[0] += 10
    manager.run_once()
    store.request(NAME, "abort")
    t[0] += 10
    manager.run_once()
    status = store.get_status(NAME)
    assert status.phase == Phase.ROLLED_BACK and "aborted by user" in status.message
    assert registries["recs-s23s"].aliases == {"production": "1", "previous": "3"}, (
        "the aborted candidate is still the registry's candidate")
    assert registries["movie-recommender"].aliases == {"production": "7"}
    assert "not restored" not in status.message


def test_aborting_a_frozen_rollout_leaves_aliases_someone_else_moved(tmp_path: Path) -> None:
    store = FileStatusStore(tmp_path)
    store.create(parse_rollout(_doc()))
    registry, router, t = DictRegistry(production="1"), Router(), [0.0]
    manager = RolloutManager(store, ScriptedSource([0]), router, registry, clock=lambda: t[0])
    manager.run_once()
    _edit(tmp_path, NAME, baseline={"version": "2"})
    t[0] += 10
    manager.run_once()
    registry.set_alias("candidate", "3")  # a person names another candidate meanwhile
    store.request(NAME, "abort")
    t[0] += 10
    manager.run_once()
    status = store.get_status(NAME)
    assert status.phase == Phase.ROLLED_BACK
    assert registry.aliases == {"production": "1", "candidate": "3"}
    assert "left as they are (candidate 3" in status.message, status.message
    assert status.last_decision is not None
    assert status.last_decision.statistics["aliasesLeft"] == {"candidate": "3"}


def test_aborting_a_frozen_rollout_whose_model_is_unreadable_says_aliases_were_not_restored(
        tmp_path: Path) -> None:
    store = FileStatusStore(tmp_path)
    store.create(parse_rollout(_doc(modelName="recs-s23s")))
    registry = DictRegistry(production="1")
    asked: list[str] = []

    def registries(model: str) -> DictRegistry:
        asked.append(model)
        return registry

    router, t = Router(), [0.0]
    manager = RolloutManager(store, ScriptedSource([0]), router, registries, clock=lambda: t[0])
    manager.run_once()
    _edit(tmp_path, NAME, modelName=["recs-s23s"])  # the edit broke the model's name
    t[0] += 10
    manager.run_once()
    store.request(NAME, "abort")
    t[0] += 10
    asked.clear()
    manager.run_once()
    status = store.get_status(NAME)
    assert status.phase == Phase.ROLLED_BACK
    assert router.applied[-1].baseline.version == "1" and router.applied[-1].candidate is None
    assert "registry aliases not restored" in status.message, status.message
    assert "modelName (['recs-s23s'])" in status.message, status.message
    assert "(at its start: production 1, candidate (unset), previous (unset))" in status.message
    assert asked == [] and registry.aliases == {"production": "1", "candidate": "2"}


def _active(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=5.0).raise_for_status().text
    return {s.labels["strategy"]: s.value for f in text_string_to_metric_families(text)
            if f.name == "marquee_rollout_active_rollouts" for s in f.samples}


def test_a_frozen_rollout_counts_as_active(tmp_path: Path, metrics_url: str) -> None:  # noqa: F811
    store = FileStatusStore(tmp_path)
    store.create(parse_rollout(_doc()))
    store.create(parse_rollout(_doc("s23s-ab", modelName="recs-ab", strategy="ab", steps=[])))
    t = [0.0]
    manager = RolloutManager(store, ScriptedSource([0]), Router(),
                             lambda model: DictRegistry(production="1"), clock=lambda: t[0])
    manager.run_once()
    assert _active(metrics_url) == {"canary": 1.0, "ab": 1.0}
    _edit(tmp_path, NAME, baseline={"version": "2"})
    _edit(tmp_path, "s23s-ab", strategy="blue-green")
    for _ in range(2):  # the pass that freezes them, and one after
        t[0] += 10
        manager.run_once()
        assert _active(metrics_url) == {"canary": 1.0, "unknown": 1.0}, (
            "frozen rollouts, still in force, are not counted as active")
    store.request(NAME, "abort")
    t[0] += 10
    manager.run_once()
    assert _active(metrics_url) == {"unknown": 1.0}
