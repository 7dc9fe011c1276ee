"""One rollout of a model at a time (helper E, session 18).

A model has one router routing its traffic and one ``production`` alias: two rollouts of it
undo each other (aborting the older one put production back and routed users to the old
version after the newer one had succeeded). Starting a second one is refused, by the CLI and
by the controller; a rollback puts back only the aliases that still hold what it wrote; and
``--namespace`` runs no controller beside the cluster's leader-elected one.

Entry points: the ``marquee`` CLI as a process (file store, and the tests' fake Kubernetes
API), the rollout manager and controller with a real file store, and MLflow on SQLite.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.rollout.controller import Controller
from serving.rollout.manager import RolloutManager
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore
from tests.conftest import wait_until
from tests.rollout.fake_kube import FakeKubeAPI, write_kubeconfig
from tests.rollout.test_hunt_rollout import Healthy
from tests.rollout.test_rollout_controller import Clock, DictRegistry
from tests.unit.test_cli_errors import marquee

MODEL = "movie-recommender"
NS = "marquee"


def _doc(name: str, candidate: str = "2", model: str = MODEL, **spec: Any) -> dict[str, Any]:
    body = {"modelName": model, "baseline": {"alias": "production"},
            "candidate": {"version": candidate}, "strategy": "canary", "intervalSeconds": 1,
            "steps": [{"weight": 10}, {"weight": 100}],
            "analysis": {"minRequests": 50, "metrics": [{"name": "errorRate", "max": 0.05}]},
            **spec}
    return {"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name}, "spec": body}


def _create(store: FileStatusStore, name: str, **kw: Any) -> None:
    """Create a rollout as ``kubectl apply`` would (no CLI check), after the last one's
    creation time (file timestamps can be coarser than the time between two creates)."""
    latest = max(((store.root / n / "rollout.yaml").stat().st_mtime for n in store.list()),
                 default=0.0)
    wait_until(lambda: time.time() > latest + 0.05, timeout=5, interval=0.01)
    store.create(parse_rollout(_doc(name, **kw)))


def registry_and_r1(tmp_path: Path) -> tuple[str, FileStatusStore]:
    """MLflow on SQLite under ``tmp_path`` with versions 1-3 of :data:`MODEL`, production 1,
    and a file store holding rollout r1 (candidate 2, Pending): its URI and the store."""
    from marquee.registry import Registry

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    registry = Registry(uri, MODEL)
    for v in (1, 2, 3):
        registry.register(f"file:///bundles/{v}", {"ndcg_at_10": 0.1})
    registry.set_alias("production", 1)
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(parse_rollout(_doc("r1")))
    return uri, store


class Admin:
    """The router's admin API as the controller sees it: records what it is asked to run."""

    def __init__(self) -> None:
        self.applied: list[Any] = []

    def apply(self, routing: Any) -> None:
        self.applied.append(routing)


# --- the CLI refuses to start a second rollout of a model --------------------------------------
def test_cli_start_refuses_a_second_rollout_of_a_model_while_one_is_active(
        tmp_path: Path) -> None:
    """Before: `rollout start` created the second rollout of the same model beside the first."""
    home = tmp_path / "home"
    store = FileStatusStore(home / "rollouts")
    first = marquee(home, "rollout", "start", "--strategy", "canary", "--candidate", "2",
                    "--name", "r1", "--detach")
    assert first.returncode == 0, first.stderr
    second = marquee(home, "rollout", "start", "--strategy", "canary", "--candidate", "3",
                     "--name", "r2", "--detach")
    assert second.returncode == 1, (second.stdout, second.stderr)
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: rollout r1 of model "
                                                   f"{MODEL} is Pending"), lines
    assert "marquee rollout abort r1" in lines[0]
    assert "`marquee rollout run r1` then applies the abort" in lines[0]  # none runs it here
    assert store.list() == ["r1"]  # nothing created
    # another model is independent
    other = tmp_path / "other.yaml"
    other.write_text(json.dumps(_doc("o1", model="other-recommender")))
    r = marquee(home, "rollout", "start", "-f", str(other), "--detach")
    assert r.returncode == 0, r.stderr
    # once r1 has ended (aborted), r2 may start
    store.request("r1", "abort")
    ended = Controller(store, "r1", Healthy(), registry=DictRegistry(production="1"),
                       clock=Clock()).tick()
    assert ended.phase == Phase.ROLLED_BACK
    r = marquee(home, "rollout", "start", "--strategy", "canary", "--candidate", "3",
                "--name", "r2", "--detach")
    assert r.returncode == 0, r.stderr
    assert store.list() == ["o1", "r1", "r2"]


# --- the controller fails a rollout that would run beside another of its model -----------------
def test_the_controller_starts_one_rollout_of_a_model_and_fails_the_other(
        tmp_path: Path) -> None:
    """Two ModelRollouts of one model applied together (kubectl apply, no CLI check): the one
    created first starts, whatever the names' order; the other goes to Failed naming it,
    routing nothing and moving no alias. Before: both started and fought over the routing
    and the aliases. A rollout of another model runs beside them."""
    store = FileStatusStore(tmp_path)
    _create(store, "zeta", candidate="2")  # created first
    _create(store, "alpha", candidate="3")  # ticked first (names are sorted)
    _create(store, "other", model="other-recommender")
    registries = {MODEL: DictRegistry(production="1"),
                  "other-recommender": DictRegistry(production="1")}
    admin = Admin()
    t = [0.0]
    mgr = RolloutManager(store, Healthy(), admin, registries.__getitem__,  # type: ignore[arg-type]
                         clock=lambda: t[0])
    mgr.run_once()
    alpha, zeta = store.get("alpha").status, store.get("zeta").status
    assert zeta.phase == Phase.PROGRESSING and zeta.weights.candidate == 10
    assert alpha.phase == Phase.FAILED, alpha.message
    assert alpha.message.startswith(f"cannot start: rollout zeta of model {MODEL} is "), \
        alpha.message
    assert alpha.last_decision is not None
    assert alpha.last_decision.statistics["activeRollout"] == "zeta"
    assert (alpha.weights.baseline, alpha.weights.candidate) == (100, 0)
    assert store.get("other").status.phase == Phase.PROGRESSING
    assert sorted(r.rollout for r in admin.applied) == ["other", "zeta"]  # none for alpha
    assert registries[MODEL].aliases == {"production": "1", "candidate": "2"}  # zeta's
    # a rollout created while zeta runs is refused too, naming its phase
    _create(store, "late", candidate="3")
    late = Controller(store, "late", Healthy(), router=admin,  # type: ignore[arg-type]
                      registry=registries[MODEL], clock=Clock()).tick()
    assert late.phase == Phase.FAILED
    assert late.message.startswith(f"cannot start: rollout zeta of model {MODEL} is "
                                   "Progressing"), late.message
    assert registries[MODEL].aliases == {"production": "1", "candidate": "2"}
    assert sorted(r.rollout for r in admin.applied) == ["other", "zeta"]
    # zeta goes on undisturbed
    t[0] = 5.0
    mgr.run_once()
    assert store.get("zeta").status.step == 2


# --- rollback puts back only what it wrote ------------------------------------------------------
def test_a_rollback_leaves_aliases_that_someone_else_moved_since_it_started(
        tmp_path: Path) -> None:
    """r1 (candidate 2) runs; meanwhile version 3 is promoted (another rollout that ran beside
    it, or `Registry.promote`). Aborting r1 then put production back to 1 and deleted
    ``previous``, undoing a promotion r1 never made. Now production 3 and previous 1 stay,
    and the decision says so; the candidate alias r1 set is removed as before."""
    from marquee.registry import Registry
    from serving.rollout.controller import MarqueeRegistry

    uri, store = registry_and_r1(tmp_path)
    c = Controller(store, "r1", Healthy(), registry=MarqueeRegistry(uri, MODEL), clock=Clock())
    assert c.tick().phase == Phase.PROGRESSING
    assert Registry(uri, MODEL)._aliases() == {"production": 1, "candidate": 2}
    Registry(uri, MODEL).promote(3)
    store.request("r1", "abort")
    final = c.tick()
    assert final.phase == Phase.ROLLED_BACK
    assert Registry(uri, MODEL)._aliases() == {"production": 3, "previous": 1}
    assert final.last_decision is not None
    assert final.last_decision.statistics["aliasesLeft"] == {"production": "3", "previous": "1"}
    assert final.message.startswith("aborted by user; aliases moved by someone else")
    assert "production 3" in final.message and "previous 1" in final.message


# --- a rollout that never started does not hide the routing of the last one that ran ----------
def test_the_routing_kept_is_the_last_rollout_that_ran_not_one_that_failed_to_start(
        tmp_path: Path) -> None:
    """With no rollout running the manager re-applies the routing the last one ended with (a
    restarted router replica starts from its configured baseline). Before: a rollout that
    failed at its start (refused, or a candidate not in the registry) counted as the last
    one; it has no routing, so nothing was re-applied any more."""
    store = FileStatusStore(tmp_path)
    _create(store, "r1", candidate="2", steps=[{"weight": 100}])
    admin = Admin()
    t = [0.0]
    mgr = RolloutManager(store, Healthy(), admin,  # type: ignore[arg-type]
                         DictRegistry(production="1"), clock=lambda: t[0])
    for i in range(4):
        t[0] = i * 2.0
        mgr.run_once()
    assert store.get("r1").status.phase == Phase.SUCCEEDED
    _create(store, "typo", candidate="99")  # not in the registry
    t[0] = 10.0
    mgr.run_once()
    assert store.get("typo").status.phase == Phase.FAILED
    admin.applied.clear()
    t[0] = 20.0
    mgr.run_once()
    assert admin.applied, "nothing re-applied"
    routing = admin.applied[-1]
    assert (routing.rollout, routing.strategy, routing.baseline.version) == ("r1", "single", "2")


# --- --namespace runs no controller beside the cluster's ----------------------------------------
@pytest.fixture()
def kube() -> Iterator[FakeKubeAPI]:
    api = FakeKubeAPI().start()
    yield api
    api.stop()


def test_namespace_start_only_creates_and_refuses_a_second_rollout(
        kube: FakeKubeAPI, tmp_path: Path) -> None:
    """Before: `rollout start --namespace NS` without --detach ran a controller in the
    foreground with no Lease, acting (routing, aliases) beside the cluster's elected one, and
    `rollout run NAME --namespace NS` did the same; a second rollout of the model was
    created beside the first."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
    env = {"KUBECONFIG": str(kubeconfig)}
    home = tmp_path / "home"
    saved = os.environ.pop("KUBERNETES_SERVICE_HOST", None)  # not in a pod
    try:
        r = marquee(home, "rollout", "start", "--strategy", "canary", "--candidate", "2",
                    "--name", "r1", "--namespace", NS, "--router", "http://127.0.0.1:9", **env)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert "--detach" in r.stderr and "cluster's rollout controller" in r.stderr
        assert not kube.objects  # nothing created, nothing run
        r = marquee(home, "rollout", "start", "--strategy", "canary", "--candidate", "2",
                    "--name", "r1", "--namespace", NS, "--detach", **env)
        assert r.returncode == 0, r.stderr
        assert ("modelrollouts", NS, "r1") in kube.objects
        r = marquee(home, "rollout", "run", "r1", "--namespace", NS,
                    "--router", "http://127.0.0.1:9", **env)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert f"marquee rollout controller --namespace {NS}" in " ".join(r.stderr.split())
        r = marquee(home, "rollout", "start", "--strategy", "canary", "--candidate", "3",
                    "--name", "r2", "--namespace", NS, "--detach", **env)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert r.stderr.startswith(f"error: rollout r1 of model {MODEL} is Pending")
        assert sorted(k[2] for k in kube.objects if k[0] == "modelrollouts") == ["r1"]
        # the first one was never ticked: no status written by anyone
        assert "status" not in kube.objects[("modelrollouts", NS, "r1")]
    finally:
        if saved is not None:
            os.environ["KUBERNETES_SERVICE_HOST"] = saved


# --- the cluster's controller moves each rollout's own model's aliases --------------------------
def test_the_controller_process_uses_the_registry_of_each_rollouts_model(tmp_path: Path) -> None:
    """`marquee rollout controller` resolved and moved every rollout's versions in the
    registered model of its own settings (MARQUEE_MODEL_NAME), not the rollout's
    ``modelName``: a rollout of another model failed at its start ("alias 'production' is
    not set") or, worse, moved the aliases of the wrong model. `rollout run` already used
    the rollout's model."""
    import subprocess

    from marquee.registry import Registry
    from tests.conftest import REPO, free_port, stop_process

    home = tmp_path / "home"
    other = "other-recommender"
    uri = f"sqlite:///{(home / 'registry.db').resolve()}"  # the settings' default
    home.mkdir()
    registry = Registry(uri, other)
    for v in (1, 2):
        registry.register(f"file:///bundles/{v}", {"ndcg_at_10": 0.1})
    registry.set_alias("production", 1)
    store = FileStatusStore(home / "rollouts")
    store.create(parse_rollout(_doc("o1", model=other, intervalSeconds=60)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update({"MARQUEE_HOME": str(home), "OMP_NUM_THREADS": "1"})
    port = free_port()
    log = tmp_path / "controller.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marquee.cli", "rollout", "controller", "--host",
             "127.0.0.1", "--port", str(port), "--router", "http://127.0.0.1:9"],
            env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: proc.poll() is not None
                   or store.get("o1").status.phase != Phase.PENDING, timeout=120,
                   what="the controller's first tick")
        status = store.get("o1").status
        assert status.phase == Phase.PROGRESSING, (status.message, log.read_text()[-2000:])
        # the tick names the candidate after saving the status
        wait_until(lambda: Registry(uri, other)._aliases() == {"production": 1, "candidate": 2},
                   timeout=60, what="the candidate alias of the rollout's own model")
    finally:
        stop_process(proc)
