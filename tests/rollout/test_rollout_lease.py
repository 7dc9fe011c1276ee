"""Leader election of rollout controllers: a coordination.k8s.io Lease on the FAKE Kubernetes
API server (tests/rollout/fake_kube.py, with resourceVersion conflicts on replace), through the
official client; then two real ``marquee rollout controller`` processes sharing it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.rollout.lease import LeaderLease
from serving.rollout.manager import RolloutManager
from serving.rollout.spec import parse_rollout
from serving.rollout.status import RolloutStatus
from serving.rollout.store import KubernetesStatusStore
from tests.conftest import free_port, silent_server, stop_process, wait_until
from tests.rollout.fake_kube import FakeKubeAPI, write_kubeconfig

NS, NAME = "marquee", "marquee-rollout-controller"
REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def kube() -> Iterator[FakeKubeAPI]:
    api = FakeKubeAPI().start()
    yield api
    api.stop()


def _api(kube: FakeKubeAPI):
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = kube.url
    return client.CoordinationV1Api(client.ApiClient(cfg))


def _lease(kube: FakeKubeAPI, who: str, clock: Clock, api=None) -> LeaderLease:
    return LeaderLease(api or _api(kube), NS, NAME, who, duration=15, renew_deadline=10,
                       retry_period=2, clock=clock)


def _stored(kube: FakeKubeAPI) -> dict:
    return kube.objects[("leases", NS, NAME)]["spec"]


def test_one_holder_at_a_time_and_a_standby_takes_over_when_renewals_stop(
        kube: FakeKubeAPI) -> None:
    clock = Clock()
    a, b = _lease(kube, "pod-a", clock), _lease(kube, "pod-b", clock)
    assert a.try_acquire_or_renew() and a.leading()
    assert not b.try_acquire_or_renew() and not b.leading()
    assert _stored(kube)["holderIdentity"] == "pod-a"
    # a keeps renewing: however long b waits, the record keeps changing, so b stands by
    for _ in range(20):
        clock.t += 2
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    # a stops renewing (its pod is gone); it stops acting after the renew deadline
    clock.t += 10
    assert not a.leading()
    clock.t += 4  # 14 s of an unchanged record by b's clock: not yet
    assert not b.try_acquire_or_renew()
    clock.t += 2  # 16 s > the 15 s lease
    assert b.try_acquire_or_renew() and b.leading()
    spec = _stored(kube)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("pod-b", 1)
    # a comes back: b holds a live lease now
    assert not a.try_acquire_or_renew() and not a.leading()


def test_of_two_candidates_writing_at_once_the_api_server_accepts_one(
        kube: FakeKubeAPI) -> None:
    clock = Clock()
    a = _lease(kube, "pod-a", clock)
    assert a.try_acquire_or_renew()
    stale = _api(kube).read_namespaced_lease(NAME, NS)  # what c read before b wrote

    class StaleRead:
        def __init__(self, real) -> None:
            self.real = real

        def read_namespaced_lease(self, *_a, **_kw):
            return stale

        def __getattr__(self, name):
            return getattr(self.real, name)

    b, c = _lease(kube, "pod-b", clock), _lease(kube, "pod-c", clock,
                                                 api=StaleRead(_api(kube)))
    b.try_acquire_or_renew(), c.try_acquire_or_renew()  # both observe a's record
    clock.t += 16  # a is gone
    assert b.try_acquire_or_renew()
    assert not c.try_acquire_or_renew() and not c.leading()  # 409: the record moved on
    assert _stored(kube)["holderIdentity"] == "pod-b"
    assert any(r[0] == "PUT" for r in kube.requests)


def test_a_holder_that_stops_cleanly_hands_over_at_once(kube: FakeKubeAPI) -> None:
    clock = Clock()
    a, b = _lease(kube, "pod-a", clock), _lease(kube, "pod-b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert _stored(kube)["holderIdentity"] == "" and not a.leading()
    assert b.try_acquire_or_renew()  # no 15 s wait
    assert _stored(kube)["holderIdentity"] == "pod-b"


def test_bad_timings_are_refused() -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < duration"):
        LeaderLease(object(), NS, NAME, "x", duration=10, renew_deadline=10, retry_period=2)


def test_calls_to_an_api_server_that_stops_answering_fail_instead_of_hanging() -> None:
    """The official client against a port that accepts connections and never answers (a hung
    API server or proxy). It has no timeout of its own: without one the lease thread, or the
    controller's loop reading its rollouts, would wait forever. The lease bounds each call by
    half its renew deadline, the rollout store by its ``request_timeout``."""
    from kubernetes import client
    from urllib3.exceptions import ReadTimeoutError

    with silent_server() as url:
        cfg = client.Configuration()
        cfg.host = url
        cfg.retries = False
        api = client.ApiClient(cfg)
        lease = LeaderLease(client.CoordinationV1Api(api), NS, NAME, "pod-a", duration=1.5,
                            renew_deadline=1.0, retry_period=0.5)
        assert lease.request_timeout == (0.5, 0.5)  # a pair: the client ignores a float
        with pytest.raises(ReadTimeoutError, match="read timeout=0.5"):
            lease.try_acquire_or_renew()
        assert not lease.leading()
        store = KubernetesStatusStore(client.CustomObjectsApi(api), NS, request_timeout=0.5)
        with pytest.raises(ReadTimeoutError, match="read timeout=0.5"):
            store.list()


ROLLOUT = {
    "apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
    "metadata": {"name": "recommender-v2"},
    "spec": {"baseline": {"version": "1"}, "candidate": {"version": "2"},
             "strategy": "canary", "steps": [{"weight": 5}, {"weight": 100}],
             "intervalSeconds": 1,
             "analysis": {"failureLimit": 2, "metrics": [{"name": "errorRate", "max": 0.05}]}},
}


def test_a_standby_manager_ticks_nothing(kube: FakeKubeAPI) -> None:
    from kubernetes import client

    from serving.rollout import metrics

    cfg = client.Configuration()
    cfg.host = kube.url
    store = KubernetesStatusStore(client.CustomObjectsApi(client.ApiClient(cfg)), NS)
    store.create(parse_rollout(ROLLOUT, "test"))
    before = store.get("recommender-v2").status

    class NoSource:  # a standby must not even read metrics
        def __getattr__(self, name):
            raise AssertionError(f"a standby called the metrics source ({name})")

    metrics.ACTIVE.labels("canary").set(1)  # what it exported when it last led
    metrics.FAILED_CHECKS.labels("recommender-v2", "movie-recommender", "2", "canary").set(1)
    manager = RolloutManager(store, NoSource(), None, None, leading=lambda: False)
    assert manager.run_once() == {}
    exported = {s.name for m in (metrics.ACTIVE, metrics.FAILED_CHECKS) for s in
                m.collect()[0].samples}
    assert not exported  # a standby exports no rollout's gauges next to the leader's
    assert manager.ready  # a standby is ready: it can list the store
    assert store.get("recommender-v2").status == before == RolloutStatus()
    assert metrics.LEADER._value.get() == 0.0
    assert not [r for r in kube.requests if r[1].endswith("/status")]


def _controller(kube: FakeKubeAPI, tmp_path: Path, who: str) -> tuple[subprocess.Popen, str]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
    port = free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAME": who,
           "MARQUEE_HOME": str(tmp_path / who)}
    env.pop("KUBERNETES_SERVICE_HOST", None)  # not in a pod: the kubeconfig is used
    proc = subprocess.Popen(
        [sys.executable, "-m", "marquee.cli", "rollout", "controller", "--namespace", NS,
         "--host", "127.0.0.1", "--port", str(port), "--router", "http://127.0.0.1:9"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{who}.log", "w"))
    return proc, f"http://127.0.0.1:{port}"


def _leader_gauge(url: str) -> float | None:
    try:
        text = httpx.get(f"{url}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("marquee_rollout_leader "):
            return float(line.split()[1])
    return None


def test_two_controller_processes_elect_one_and_hand_over_on_sigterm(
        kube: FakeKubeAPI, tmp_path: Path) -> None:
    a, a_url = _controller(kube, tmp_path, "pod-a")
    b, b_url = _controller(kube, tmp_path, "pod-b")
    try:
        wait_until(lambda: _leader_gauge(a_url) is not None and _leader_gauge(b_url)
                   is not None, timeout=90, what="both controllers serving /metrics")
        wait_until(lambda: {_leader_gauge(a_url), _leader_gauge(b_url)} == {0.0, 1.0},
                   timeout=30, what="one leader, one standby")
        holder = _stored(kube)["holderIdentity"]
        leader, standby, standby_url = (a, b, b_url) if _leader_gauge(a_url) == 1.0 \
            else (b, a, a_url)
        assert holder.startswith("pod-a_" if leader is a else "pod-b_")
        httpx.get(f"{standby_url}/readyz", timeout=2).raise_for_status()  # standby is ready
        leader.send_signal(signal.SIGTERM)
        assert leader.wait(timeout=30) == 0
        assert _stored(kube)["holderIdentity"] != holder  # released on the way out
        wait_until(lambda: _leader_gauge(standby_url) == 1.0, timeout=10,
                   what="the standby took over (well before the 15 s lease would expire)")
        assert _stored(kube)["holderIdentity"].startswith("pod-b_" if standby is b else "pod-a_")
    finally:
        for p in (a, b):
            stop_process(p)
