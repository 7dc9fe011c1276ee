"""Every rendered object is valid for the cluster: core objects against the Kubernetes
OpenAPI schemas of 1.29–1.33 (kubernetes-validate, strict), custom resources against their
CRD schemas from ../shared/schemas with unknown fields rejected."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

import chartlib as c

RENDERS = {"defaults": c.default_objects, "all-features": c.all_feature_objects}
# The shared schemas we hold (group, version, kind); AlertmanagerConfig has none there.
SHARED = {
    ("serving.kserve.io", "v1beta1", "InferenceService"),
    ("monitoring.coreos.com", "v1", "PrometheusRule"),
    ("monitoring.coreos.com", "v1", "ServiceMonitor"),
}


kube_validate = c.kube_validate


def test_cached_validation_agrees_with_kubernetes_validate() -> None:
    """chartlib.kube_validate caches kubernetes-validate's validators; same verdicts."""
    import kubernetes_validate

    objs = c.all_feature_objects()
    core = [o for o in objs if c.group_of(o) not in c.KNOWN_CRD_GROUPS]
    bad = copy.deepcopy(next(o for o in core if o["kind"] == "Deployment"))
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    for o in [*core, bad]:
        try:
            kubernetes_validate.validate(o, "1.31", strict=True)
            theirs = True
        except kubernetes_validate.ValidationError:
            theirs = False
        assert (kube_validate(o, "1.31") is None) == theirs, o["metadata"]["name"]
    assert kube_validate(bad, "1.31")


@pytest.mark.parametrize("version", c.KUBE_VERSIONS)
@pytest.mark.parametrize("render", sorted(RENDERS))
def test_core_objects_validate_strictly(render: str, version: str) -> None:
    objs = RENDERS[render]()
    core = [o for o in objs if c.group_of(o) not in c.KNOWN_CRD_GROUPS]
    assert len(core) >= 30
    failures = {f"{o['kind']}/{o['metadata']['name']}": r for o in objs
                if (r := kube_validate(o, version))}
    assert not failures, failures


def test_validation_is_not_vacuous() -> None:
    """Negative controls: an unknown field, a wrong type and a removed API version fail."""
    deploy = next(o for o in c.default_objects() if o["kind"] == "Deployment")
    typo = copy.deepcopy(deploy)
    typo["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRoot"] = True
    assert kube_validate(typo, "1.33")
    wrong = copy.deepcopy(deploy)
    wrong["spec"]["replicas"] = "two"
    assert kube_validate(wrong, "1.29")
    cron = next(o for o in c.default_objects() if o["kind"] == "CronJob")
    old = {**copy.deepcopy(cron), "apiVersion": "batch/v1beta1"}
    assert (kube_validate(old, "1.30") or "").startswith("no schema")


@pytest.mark.parametrize("render", sorted(RENDERS))
def test_custom_resources_validate_against_the_shared_crd_schemas(render: str) -> None:
    objs = RENDERS[render]()
    checked = 0
    for o in objs:
        group, _, version = o["apiVersion"].partition("/")
        if (group, version, o["kind"]) not in SHARED:
            continue
        errs = c.errors(jsonschema.Draft7Validator, c.shared_schema(group, version, o["kind"]), o)
        assert not errs, (o["kind"], o["metadata"]["name"], errs[:5])
        checked += 1
    kinds = {o["kind"] for o in objs}
    assert {"InferenceService", "PrometheusRule", "ServiceMonitor"} <= kinds
    assert checked >= 6


def test_example_inferenceservice_canary_validates() -> None:
    (path, isvc), = c.load_yaml_docs([c.K8S / "examples" / "inferenceservice-canary.yaml"])
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    schema = c.shared_schema("serving.kserve.io", "v1beta1", "InferenceService")
    assert c.errors(jsonschema.Draft7Validator, schema, isvc) == []


def test_shared_schema_validation_rejects_unknown_fields() -> None:
    isvc = next(o for o in c.default_objects() if o["kind"] == "InferenceService")
    schema = c.shared_schema("serving.kserve.io", "v1beta1", "InferenceService")
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["containers"][0]["bogus"] = 1
    assert any("bogus" in e for e in c.errors(jsonschema.Draft7Validator, schema, bad))
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    assert c.errors(jsonschema.Draft7Validator, schema, bad)
    rule = next(o for o in c.default_objects() if o["kind"] == "PrometheusRule")
    bad = copy.deepcopy(rule)
    bad["spec"]["groups"][0]["rules"][0]["fore"] = "5m"
    schema = c.shared_schema("monitoring.coreos.com", "v1", "PrometheusRule")
    assert any("fore" in e for e in c.errors(jsonschema.Draft7Validator, schema, bad))


def test_alertmanagerconfig_routes_to_the_trigger_webhook() -> None:
    """No schema for AlertmanagerConfig is held in ../shared/schemas: check its shape."""
    objs = c.default_objects()
    (amc,) = [o for o in objs if o["kind"] == "AlertmanagerConfig"]
    assert amc["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    route = amc["spec"]["route"]
    (receiver,) = amc["spec"]["receivers"]
    assert route["receiver"] == receiver["name"]
    (hook,) = receiver["webhookConfigs"]
    svc = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "marquee-trigger")
    assert hook["url"] == (f"http://marquee-trigger.{c.NAMESPACE}.svc.cluster.local:"
                           f"{svc['spec']['ports'][0]['port']}/webhook")
    auth = hook["httpConfig"]["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials"]["name"] == "marquee-retrain-token"
