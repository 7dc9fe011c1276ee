"""The chart on day two (offline renders): a model server loading a large bundle is not killed
by its liveness probe in a loop, and the router's PodDisruptionBudget never blocks a node drain."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import yaml

import chartlib as c

# Load time of a model server at 1M items, fetching aside (benchmarks/RESULTS.md, "Load time:
# 7–10 s (100k), 58–63 s (1M)"); the liveness probe alone killed it after 30 + 2·10 s.
LOAD_SECONDS_1M = 63


def _predictor_containers(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every model-server container: the chart's InferenceServices and the retrain trigger's
    template for retrained versions."""
    isvcs = [o for o in objs if o["kind"] == "InferenceService"]
    isvcs += [yaml.safe_load(o["data"]["inferenceservice.yaml"]) for o in objs
              if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "marquee-trigger-isvc"]
    return [(i["metadata"]["name"], ctr) for i in isvcs for ctr in i["spec"]["predictor"]["containers"]]


def _seconds_before_restart(ctr: dict[str, Any]) -> int:
    """How long a server that has not opened its port yet lives before the kubelet restarts it:
    the startup probe's budget when there is one (liveness waits for it), else liveness's."""
    probe = ctr.get("startupProbe") or ctr["livenessProbe"]
    return (probe.get("initialDelaySeconds", 0)
            + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3))


@pytest.mark.parametrize("objs", [c.default_objects, c.all_feature_objects],
                         ids=["default", "all-features"])
def test_a_model_server_loading_a_large_bundle_is_not_restarted(objs: Any) -> None:
    containers = _predictor_containers(objs())
    assert containers
    defaults = c.chart_defaults()
    for name, ctr in containers:
        assert "startupProbe" in ctr, f"{name}: no startupProbe, liveness kills a loading server"
        port, timeout = defaults["modelServer"]["port"], defaults["models"]["startupTimeoutSeconds"]
        probe = ctr["startupProbe"]
        # the HTTP server starts once the bundle is loaded: live means loaded
        assert probe["httpGet"] == {"path": "/v2/health/live", "port": port}, name
        assert _seconds_before_restart(ctr) >= timeout >= 2 * LOAD_SECONDS_1M, name


def test_the_startup_budget_is_a_value_and_the_schema_bounds_it() -> None:
    import helm_python

    objs = c.objects({"models": {"startupTimeoutSeconds": 1205}})
    for name, ctr in _predictor_containers(objs):
        assert _seconds_before_restart(ctr) == 10 * math.ceil(1205 / 10), name
    with pytest.raises(helm_python.HelmValuesError, match="startupTimeoutSeconds"):
        c.render({"models": {"startupTimeoutSeconds": 0}})


def _pdbs(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == "PodDisruptionBudget"]


def _disruptions_allowed(min_available: int | str, pods: int) -> int:
    """What the disruption controller computes for ``pods`` healthy pods (a percentage of
    minAvailable is rounded up)."""
    if isinstance(min_available, str):
        min_available = math.ceil(int(min_available.rstrip("%")) * pods / 100)
    return pods - min_available


@pytest.mark.parametrize("router", [
    {"autoscaling": {"enabled": True, "minReplicas": 1}},
    {"autoscaling": {"enabled": True, "minReplicas": 1}, "pdb": {"minAvailable": "50%"}},
    {"autoscaling": {"enabled": True, "minReplicas": 2}},
    {"replicaCount": 2},
    {"replicaCount": 3, "pdb": {"minAvailable": "60%"}},
])
def test_the_router_budget_allows_a_drain_at_the_fewest_replicas(router: dict[str, Any]) -> None:
    """The HPA may sit at autoscaling.minReplicas for as long as traffic is low: a budget that
    allows no disruption there blocks every drain of that node for as long."""
    values = {"router": router, "settings": {"prometheusUrl": "http://prometheus:9090"}}
    merged = c.chart_defaults()["router"]
    fewest = (router["autoscaling"].get("minReplicas", merged["autoscaling"]["minReplicas"])
              if router.get("autoscaling", {}).get("enabled") else router["replicaCount"])
    for pdb in _pdbs(c.objects(values)):
        allowed = _disruptions_allowed(pdb["spec"]["minAvailable"], fewest)
        assert allowed >= 1, f"{router}: {pdb['spec']} allows {allowed} disruptions of {fewest} pods"
    if fewest > 1:  # a budget is still there when it can protect something
        assert _pdbs(c.objects(values)), router


@pytest.mark.parametrize("router", [
    {"replicaCount": 2, "pdb": {"minAvailable": 2}},
    {"replicaCount": 3, "pdb": {"minAvailable": "100%"}},
    {"autoscaling": {"enabled": True, "minReplicas": 2}, "pdb": {"minAvailable": "75%"}},
])
def test_a_budget_that_allows_no_disruption_fails_the_render(router: dict[str, Any]) -> None:
    import helm_python

    values = {"router": router, "settings": {"prometheusUrl": "http://prometheus:9090"}}
    value = router["pdb"]["minAvailable"]
    with pytest.raises(helm_python.HelmRenderError,
                       match=re.escape(f"router.pdb.minAvailable {value}")):
        c.render(values)


def _predictors(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    isvcs = [o for o in objs if o["kind"] == "InferenceService"]
    isvcs += [yaml.safe_load(o["data"]["inferenceservice.yaml"]) for o in objs
              if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "marquee-trigger-isvc"]
    return [(i["metadata"]["name"], i["spec"]["predictor"]) for i in isvcs]


def test_a_stopping_model_server_has_time_to_drain_and_write_its_payload_log() -> None:
    """On SIGTERM the server answers what is in flight (modelServer.gracePeriodSeconds, 20 s),
    then writes its queued payload rows (PayloadLogger.close: up to 30 s): the pod's default
    30 s killed it before the rows were written. RawDeployment only: Knative refuses the
    field (its revision timeout applies)."""
    from serving.payload.logger import PayloadLogger

    close = PayloadLogger.close.__defaults__[0]
    grace = c.chart_defaults()["modelServer"]["gracePeriodSeconds"]
    predictors = _predictors(c.default_objects())
    assert predictors
    for name, predictor in predictors:
        assert predictor.get("terminationGracePeriodSeconds", 30) > grace + close, name
    for name, predictor in _predictors(c.objects({"models": {"deploymentMode": "Serverless"}})):
        assert "terminationGracePeriodSeconds" not in predictor, name
