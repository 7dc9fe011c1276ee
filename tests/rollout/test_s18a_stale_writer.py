"""Two rollout controllers on one ModelRollout: the one whose tick outlived its lease must not
write its older decision over the new leader's (helper A, session 18).

The Kubernetes API is tests/rollout/fake_kube.py, made to honour what kube-apiserver does with
a ``metadata.resourceVersion`` in a PATCH body: it is a precondition, 409 Conflict when the
object has changed since. The stores, the controllers, the official client and the router
admin (a RouterAdmin against a port where nothing listens) are the real code.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from serving.router.schema import VariantWindow, WindowStats
from serving.rollout.controller import Controller
from serving.rollout.sources import RouterAdmin
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Phase
from serving.rollout.store import KubernetesStatusStore, StatusConflict
from tests.conftest import free_port
from tests.rollout.fake_kube import FakeKubeAPI
from tests.rollout.test_hunt_rollout import Healthy, _doc
from tests.rollout.test_rollout_controller import Clock, DictRegistry

NS = "marquee"


class PreconditionKubeAPI(FakeKubeAPI):
    """PATCH with ``metadata.resourceVersion``: 409 unless it is the stored one."""

    def handle(self, method: str, ns: str, name: str | None, status: bool, body: Any,
               content_type: str, plural: str = "modelrollouts", **kw: Any) -> tuple[int, Any]:
        if method == "PATCH" and isinstance(body, dict):
            sent = (body.get("metadata") or {}).get("resourceVersion")
            with self._lock:
                obj = self.objects.get((plural, ns, name or ""))
                if sent is not None and obj is not None and \
                        sent != obj["metadata"].get("resourceVersion"):
                    return 409, {"kind": "Status", "status": "Failure", "reason": "Conflict",
                                 "code": 409, "message": "the object has been modified"}
            body["metadata"] = {k: v for k, v in (body.get("metadata") or {}).items()
                                if k != "resourceVersion"}
            if not body["metadata"]:
                del body["metadata"]
        return super().handle(method, ns, name, status, body, content_type, plural, **kw)


@pytest.fixture()
def kube() -> Iterator[FakeKubeAPI]:
    api = PreconditionKubeAPI().start()
    yield api
    api.stop()


def _store(kube: FakeKubeAPI) -> KubernetesStatusStore:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = kube.url
    return KubernetesStatusStore(client.CustomObjectsApi(client.ApiClient(cfg)), NS)


class Stalled:
    """Healthy metrics, but the first read hangs until released (a slow Prometheus while
    this controller's lease lapses)."""

    def __init__(self) -> None:
        self.entered, self.go = threading.Event(), threading.Event()

    def window(self, since: float, until: float) -> WindowStats:
        self.entered.set()
        assert self.go.wait(30)
        return WindowStats(since=since, until=until, variants={
            "baseline": VariantWindow(requests=900, latency_p99_ms=10.0),
            "candidate": VariantWindow(requests=100, latency_p99_ms=10.0)})


SPEC = dict(steps=[{"weight": 10}, {"weight": 50}, {"weight": 100}],
            analysis={"minRequests": 50, "metrics": [{"name": "errorRate", "max": 0.05}]})


def test_a_stale_controller_does_not_overwrite_the_new_leaders_decision(
        kube: FakeKubeAPI) -> None:
    """Before: the old leader's tick, started before its lease lapsed, saved 'Progressing,
    candidate 50%' over the new leader's 'RolledBack' (an abort), and the rollout went on."""
    old_store, new_store = _store(kube), _store(kube)
    old_store.create(parse_rollout(_doc(**SPEC)))
    registry = DictRegistry(production="1")
    Controller(new_store, "r1", Healthy(), registry=registry, clock=Clock()).tick()

    stalled = Stalled()
    old = Controller(old_store, "r1", stalled, registry=registry, clock=Clock())
    outcome: dict[str, Any] = {}

    def old_tick() -> None:
        try:
            outcome["status"] = old.tick()
        except Exception as exc:  # noqa: BLE001 - what the controller's loop would log
            outcome["error"] = exc

    t = threading.Thread(target=old_tick)
    t.start()
    assert stalled.entered.wait(30)
    new_store.request("r1", "abort")  # the release owner aborts; the new leader acts on it
    assert Controller(new_store, "r1", Healthy(), registry=registry,
                      clock=Clock()).tick().phase == Phase.ROLLED_BACK
    stalled.go.set()
    t.join(30)
    assert isinstance(outcome.get("error"), StatusConflict), outcome
    stored = _store(kube).get("r1").status
    assert stored.phase == Phase.ROLLED_BACK and stored.message == "aborted by user"
    assert stored.weights.candidate == 0


def test_one_controller_with_its_own_writes_runs_a_rollout_to_the_end(
        kube: FakeKubeAPI) -> None:
    """Its own writes (status, a routing error, the cleared command) never count as someone
    else's: no tick conflicts with itself."""
    store = _store(kube)
    store.create(parse_rollout(_doc(**SPEC)))
    registry = DictRegistry(production="1")
    router = RouterAdmin(f"http://127.0.0.1:{free_port()}", timeout=2)  # nobody listens
    controller = Controller(store, "r1", Healthy(), router=router, registry=registry,
                            clock=Clock())
    controller.tick()
    assert controller.tick().routing_error  # saved twice in one tick
    store.request("r1", "promote")  # cleared by the tick that carries it out
    phases = [controller.tick().phase for _ in range(3)]
    assert phases[-1] == Phase.SUCCEEDED, phases
    assert store.pending_command("r1") is None
    assert registry.aliases["production"] == "2"
