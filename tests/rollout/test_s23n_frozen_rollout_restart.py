"""A frozen rollout's series survive a controller restart or a leader change, and its abort
keeps the routing epoch the controller re-applies (session 23, helper N).

A running rollout whose spec is edited into one the controller refuses is frozen where it is
(``RolloutManager._refused``): still in force, its candidate keeps its share of traffic and
nothing rolls it back by itself. Its per-rollout series were exported only by a controller
process that had exported them while the spec still parsed (``metrics.export_unparsed`` looked
up the label set exported then). After a restart, or on the replica that took the leader Lease
over, a frozen rollout with a failing candidate exported nothing: RolloutFailing
(``marquee_rollout_failed_checks > 0``) resolved for a rollout still failing in production.
Its series are now exported from the status (the candidate version of its start decision) and
what the stored spec document still says (``modelName``, ``strategy``, ``failureLimit``).

The abort of a frozen rollout applied its ``single`` routing with the rollout's name as salt;
the routing the controller keeps re-applying for an ended rollout (``desired_routing``) uses
the spec's ``stickinessSalt``. The router's epoch is a hash of the whole routing, so once the
spec was fixed the router took the same all-baseline routing as another experiment: a new
epoch, its stats and remembered lists started over.

The real RolloutManager over a FileStatusStore; series read from the controller's own
``/metrics`` on 127.0.0.1; a real ``marquee router`` on 127.0.0.1 for the epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from serving.rollout import metrics
from serving.rollout.manager import RolloutManager
from serving.rollout.sources import RouterAdmin, RouterStatsSource
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore
from tests.rollout.test_rollout_controller import DictRegistry, ScriptedSource
from tests.rollout.test_s20f_refused_spec_in_controller import (  # noqa: F401 - fixture
    Backend,
    _doc,
    backend,
)
from tests.rollout.test_s22a_rollout_series_per_name import (  # noqa: F401 - fixture
    VERSION,
    AnyVersionRegistry,
    _rollout,
    metrics_url,
    scrape,
)
from tests.rollout.test_s22i_rerun_epoch import _router

KEY = ("s23n-frozen", "recs-frozen")


class CountingAdmin(RouterAdmin):
    """The router's admin API, counting the routings the controller sends."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sent: list[Any] = []

    def apply(self, config: Any) -> dict[str, Any]:
        self.sent.append(config)
        return super().apply(config)


def _edit(root: Path, name: str, **spec: Any) -> None:
    """Edit the rollout's spec in place (``kubectl edit``), no validation on the way."""
    path = root / name / "rollout.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"].update(spec)
    path.write_text(yaml.safe_dump(doc))


def _frozen_and_failing(store: FileStatusStore, root: Path, t: list[float],
                        **leading: Any) -> RolloutManager:
    """A canary at 10% with one failed check (limit 3), then frozen: its baseline edited into
    the candidate's version, which spec.py refuses."""
    store.create(_rollout(*KEY, steps=[10, 100], failure_limit=3))
    manager = RolloutManager(store, ScriptedSource([20]), router=None,
                             registry=AnyVersionRegistry(production="1"), clock=lambda: t[0],
                             **leading)
    for _ in range(2):  # started, then one failed check
        manager.run_once()
        t[0] += 60
    _edit(root, KEY[0], baseline={"version": VERSION})
    manager.run_once()
    t[0] += 60
    status = store.get_status(KEY[0])
    assert status.phase == Phase.PROGRESSING and "frozen" in status.message
    assert status.failed_checks == 1
    return manager


def _assert_frozen_exported(url: str) -> None:
    series = scrape(url)  # (its helper checks strategy="canary" on every series)
    assert series["marquee_rollout_failed_checks"] == {KEY: 1.0}, (
        "the frozen, failing rollout has no failed-checks series: RolloutFailing resolved")
    assert series["marquee_rollout_phase"][(*KEY, "Progressing")] == 1.0
    assert series["marquee_rollout_phase"][(*KEY, "RolledBack")] == 0.0
    assert series["marquee_rollout_candidate_weight_ratio"] == {KEY: pytest.approx(0.1)}
    assert series["marquee_rollout_step"] == {KEY: 1.0}
    assert series["marquee_rollout_failure_limit"] == {KEY: 3.0}


def test_a_restarted_controller_exports_a_frozen_failing_rollout(
        tmp_path: Path, metrics_url: str) -> None:  # noqa: F811
    store = FileStatusStore(tmp_path)
    t = [0.0]
    _frozen_and_failing(store, tmp_path, t)
    _assert_frozen_exported(metrics_url)  # the controller that saw the spec parse: exported

    metrics.forget_rollouts()  # the controller restarts: a new process exports nothing yet
    restarted = RolloutManager(store, ScriptedSource([20]), router=None,
                               registry=AnyVersionRegistry(production="1"), clock=lambda: t[0])
    restarted.run_once()
    _assert_frozen_exported(metrics_url)
    t[0] += 60
    restarted.run_once()  # and on every pass after (the status message unchanged)
    _assert_frozen_exported(metrics_url)

    store.request(KEY[0], "abort")  # marquee rollout abort: RolloutFailing resolves
    restarted.run_once()
    assert store.get_status(KEY[0]).phase == Phase.ROLLED_BACK
    series = scrape(metrics_url)
    assert series["marquee_rollout_failed_checks"] == {}
    assert series["marquee_rollout_phase"][(*KEY, "RolledBack")] == 1.0
    assert series["marquee_rollout_phase"][(*KEY, "Progressing")] == 0.0


def test_the_new_leader_exports_a_frozen_failing_rollout(
        tmp_path: Path, metrics_url: str) -> None:  # noqa: F811
    store = FileStatusStore(tmp_path)
    t = [0.0]
    leads = {"a": True, "b": False}
    a = _frozen_and_failing(store, tmp_path, t, leading=lambda: leads["a"])
    b = RolloutManager(store, ScriptedSource([20]), router=None,
                       registry=AnyVersionRegistry(production="1"), clock=lambda: t[0],
                       leading=lambda: leads["b"])
    b.run_once()  # standing by: nothing of its own
    leads.update(a=False, b=True)  # the Lease moves to b
    a.run_once()  # a stands by: drops what it exported as leader
    b.run_once()
    _assert_frozen_exported(metrics_url)


def test_a_frozen_rollout_whose_document_names_no_usable_model_or_strategy(
        tmp_path: Path, metrics_url: str) -> None:  # noqa: F811
    """The edit that froze it broke the very fields the labels come from: the series are
    exported all the same (RolloutFailing fires), under ``unknown`` for what cannot be read,
    the candidate version from the status's start decision."""
    store = FileStatusStore(tmp_path)
    store.create(_rollout(*KEY, steps=[10, 100], failure_limit=3))
    t = [0.0]
    manager = RolloutManager(store, ScriptedSource([20]), router=None,
                             registry=AnyVersionRegistry(production="1"), clock=lambda: t[0])
    for _ in range(2):
        manager.run_once()
        t[0] += 60
    _edit(tmp_path, KEY[0], modelName=["recs-frozen"], strategy="blue-green",
          analysis={"failureLimit": "three"})
    metrics.forget_rollouts()  # restarted after the edit
    RolloutManager(store, ScriptedSource([20]), router=None,
                   registry=AnyVersionRegistry(production="1"), clock=lambda: t[0]).run_once()
    assert "frozen" in store.get_status(KEY[0]).message
    text = httpx.get(f"{metrics_url}/metrics", timeout=5.0).raise_for_status().text
    found = {(f.name, tuple(sorted(s.labels.items())), s.value)
             for f in text_string_to_metric_families(text)
             for s in f.samples if s.labels.get("rollout") == KEY[0]
             and f.name in ("marquee_rollout_failed_checks", "marquee_rollout_failure_limit")}
    labels = (("model", "unknown"), ("model_version", VERSION), ("rollout", KEY[0]),
              ("strategy", "unknown"))
    # failed checks as stored; no failure limit (the document's is not a number)
    assert found == {("marquee_rollout_failed_checks", labels, 1.0)}, found


def test_aborting_a_frozen_rollout_keeps_the_epoch_the_controller_reapplies(
        tmp_path: Path) -> None:
    """A canary with its own stickiness salt, frozen, aborted, then its spec fixed: the
    manager re-applies the ended rollout's routing every few seconds. Before: the abort's
    routing had the rollout's name as salt, the re-applied one the spec's salt, so the router
    switched to a new epoch (stats and remembered lists started over)."""
    doc = {"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "s23n-salted"},
           "spec": {"baseline": {"alias": "production"}, "candidate": {"version": "2"},
                    "strategy": "canary", "intervalSeconds": 60, "steps": [{"weight": 50}],
                    "stickinessSalt": "s23n-experiment-7",
                    "analysis": {"minRequests": 100000,
                                 "metrics": [{"name": "errorRate", "max": 0.05}]}}}
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(parse_rollout(doc))
    original = (tmp_path / "rollouts" / "s23n-salted" / "rollout.yaml").read_text()
    t = [0.0]
    with _router(tmp_path, tmp_path / "routing.json") as c:
        admin = CountingAdmin(str(c.base_url))
        manager = RolloutManager(store, RouterStatsSource(admin), admin,
                                 DictRegistry(production="1"), clock=lambda: t[0])
        manager.run_once()
        running = c.get("/admin/routing").json()
        assert (running["strategy"], running["salt"]) == ("canary", "s23n-experiment-7")

        _edit(tmp_path / "rollouts", "s23n-salted", baseline={"version": "2"})  # refused
        t[0] += 10
        manager.run_once()
        assert "frozen" in store.get_status("s23n-salted").message
        store.request("s23n-salted", "abort")
        t[0] += 10
        manager.run_once()
        assert store.get_status("s23n-salted").phase == Phase.ROLLED_BACK
        aborted = c.get("/admin/routing").json()
        assert (aborted["strategy"], aborted["baseline"]["version"]) == ("single", "1")
        assert aborted["salt"] == "s23n-experiment-7", aborted

        # the spec fixed (kubectl edit back): the manager re-applies the ended routing
        (tmp_path / "rollouts" / "s23n-salted" / "rollout.yaml").write_text(original)
        sent = len(admin.sent)
        for _ in range(2):
            t[0] += 10
            manager.run_once()
        assert len(admin.sent) == sent + 2  # re-applied on both passes
        again = c.get("/admin/routing").json()
        assert (again["epoch"], again["applied_at"]) == (aborted["epoch"],
                                                        aborted["applied_at"]), (
            f"the router moved to another epoch for the same ended rollout: {aborted} -> "
            f"{again}")


def test_a_restarted_controller_exports_a_frozen_rollout_on_either_store(
        backend: Backend, metrics_url: str) -> None:  # noqa: F811
    """The same through the ModelRollout custom resource (the Kubernetes API on 127.0.0.1),
    whose document says no modelName: the spec's default model, as the controller ran it."""
    backend.write("s23n-r1", _doc("s23n-r1"))
    t = [0.0]

    def manager() -> RolloutManager:
        return RolloutManager(backend.store, ScriptedSource([20]), None,
                              DictRegistry(production="1"), clock=lambda: t[0])

    first = manager()
    for _ in range(2):  # started at 10%, then one failed check (limit 2)
        first.run_once()
        t[0] += 60
    backend.write("s23n-r1", _doc("s23n-r1", baseline={"version": "2"}))  # refused
    first.run_once()
    assert "frozen" in backend.status("s23n-r1").message
    metrics.forget_rollouts()  # restarted
    manager().run_once()
    text = httpx.get(f"{metrics_url}/metrics", timeout=5.0).raise_for_status().text
    found = {(f.name, s.labels.get("stage", "")): (s.labels["model"], s.labels["model_version"],
                                                    s.labels["strategy"], s.value)
             for f in text_string_to_metric_families(text) for s in f.samples
             if s.labels.get("rollout") == "s23n-r1" and s.labels.get("stage", "Progressing")
             == "Progressing"}
    labels = ("movie-recommender", "2", "canary")
    assert found == {("marquee_rollout_failed_checks", ""): (*labels, 1.0),
                     ("marquee_rollout_failure_limit", ""): (*labels, 2.0),
                     ("marquee_rollout_step", ""): (*labels, 1.0),
                     ("marquee_rollout_candidate_weight_ratio", ""): (*labels, 0.1),
                     ("marquee_rollout_phase", "Progressing"): (*labels, 1.0)}, found
