"""A ``helm upgrade`` reaches the InferenceServices the retrain trigger created.

The chart's own InferenceServices carry ``checksum/settings`` and ``checksum/model-server``
pod annotations, so an upgrade that changes those ConfigMaps restarts them. The trigger's
candidates were created from the template ConfigMap of an earlier release and kept those
checksums forever: after an upgrade (a new S3 endpoint, payload-log setting) they ran the old
configuration. The upgrade restarts the trigger (its template changed); at start-up it now
patches the checksums of the InferenceServices it created, and nothing else.

Real here: the chart rendered with two sets of values (before and after the upgrade), the
trigger and its state on disk, the official ``kubernetes`` client over HTTP.
FAKES (no kube-apiserver, Kubeflow host or KServe on this machine): ``FakeKubeAPI`` stands in
for the API server, ``FakeKfpClient`` for ``kfp.Client``, and a thread of the test plays KServe
by marking the candidate Ready.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from marquee.settings import Settings
from monitoring.retrain.cluster import ClusterAutoRollout
from monitoring.retrain.launcher import KubeflowLauncher
from monitoring.retrain.models import ManualRequest, RunStatus
from monitoring.retrain.state import StateStore
from monitoring.retrain.trigger import RetrainTrigger
from tests.k8s import chartlib as c
from tests.monitoring.test_retrain_cluster import (  # noqa: F401 - fixtures
    FakeKfpClient,
    custom_api,
    kube,
    play_kserve,
    settings,
)
from tests.rollout.fake_kube import FakeKubeAPI

MODEL = "movie-recommender"
NS = "marquee"
CANDIDATE = ("inferenceservices", NS, "marquee-v2")
CHART_OWN = ("inferenceservices", NS, "marquee-v1")
#: What the upgrade changes: the settings ConfigMap and the model servers' ConfigMap.
UPGRADE = {"settings": {"s3EndpointUrl": "http://minio.storage.svc:9000"},
           "modelServer": {"payloadLogQueueSize": 123}}


def _named(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def template_file(tmp_path: Path, values: dict[str, Any] | None, label: str) -> Path:
    """The trigger's template as the chart mounts it, rendered with ``values``."""
    cm = _named(c.objects(values), "ConfigMap", "marquee-trigger-isvc")
    path = tmp_path / f"isvc-{label}.yaml"
    path.write_text(cm["data"]["inferenceservice.yaml"])
    return path


def trigger(tmp_path: Path, settings: Settings, kube_url: str, template: Path,
            client: FakeKfpClient | None = None) -> RetrainTrigger:
    """The trigger as the chart runs it with ``rolloutTarget: kubernetes``."""
    from kubernetes import client as k8s

    cfg = k8s.Configuration()
    cfg.host = kube_url
    rollout = ClusterAutoRollout.from_template_file(
        template, api=k8s.CustomObjectsApi(k8s.ApiClient(cfg)), namespace=NS, model_name=MODEL,
        server_ready_timeout=30, poll_seconds=0.02)
    launcher = KubeflowLauncher(settings, client=client or FakeKfpClient(settings, ["RUNNING"]),
                                poll_seconds=0.01)
    return RetrainTrigger(StateStore(tmp_path / "retrain"), launcher, default_model=MODEL,
                          after_run=rollout)


def checksum_annotations(isvc: dict[str, Any]) -> dict[str, str]:
    """The predictor's ``checksum/*`` pod annotations (what KServe copies onto its pods)."""
    ann = isvc["spec"]["predictor"].get("annotations") or {}
    return {k: v for k, v in ann.items() if k.startswith("checksum/")}


def wait_for(what: str, check: Any, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, f"not within {deadline}s: {what}"
        time.sleep(0.02)


def without_checksums(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"].pop("resourceVersion", None)
    ann = out["spec"]["predictor"].get("annotations") or {}
    out["spec"]["predictor"]["annotations"] = {k: v for k, v in ann.items()
                                               if not k.startswith("checksum/")}
    return out


def candidate_created_before_the_upgrade(tmp_path: Path, settings: Settings, kube: FakeKubeAPI,
                                         chart_versions: tuple[str, ...] = ("1",)) -> None:
    """Release 1: the chart's own InferenceServices of ``chart_versions`` (as Helm applied
    them) and the trigger's candidate marquee-v2, created (or kept, when the chart has it) by
    a real retraining run and shadow rollout."""
    values = {"models": {"versions": [{"version": v} for v in chart_versions]}}
    for v in chart_versions:
        own = _named(c.objects(values), "InferenceService", f"marquee-v{v}")
        assert custom_api(kube).create_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", NS, "inferenceservices", own)
    stop, ready_at = threading.Event(), []
    play_kserve(kube, "marquee-v2", 0.05, stop, ready_at)
    client = FakeKfpClient(settings, ["RUNNING", "SUCCEEDED"])
    trig = trigger(tmp_path, settings, kube.url, template_file(tmp_path, None, "old"), client)
    trig.start()
    try:
        assert trig.handle_manual(ManualRequest(reason="drift on genre mix")).started
        assert trig.wait_idle(60)
    finally:
        stop.set()
        trig.close()
    (run,) = trig.store.runs()
    assert run.status is RunStatus.SUCCEEDED and run.rollout == "retrain-shadow-v2", run.error


def test_a_helm_upgrade_rolls_the_triggers_inference_services_as_the_charts_own(
        tmp_path: Path, settings: Settings, kube: FakeKubeAPI,
        caplog: pytest.LogCaptureFixture) -> None:
    candidate_created_before_the_upgrade(tmp_path, settings, kube)
    old = copy.deepcopy(kube.objects[CANDIDATE])
    own_before = copy.deepcopy(kube.objects[CHART_OWN])
    rollout_before = copy.deepcopy(kube.objects[("modelrollouts", NS, "retrain-shadow-v2")])
    upgraded = checksum_annotations(_named(c.objects(UPGRADE), "InferenceService", "marquee-v1"))
    assert set(upgraded) == {"checksum/settings", "checksum/model-server"}
    assert all(checksum_annotations(old)[k] != v for k, v in upgraded.items()), \
        "the upgrade must change both ConfigMaps for this test to mean anything"

    # the upgrade: the trigger restarts with the new release's template
    n = len(kube.requests)
    trig = trigger(tmp_path, settings, kube.url, template_file(tmp_path, UPGRADE, "new"))
    trig.start()
    try:
        wait_for("the candidate's checksums are the upgraded chart's",
                 lambda: checksum_annotations(kube.objects[CANDIDATE]) == upgraded)
    finally:
        trig.close()
    new = kube.objects[CANDIDATE]
    # only the checksums changed: KServe rolls the pods, the spec is the one it was created with
    assert without_checksums(new) == without_checksums(old)
    patches = [r for r in kube.requests[n:] if r[0] == "PATCH"]
    assert patches == [("PATCH", f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/"
                        "inferenceservices/marquee-v2", "application/merge-patch+json")]
    # the chart's own InferenceService is Helm's to update, the rollout the controller's
    assert kube.objects[CHART_OWN] == own_before
    assert kube.objects[("modelrollouts", NS, "retrain-shadow-v2")] == rollout_before
    assert not [r for r in kube.requests[n:] if r[0] in ("POST", "PUT")]

    # a second start with the same release finds nothing stale and writes nothing
    n = len(kube.requests)
    caplog.set_level(logging.INFO, logger="marquee.retrain.cluster")
    again = trigger(tmp_path, settings, kube.url, template_file(tmp_path, UPGRADE, "new"))
    again.start()
    try:
        wait_for("the start-up check's summary", lambda: any(
            "checksums: up to date: 2" in r.getMessage() for r in caplog.records))
    finally:
        again.close()
    assert [r[0] for r in kube.requests[n:]] == ["GET"]


def test_an_inference_service_the_trigger_kept_and_did_not_create_is_left_to_helm(
        tmp_path: Path, settings: Settings, kube: FakeKubeAPI,
        caplog: pytest.LogCaptureFixture) -> None:
    """marquee-v2 is in ``models.versions`` already: the run's step kept it, so it is Helm's."""
    candidate_created_before_the_upgrade(tmp_path, settings, kube, chart_versions=("1", "2"))
    before = copy.deepcopy(kube.objects[CANDIDATE])
    assert "marquee.dev/started-by" not in before["metadata"].get("annotations", {})
    caplog.set_level(logging.INFO, logger="marquee.retrain.cluster")
    n = len(kube.requests)
    trig = trigger(tmp_path, settings, kube.url, template_file(tmp_path, UPGRADE, "new"))
    trig.start()
    try:
        wait_for("the start-up check's summary", lambda: any(
            "checksums: not created by the trigger, left alone: 2" in r.getMessage()
            for r in caplog.records))
    finally:
        trig.close()
    assert kube.objects[CANDIDATE] == before
    assert [r[0] for r in kube.requests[n:]] == ["GET"]


def test_an_unreachable_api_server_at_start_up_is_a_warning_not_a_crash(
        tmp_path: Path, settings: Settings, kube: FakeKubeAPI,
        caplog: pytest.LogCaptureFixture) -> None:
    """The FAKE API server is stopped before the upgraded trigger starts."""
    candidate_created_before_the_upgrade(tmp_path, settings, kube)
    kube.stop()
    caplog.set_level(logging.INFO, logger="marquee.retrain.cluster")
    trig = trigger(tmp_path, settings, kube.url, template_file(tmp_path, UPGRADE, "new"))
    trig.start()
    try:
        wait_for("a warning naming the candidate", lambda: any(
            r.levelno == logging.WARNING and "marquee-v2 not read" in r.getMessage()
            for r in caplog.records))
        assert trig._worker is not None and trig._worker.is_alive()
    finally:
        trig.close()
