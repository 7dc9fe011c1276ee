"""A rollout whose spec serving/rollout/spec.py refuses while the controller runs (a custom
resource edited by hand, a rollout.yaml edited in place) is stopped once, with the reason in
its status: a Pending one ends Failed, a running one is frozen where it is.

Before, ``store.get`` raised on every pass of ``marquee rollout controller``: a traceback per
pass, the status untouched (Pending forever, or Progressing with no word of why nothing
moves). The CRD cannot catch these edits: a timed pause before any weight step and a candidate
equal to the baseline are valid JSON Schema (tests/k8s/test_k8s_modelrollout.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.rollout.manager import RolloutManager
from serving.rollout.spec import parse_rollout
from serving.rollout.status import START_REASON, Decision, Outcome, Phase, RolloutStatus
from serving.rollout.store import FileStatusStore, KubernetesStatusStore
from tests.rollout.fake_kube import FakeKubeAPI
from tests.rollout.test_rollout_controller import DictRegistry, ScriptedSource

NS = "marquee"


def _doc(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name},
            "spec": {"baseline": {"version": "1"}, "candidate": {"version": "2"},
                     "strategy": "canary", "intervalSeconds": 1,
                     "steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}],
                     "analysis": {"failureLimit": 2, "minRequests": 50,
                                  "metrics": [{"name": "errorRate", "max": 0.05}]}, **spec}}


class Backend:
    """A store, how a person writes a spec into it by hand (no validation on the way), and
    the status as stored (read without the spec, which no longer parses)."""

    def __init__(self, store: Any, write: Callable[[str, dict[str, Any]], None],
                 stored_status: Callable[[str], dict[str, Any] | None]) -> None:
        self.store, self.write, self.stored_status = store, write, stored_status

    def status(self, name: str) -> RolloutStatus:
        status = RolloutStatus.from_dict(self.stored_status(name))
        assert self.store.get_status(name) == status
        return status


@pytest.fixture(params=["kubernetes", "file"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "file":
        def write_file(name: str, doc: dict[str, Any]) -> None:
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / "rollout.yaml").write_text(yaml.safe_dump(doc))
        def file_status(name: str) -> dict[str, Any] | None:
            path = tmp_path / name / "status.json"
            return json.loads(path.read_text()) if path.exists() else None
        yield Backend(FileStatusStore(tmp_path), write_file, file_status)
        return
    from kubernetes import client

    fake = FakeKubeAPI().start()
    cfg = client.Configuration()
    cfg.host = fake.url
    api = client.CustomObjectsApi(client.ApiClient(cfg))

    def write_kube(name: str, doc: dict[str, Any]) -> None:  # `kubectl edit` / `apply`
        try:
            api.patch_namespaced_custom_object("marquee.dev", "v1alpha1", NS, "modelrollouts",
                                               name, {"spec": doc["spec"]})
        except client.ApiException as exc:
            assert exc.status == 404
            api.create_namespaced_custom_object("marquee.dev", "v1alpha1", NS,
                                                "modelrollouts", doc)

    def kube_status(name: str) -> dict[str, Any] | None:
        return fake.objects[("modelrollouts", NS, name)].get("status")
    try:
        yield Backend(KubernetesStatusStore(api, namespace=NS), write_kube, kube_status)
    finally:
        fake.stop()


class Router:
    def __init__(self) -> None:
        self.applied: list[Any] = []

    def apply(self, routing: Any) -> None:
        self.applied.append(routing)


def _count_saves(store: Any) -> list[str]:
    saves: list[str] = []
    real = store.save_status

    def save(name: str, status: Any) -> None:
        saves.append(name)
        real(name, status)
    store.save_status = save
    return saves


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info]


def test_a_pending_rollout_with_a_refused_spec_fails_once_naming_the_field(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    backend.write("r1", _doc("r1", steps=[{"pause": {"seconds": 60}}, {"weight": 10}]))
    router, registry = Router(), DictRegistry(production="1")
    saves = _count_saves(backend.store)
    t = [0.0]
    mgr = RolloutManager(backend.store, ScriptedSource([0]), router, registry,
                         clock=lambda: t[0])
    with caplog.at_level(logging.INFO, logger="marquee.rollout"):
        for i in range(4):
            t[0] = float(i)
            mgr.run_once()
    assert _tracebacks(caplog) == []
    status = backend.status("r1")
    assert status.phase == Phase.FAILED, status
    assert "steps[0].pause" in status.message and "timed pause" in status.message
    (decision,) = status.decisions
    assert decision.outcome == Outcome.FAILED and decision.reason == status.message
    assert saves == ["r1"]  # written once, not on every pass
    assert router.applied == [] and registry.aliases == {"production": "1"}


def test_a_running_rollout_whose_spec_is_edited_into_a_refused_one_is_frozen(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    # An earlier rollout of the model that ended: while none runs, the manager re-applies
    # its routing (all on production), which must not count a frozen one as ended.
    backend.store.create(parse_rollout(_doc("r0", candidate={"version": "3"})))
    backend.store.save_status("r0", RolloutStatus(
        phase=Phase.ROLLED_BACK, step=1, message="rolled back", decisions=[Decision(
            time=datetime(2026, 1, 1, tzinfo=timezone.utc), phase=Phase.ROLLED_BACK, step=1,
            outcome=Outcome.FAILED, reason=START_REASON,
            statistics={"baselineVersion": "1", "candidateVersion": "3"})]))
    backend.store.create(parse_rollout(_doc("r1")))
    router, registry = Router(), DictRegistry(production="1")
    t = [0.0]
    mgr = RolloutManager(backend.store, ScriptedSource([0]), router, registry,
                         clock=lambda: t[0])
    mgr.run_once()
    running = backend.store.get("r1").status
    assert running.phase == Phase.PROGRESSING and running.weights.candidate == 10
    applied = len(router.applied)

    # A person edits the running rollout: the same version on both sides.
    backend.write("r1", _doc("r1", baseline={"version": "2"}))
    saves = _count_saves(backend.store)
    with caplog.at_level(logging.INFO, logger="marquee.rollout"):
        for i in range(1, 12):  # passes over a minute and more: ticks and reconciles due
            t[0] = i * 7.0
            assert mgr.run_once() == {}
    assert _tracebacks(caplog) == []
    frozen = backend.status("r1")
    assert "candidate: the same as the baseline" in frozen.message, frozen.message
    assert (frozen.phase, frozen.step, frozen.weights) == (running.phase, running.step,
                                                           running.weights)
    assert frozen.decisions == running.decisions
    assert saves == ["r1"]  # the message, once
    # no traffic change: the frozen routing is re-applied as it was (session 23: a router
    # replica restarted meanwhile gets it), never another one
    assert len(router.applied) > applied
    assert all(r == router.applied[applied - 1] for r in router.applied[applied:])
    assert registry.aliases == {"production": "1", "candidate": "2"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "r1" in warnings[0].getMessage()

    # Edited back: it carries on from where it was frozen.
    backend.write("r1", _doc("r1"))
    t[0] = 100.0
    assert mgr.run_once()["r1"].phase == Phase.PROGRESSING
    assert "the same as the baseline" not in backend.store.get("r1").status.message
