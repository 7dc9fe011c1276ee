"""The retrain loop in a cluster: a Kubeflow run followed to its end, then the retrained
version's InferenceService and shadow ModelRollout created through the Kubernetes API.

Real here: the MLflow registry (SQLite) the launcher reads the version and gate decision
from, the trigger and its state, the official ``kubernetes`` client over HTTP, the chart's
rendered InferenceService template, and the KServe and ModelRollout CRD schemas.
FAKES (no Kubeflow host and no kube-apiserver on this machine): ``FakeKfpClient`` stands in
for ``kfp.Client`` and "runs" the pipeline by registering a version when the run succeeds;
``tests.rollout.fake_kube.FakeKubeAPI`` stands in for the API server, and a thread of the
test plays KServe by marking the InferenceService Ready.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from marquee.registry import Registry
from marquee.settings import Settings
from monitoring.errors import LaunchError
from monitoring.retrain.cluster import ClusterAutoRollout, render_inference_service
from monitoring.retrain.launcher import KubeflowLauncher, LaunchRequest
from monitoring.retrain.models import ManualRequest, RunRecord, RunStatus
from monitoring.retrain.state import InFlight, StateStore
from monitoring.retrain.trigger import RetrainTrigger
from serving.settings import ServingSettings
from tests.conftest import silent_server
from tests.k8s import chartlib as c
from tests.rollout.fake_kube import FakeKubeAPI

MODEL = "movie-recommender"
NS = "marquee"
#: The MARQUEE_* variables a model server reads (marquee.settings.Settings, ServingSettings).
SERVING_ENV = frozenset(c.settings_variables(Settings, ServingSettings))


class FakeKfpClient:
    """FAKE ``kfp.Client``: each submitted run goes through ``states``; when it first reports
    SUCCEEDED it registers a version (gate decision ``gate``) tagged with its run id, as the
    pipeline's register step does in Kubeflow."""

    def __init__(self, settings: Settings, states: list[str], gate: str = "candidate",
                 register: bool = True, error: str = "") -> None:
        self.settings = settings
        self.states = states
        self.gate = gate
        self.register = register
        self.error = error
        self.created: list[str] = []
        self.polls: dict[str, int] = {}
        self.registered: dict[str, int] = {}

    def create_run_from_pipeline_func(self, func, arguments, run_name, experiment_name):  # noqa: ANN001, ANN201
        run_id = f"kfp-{len(self.created) + 1}"
        self.created.append(run_id)
        return SimpleNamespace(run_id=run_id)

    def get_run(self, run_id: str) -> SimpleNamespace:
        n = self.polls.get(run_id, 0)
        self.polls[run_id] = n + 1
        state = self.states[min(n, len(self.states) - 1)]
        if state == "SUCCEEDED" and self.register and run_id not in self.registered:
            reg = Registry(self.settings.resolved_registry_uri, MODEL)
            self.registered[run_id] = reg.register(
                f"file:///bundles/{run_id}", {"ndcg_at_10": 0.3},
                {"pipeline_run_id": f"marquee-training-{run_id}", "pipeline_run_uid": run_id,
                 "gate.decision": self.gate})
        error = SimpleNamespace(message=self.error) if self.error else None
        return SimpleNamespace(run_id=run_id, state=state, error=error)


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path / "home", kubeflow_host="http://kubeflow.invalid")
    reg = Registry(s.resolved_registry_uri, MODEL)
    reg.promote(reg.register("file:///bundles/first", {"ndcg_at_10": 0.25},
                             {"gate.decision": "promoted-first"}))  # version 1: production
    return s


@pytest.fixture()
def kube() -> Iterator[FakeKubeAPI]:
    api = FakeKubeAPI().start()
    yield api
    api.stop()


def custom_api(kube: FakeKubeAPI):  # noqa: ANN201
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = kube.url
    return client.CustomObjectsApi(client.ApiClient(cfg))


def chart_template() -> str:
    (cm,) = [o for o in c.default_objects()
             if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "marquee-trigger-isvc"]
    return cm["data"]["inferenceservice.yaml"]


def launcher(settings: Settings, client: FakeKfpClient, **kw) -> KubeflowLauncher:  # noqa: ANN003
    return KubeflowLauncher(settings, client=client, poll_seconds=0.01, **kw)


REQUEST = LaunchRequest(run_id="rt-1", model=MODEL, reason="ModelDataDrift")


# --- the launcher follows the Kubeflow run ---------------------------------------------------

def test_kubeflow_launcher_follows_the_run_and_reads_its_version_from_the_registry(
        settings: Settings) -> None:
    client = FakeKfpClient(settings, ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"])
    submitted: list[str] = []
    got = launcher(settings, client).launch(LaunchRequest(
        run_id="rt-1", model=MODEL, reason="drift", on_submitted=submitted.append))
    assert submitted == ["kfp-1"]  # recorded before the run ended
    assert client.polls["kfp-1"] == 4
    assert (got.pipeline_run_id, got.model_version, got.gate_decision) == \
        ("kfp-1", "2", "candidate")


def test_kubeflow_launcher_without_waiting_returns_at_submission(settings: Settings) -> None:
    client = FakeKfpClient(settings, ["RUNNING"])
    got = launcher(settings, client, wait=False).launch(REQUEST)
    assert (got.pipeline_run_id, got.model_version, got.gate_decision) == ("kfp-1", None, None)
    assert client.polls == {}


@pytest.mark.parametrize(("states", "error", "register", "timeout", "message"), [
    (["RUNNING", "FAILED"], "train: out of memory", True, 60.0,
     "Kubeflow run kfp-1 ended FAILED: train: out of memory"),
    (["CANCELED"], "", True, 60.0, "Kubeflow run kfp-1 ended CANCELED"),
    (["SUCCEEDED"], "", False, 60.0, "no version of movie-recommender .* pipeline_run_uid=kfp-1"),
    (["RUNNING"], "", True, 0.2, "Kubeflow run kfp-1 still RUNNING after 0s"),
])
def test_a_kubeflow_run_that_does_not_end_with_a_version_fails_naming_why(
        settings: Settings, states: list[str], error: str, register: bool, timeout: float,
        message: str) -> None:
    client = FakeKfpClient(settings, states, register=register, error=error)
    with pytest.raises(LaunchError, match=message):
        launcher(settings, client, timeout_seconds=timeout).launch(REQUEST)


def test_kubeflow_launcher_gives_up_after_repeated_api_errors(settings: Settings) -> None:
    class Unreachable(FakeKfpClient):
        def get_run(self, run_id: str) -> SimpleNamespace:
            raise ConnectionError("kubeflow.invalid: connection refused")

    with pytest.raises(LaunchError, match="could not be read 3 times in a row: kubeflow"):
        launcher(settings, Unreachable(settings, []), max_poll_errors=3).launch(REQUEST)


def test_a_kubeflow_api_that_stops_answering_fails_the_run_instead_of_hanging(
        tmp_path: Path) -> None:
    """The real ``kfp.Client`` against a port that accepts connections and never answers
    (a hung API server, a dead proxy). ``kfp.Client`` sets no timeout of its own: making it
    (it asks the API's health) and every call would wait forever, while the trigger's
    heartbeat kept the run claimed. Each call is abandoned after ``api_timeout_seconds``:
    the submission fails the run, and so do ``max_poll_errors`` unanswered reads."""
    with silent_server() as host:
        follower = KubeflowLauncher(Settings(home=tmp_path, kubeflow_host=host),
                                    poll_seconds=0.01, api_timeout_seconds=0.5,
                                    max_poll_errors=2)
        with pytest.raises(LaunchError, match=rf"submitting the run: no answer from {host} "
                                              r"within 0.5s; whether Kubeflow created it"):
            follower.launch(REQUEST)
        with pytest.raises(LaunchError, match=r"could not be read 2 times in a row: no answer "
                                              rf"from {host} within 0.5s"):
            follower.follow("kfp-1")


# --- the chart's template --------------------------------------------------------------------

def test_the_triggers_template_is_the_charts_own_inference_service_of_a_shadow_version() -> None:
    template = chart_template()
    made = render_inference_service(template, "7", NS)
    (chart_v7,) = [o for o in c.objects({"models": {"versions": [
        {"version": "1"}, {"version": "7", "shadow": True}]}})
        if o["kind"] == "InferenceService" and o["metadata"]["name"] == "marquee-v7"]
    annotations = made["metadata"]["annotations"]
    assert annotations["meta.helm.sh/release-name"] == "marquee"  # helm upgrade can adopt it
    assert annotations["marquee.dev/started-by"] == "retrain-trigger"
    made["metadata"]["annotations"] = {k: v for k, v in annotations.items()
                                       if not k.startswith(("meta.helm.sh/", "marquee.dev/"))}
    assert made == chart_v7
    assert made["spec"]["predictor"]["labels"]["marquee.dev/tier"] == "shadow"
    schema = c.shared_schema("serving.kserve.io", "v1beta1", "InferenceService")
    assert c.errors(jsonschema.Draft7Validator, schema, made) == []


@pytest.mark.parametrize(("template", "version", "message"), [
    ("kind: InferenceService\n", "7", "no __MARQUEE_VERSION__ placeholder"),
    ("kind: Deployment\nmetadata: {name: x-v__MARQUEE_VERSION__}\n", "7", "not one"),
    (None, "7; rm -rf /", "not a registry version number"),
])
def test_a_bad_template_or_version_is_refused(template: str | None, version: str,
                                              message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_inference_service(template or chart_template(), version, NS)


# --- the whole loop in the cluster -----------------------------------------------------------

def play_kserve(kube: FakeKubeAPI, name: str, after: float, stop: threading.Event,
                ready_at: list[int]) -> threading.Thread:
    """KServe's part, played: once the InferenceService exists, it turns Ready ``after``
    seconds later. ``ready_at`` gets the number of API requests served until then."""
    def run() -> None:
        key = ("inferenceservices", NS, name)
        while not stop.is_set() and key not in kube.objects:
            time.sleep(0.01)
        if stop.wait(after):
            return
        with kube._lock:
            kube.objects[key] = {**kube.objects[key], "status": {"conditions": [
                {"type": "Ready", "status": "True"}]}}
            ready_at.append(len(kube.requests))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def make_trigger(tmp_path: Path, settings: Settings, client: FakeKfpClient, kube: FakeKubeAPI,
                 ready_timeout: float = 30.0) -> RetrainTrigger:
    rollout = ClusterAutoRollout(api=custom_api(kube), namespace=NS, model_name=MODEL,
                                 template=chart_template(), server_ready_timeout=ready_timeout,
                                 poll_seconds=0.02,
                                 spec_overrides={"intervalSeconds": 30})
    return RetrainTrigger(StateStore(tmp_path / "retrain"), launcher(settings, client),
                          default_model=MODEL, after_run=rollout)


def test_a_retrained_version_goes_into_a_shadow_rollout_in_the_cluster(
        tmp_path: Path, settings: Settings, kube: FakeKubeAPI) -> None:
    client = FakeKfpClient(settings, ["RUNNING", "RUNNING", "SUCCEEDED"])
    trig = make_trigger(tmp_path, settings, client, kube).start()
    stop, ready_at = threading.Event(), []
    play_kserve(kube, "marquee-v2", 0.3, stop, ready_at)
    try:
        assert trig.handle_manual(ManualRequest(reason="drift on genre mix")).started
        assert trig.wait_idle(60)
    finally:
        stop.set()
        trig.close()
    (run,) = trig.store.runs()
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert (run.pipeline_run_id, run.model_version, run.gate_decision, run.rollout) == \
        ("kfp-1", "2", "candidate", "retrain-shadow-v2")
    last = trig.store.decisions()[-1]
    assert last.decision.value == "rollout-started" and "marquee-v2 created, Ready" in last.detail

    isvc = kube.objects[("inferenceservices", NS, "marquee-v2")]
    ctr = isvc["spec"]["predictor"]["containers"][0]
    assert ctr["args"][:5] == ["serve", "--runtime", "kserve", "--model-version", "2"]
    env = {e["name"]: e.get("value") for e in ctr["env"]}
    # the server resolves version 2's bundle through the registry: no STORAGE_URI built
    # from the registry number (bundles live under their own timestamped version path)
    assert "STORAGE_URI" not in env
    assert not {k for k in env if k.startswith("MARQUEE_") and k not in SERVING_ENV}, \
        "a MARQUEE_* variable no settings class reads"
    assert isvc["metadata"]["labels"]["marquee.dev/model-version"] == "2"
    schema = c.shared_schema("serving.kserve.io", "v1beta1", "InferenceService")
    assert c.errors(jsonschema.Draft7Validator, schema,
                    {k: v for k, v in isvc.items() if k != "status"}) == []

    mr = kube.objects[("modelrollouts", NS, "retrain-shadow-v2")]
    assert mr["spec"]["strategy"] == "shadow" and mr["spec"]["candidate"] == {"version": "2"}
    assert mr["spec"]["baseline"] == {"alias": "production"} and mr["spec"]["intervalSeconds"] == 30
    assert c.errors(jsonschema.Draft7Validator, c.modelrollout_schema(), mr) == []
    # the rollout was created only after KServe reported the candidate Ready
    post = [i for i, r in enumerate(kube.requests)
            if r[0] == "POST" and r[1].endswith("/modelrollouts")]
    assert len(post) == 1 and ready_at and post[0] >= ready_at[0]


def test_a_candidate_that_never_becomes_ready_gets_no_rollout(
        tmp_path: Path, settings: Settings, kube: FakeKubeAPI) -> None:
    client = FakeKfpClient(settings, ["SUCCEEDED"])
    trig = make_trigger(tmp_path, settings, client, kube, ready_timeout=0.5).start()
    try:
        assert trig.handle_manual(ManualRequest(reason="drift on genre mix")).started
        assert trig.wait_idle(60)
    finally:
        trig.close()
    (run,) = trig.store.runs()
    assert run.status is RunStatus.SUCCEEDED and run.rollout is None
    last = trig.store.decisions()[-1]
    assert last.decision.value == "rollout-failed"
    assert "marquee-v2 not Ready within 0s (no Ready condition yet)" in last.detail
    assert ("inferenceservices", NS, "marquee-v2") in kube.objects  # left to inspect
    assert not [k for k in kube.objects if k[0] == "modelrollouts"]


def test_a_rejected_version_creates_nothing(tmp_path: Path, settings: Settings,
                                            kube: FakeKubeAPI) -> None:
    client = FakeKfpClient(settings, ["SUCCEEDED"], gate="rejected")
    trig = make_trigger(tmp_path, settings, client, kube).start()
    try:
        assert trig.handle_manual(ManualRequest(reason="drift on genre mix")).started
        assert trig.wait_idle(60)
    finally:
        trig.close()
    last = trig.store.decisions()[-1]
    assert last.decision.value == "rollout-skipped" and "gate decision rejected" in last.detail
    assert kube.objects == {} and not [r for r in kube.requests if r[0] == "POST"]


def test_a_restarted_trigger_follows_the_run_it_had_submitted(
        tmp_path: Path, settings: Settings, kube: FakeKubeAPI) -> None:
    """The process that submitted kfp-7 died while following it: the next one picks it up
    (no second submission) and rolls its version out."""
    store = StateStore(tmp_path / "retrain")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    since = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
    store.save_run(RunRecord(run_id="rt-7", model=MODEL, reason="drift", source="manual",
                             launcher="kubeflow", status=RunStatus.RUNNING, requested_at=since,
                             started_at=since, pipeline_run_id="kfp-7"))
    with store.transaction() as state:
        state.in_flight = InFlight(run_id="rt-7", model=MODEL, since=since,
                                   pid=int(dead.stdout), host=socket.gethostname())
    client = FakeKfpClient(settings, ["RUNNING", "SUCCEEDED"])
    stop, ready_at = threading.Event(), []
    play_kserve(kube, "marquee-v2", 0.05, stop, ready_at)
    trig = make_trigger(tmp_path, settings, client, kube).start()
    try:
        assert trig.wait_idle(60)
    finally:
        stop.set()
        trig.close()
    run = store.load_run("rt-7")
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert (run.model_version, run.rollout) == ("2", "retrain-shadow-v2")
    assert client.created == [] and client.polls["kfp-7"] == 2
    assert store.read().in_flight is None
    assert ("modelrollouts", NS, "retrain-shadow-v2") in kube.objects
