"""What the chart serves and exposes: where each model server finds its bundle, one payload-log
path, the model servers' metrics scraped, the router's admin API kept off the Ingress, its
/feedback state on one replica, and the retrain trigger's fixed webhook path (offline renders)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

import chartlib as c

BUNDLE = "s3://marquee/marquee/models/movie-recommender/20250101T000000Z-0123abcd"


def _isvcs(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "InferenceService"}


def _container(isvc: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    (ctr,) = isvc["spec"]["predictor"]["containers"]
    return ctr["args"], {e["name"]: e.get("value") for e in ctr["env"]}


def _get(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _trigger_template(objs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = _get(objs, "ConfigMap", "marquee-trigger-isvc")
    return yaml.safe_load(cm["data"]["inferenceservice.yaml"])


# --- item 2: the bundle of each InferenceService -----------------------------------------------

def test_a_version_without_bundle_uri_is_resolved_through_the_registry() -> None:
    """A registry number names no bundle path (bundles live under <UTC stamp>-<hex>), so the
    chart sets no STORAGE_URI: KServe would fetch an empty prefix into every predictor."""
    objs = c.default_objects()
    args, env = _container(_isvcs(objs)["marquee-v1"])
    assert args[:5] == ["serve", "--runtime", "kserve", "--model-version", "1"]
    assert "STORAGE_URI" not in env
    # the retrain trigger's candidates come from the same template: no STORAGE_URI either
    args, env = _container(_trigger_template(objs))
    assert args[:5] == ["serve", "--runtime", "kserve", "--model-version", "__MARQUEE_VERSION__"]
    assert "STORAGE_URI" not in env


def test_a_version_with_bundle_uri_gets_it_as_storage_uri_and_loads_it_from_mnt_models() -> None:
    objs = c.objects({"models": {"versions": [{"version": "1"},
                                              {"version": "2", "bundleUri": BUNDLE}]}})
    isvcs = _isvcs(objs)
    args, env = _container(isvcs["marquee-v2"])
    assert env["STORAGE_URI"] == BUNDLE
    assert args[:5] == ["serve", "--runtime", "kserve", "--bundle-uri", "/mnt/models"]
    assert "--model-version" not in args  # the server refuses two references
    assert isvcs["marquee-v2"]["metadata"]["labels"]["marquee.dev/model-version"] == "2"
    args, env = _container(isvcs["marquee-v1"])
    assert "STORAGE_URI" not in env and "--model-version" in args
    schema = c.shared_schema("serving.kserve.io", "v1beta1", "InferenceService")
    assert c.errors(jsonschema.Draft7Validator, schema, isvcs["marquee-v2"]) == []


@pytest.mark.parametrize("uri", ["models/movie-recommender/1", "file:///tmp/b", "s3://bucket"])
def test_the_schema_refuses_a_bundle_uri_kserve_cannot_fetch(uri: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match="bundleUri"):
        c.render({"models": {"versions": [{"version": "1", "bundleUri": uri}]}})


def test_bundle_prefix_is_gone() -> None:
    """It only built the wrong <store>/models/<name>/<registry number>/ path."""
    import helm_python

    assert "bundlePrefix" not in c.chart_defaults()["models"]
    with pytest.raises(helm_python.HelmValuesError, match="bundlePrefix"):
        c.render({"models": {"bundlePrefix": "models"}})


def test_the_example_inferenceservice_names_no_registry_number_as_a_bundle_path() -> None:
    (_, isvc), = c.load_yaml_docs([c.K8S / "examples" / "inferenceservice-canary.yaml"])
    args, env = _container(isvc)
    if "STORAGE_URI" in env:
        assert args[3:5] == ["--bundle-uri", "/mnt/models"]
    else:
        assert args[3] == "--model-version"


# --- item 15: the example's logger URL ----------------------------------------------------------

def test_the_example_logs_payloads_once_and_any_logger_posts_to_the_sink_path() -> None:
    path = c.K8S / "examples" / "inferenceservice-canary.yaml"
    (_, isvc), = c.load_yaml_docs([path])
    sink_path = c.chart_defaults()["sink"]["loggerPath"]
    assert sink_path == "/payload-sink"  # serving.payload.sink.SINK_PATH
    from serving.payload.sink import SINK_PATH

    assert SINK_PATH == sink_path
    logger = isvc["spec"]["predictor"].get("logger")
    if logger is not None:
        assert logger["url"].split("?")[0].endswith(f":80{sink_path}"), logger
    # the URL the example documents for other model servers names the sink's path too
    text = path.read_text()
    for line in text.splitlines():
        if "marquee-sink" in line:
            assert f"{sink_path}\"" in line or f"{sink_path}?" in line, line


# --- item 5: one payload-log path by default ----------------------------------------------------

def test_by_default_only_the_model_servers_own_payload_logger_runs() -> None:
    """Marquee's server logs the features; KServe's logger to the sink would log every request
    a second time, without them (the skew job would see every feature as mismatched)."""
    objs = c.default_objects()
    assert c.chart_defaults()["models"]["logger"]["enabled"] is False
    for name, isvc in _isvcs(objs).items():
        assert "logger" not in isvc["spec"]["predictor"], name
    assert "logger" not in _trigger_template(objs)["spec"]["predictor"]
    data = _get(objs, "ConfigMap", "marquee-model-server")["data"]
    assert data["MARQUEE_SERVING_PAYLOAD_LOG_ENABLED"] == "true"
    # the option for model servers that are not Marquee's, with the sink it posts to, renders
    # the sink URL (without the sink: tests/k8s/test_k8s_sink_auth.py)
    on = c.objects({"models": {"logger": {"enabled": True}}, "sink": {"enabled": True}})
    assert _isvcs(on)["marquee-v1"]["spec"]["predictor"]["logger"]["url"] == \
        "http://marquee-sink.marquee.svc.cluster.local:80/payload-sink"


# --- item 9: the model servers' /metrics are scraped -------------------------------------------

@pytest.mark.parametrize("mode", ["RawDeployment", "Serverless"])
def test_a_servicemonitor_scrapes_every_predictor(mode: str) -> None:
    values = {"models": {"deploymentMode": mode}}
    objs = c.objects(values)
    sm = _get(objs, "ServiceMonitor", "marquee-model")
    schema = c.shared_schema("monitoring.coreos.com", "v1", "ServiceMonitor")
    assert c.errors(jsonschema.Draft7Validator, schema, sm) == []
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    # the model server's own container port, not KServe's agent in front of the Service port
    port = c.chart_defaults()["modelServer"]["port"]
    assert endpoint["targetPort"] == port
    selector = sm["spec"]["selector"]
    exprs = {e["key"]: e for e in selector["matchExpressions"]}
    assert exprs["serving.kserve.io/inferenceservice"]["operator"] == "Exists"
    assert selector["matchLabels"]["component"] == "predictor"
    # KServe copies the InferenceService's labels onto its predictor Service: every version
    # (and every retrained candidate, from the same template) matches the selector
    candidates = [*_isvcs(objs).values(), _trigger_template(objs)]
    for isvc in candidates:
        (ctr,) = isvc["spec"]["predictor"]["containers"]
        assert port in [p["containerPort"] for p in ctr["ports"]]
        labels = {**isvc["metadata"]["labels"], "component": "predictor",
                  "serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
        for key, value in selector["matchLabels"].items():
            assert labels[key] == value, (isvc["metadata"]["name"], key)
    if mode == "Serverless":  # only the revision's private Service selects the pods
        assert exprs["networking.internal.knative.dev/serviceType"]["values"] == ["Private"]
    else:
        assert "networking.internal.knative.dev/serviceType" not in exprs
    # gated like the other monitors, and kept while only retrained candidates can run (the
    # trigger's shadow rollouts), whose servers it scrapes
    def monitors(values: dict) -> list[dict]:
        return [o for o in c.objects(values) if o["kind"] == "ServiceMonitor"
                and o["metadata"]["name"] == "marquee-model"]

    assert monitors({"models": {"enabled": False}})
    for off in ({"serviceMonitor": {"enabled": False}},
                {"models": {"enabled": False}, "retrainTrigger": {"autoRollout": "none"}}):
        assert not monitors(off)


# --- item 3: the router's admin API --------------------------------------------------------------

def test_the_ingress_routes_only_the_product_api() -> None:
    ingress = _get(c.all_feature_objects(), "Ingress", "marquee-router")
    paths = [(p["path"], p["pathType"]) for rule in ingress["spec"]["rules"]
             for p in rule["http"]["paths"]]
    assert sorted(paths) == [("/feedback", "Exact"), ("/recommend", "Exact")]


def _peers(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return rule.get("from", [])


def test_with_router_ingress_from_set_only_those_peers_the_controller_and_prometheus_connect(
) -> None:
    values = c.all_features_values()
    objs = c.objects(values)
    policy = _get(objs, "NetworkPolicy", "marquee-router")
    rules = policy["spec"]["ingress"]
    assert all(_peers(r) for r in rules), "a rule without peers admits every pod"
    peers = [p for r in rules for p in _peers(r)]
    controller = _get(objs, "Deployment", "marquee-controller")
    assert {"podSelector": {"matchLabels": controller["spec"]["selector"]["matchLabels"]}} in peers
    assert {"namespaceSelector": values["networkPolicy"]["monitoringNamespaceSelector"]} in peers
    for peer in values["networkPolicy"]["routerIngressFrom"]:
        assert peer in peers
    assert len(peers) == len(values["networkPolicy"]["routerIngressFrom"]) + 2
    # the trigger calls the router's admin API only when it rolls out locally
    values["retrainTrigger"]["rolloutTarget"] = "local"
    local = _get(c.objects(values), "NetworkPolicy", "marquee-router")
    assert {"podSelector": {"matchLabels": _get(objs, "Deployment", "marquee-trigger")
                            ["spec"]["selector"]["matchLabels"]}} in \
        [p for r in local["spec"]["ingress"] for p in _peers(r)]


def test_without_an_admin_token_the_notes_warn_about_the_admin_api() -> None:
    notes = c.render()["marquee/templates/NOTES.txt"]  # the default: a token Secret
    assert "/admin/routing" not in notes
    assert 'the router\'s admin token from Secret "marquee-router-admin-token"' in notes
    values = c.chart_defaults()
    values["router"]["adminAuth"]["existingSecret"] = ""
    notes = c.render(values)["marquee/templates/NOTES.txt"]
    assert "/admin/routing" in notes and "unauthenticated" in notes
    assert "router.adminAuth.existingSecret" in notes and "networkPolicy.routerIngressFrom" in notes
    values = c.all_features_values()
    values["router"]["adminAuth"]["existingSecret"] = ""
    notes = c.render(values)["marquee/templates/NOTES.txt"]  # peers set: no "any pod"
    assert "unauthenticated" in notes and "any pod" not in notes


def _token_env(deploy: dict[str, Any], container: str) -> dict[str, Any] | None:
    ctr = next(x for x in deploy["spec"]["template"]["spec"]["containers"]
               if x["name"] == container)
    return next((e for e in ctr.get("env", []) if e["name"] == "MARQUEE_ROUTER_ADMIN_TOKEN"),
                None)


def test_the_router_and_its_admin_callers_read_the_admin_token_from_its_secret() -> None:
    """The router requires MARQUEE_ROUTER_ADMIN_TOKEN on /admin/*; the controller (and the
    trigger when it rolls out locally) must send the same one, from the same Secret."""
    ref = {"valueFrom": {"secretKeyRef": {"name": "marquee-router-admin-token", "key": "token"}}}
    objs = c.default_objects()
    for deploy, container in (("marquee-router", "router"),
                              ("marquee-controller", "controller")):
        env = _token_env(_get(objs, "Deployment", deploy), container)
        assert env == {"name": "MARQUEE_ROUTER_ADMIN_TOKEN", **ref}, deploy
    values = c.all_features_values()
    trigger = _get(c.objects(values), "Deployment", "marquee-trigger")
    assert _token_env(trigger, "trigger") is None  # rolloutTarget kubernetes: never calls it
    values["retrainTrigger"]["rolloutTarget"] = "local"
    trigger = _get(c.objects(values), "Deployment", "marquee-trigger")
    assert _token_env(trigger, "trigger") == {"name": "MARQUEE_ROUTER_ADMIN_TOKEN", **ref}
    values = c.chart_defaults()
    values["router"]["adminAuth"]["existingSecret"] = ""
    objs = c.objects(values)
    assert _token_env(_get(objs, "Deployment", "marquee-router"), "router") is None


# --- item 4: /feedback state lives on one router replica ---------------------------------------

def test_one_router_replica_by_default_and_client_ip_affinity_with_several() -> None:
    objs = c.default_objects()
    router = _get(objs, "Deployment", "marquee-router")
    assert router["spec"]["replicas"] == 1
    assert not [o for o in objs if o["kind"] in {"HorizontalPodAutoscaler", "PodDisruptionBudget"}]
    assert "sessionAffinity" not in _get(objs, "Service", "marquee-router")["spec"]
    ttl = c.chart_defaults()["router"]["requestStateTtlSeconds"]
    for values in ({"router": {"replicaCount": 3}},
                   {"router": {"autoscaling": {"enabled": True}}}):
        several = c.objects(values)
        spec = _get(several, "Service", "marquee-router")["spec"]
        assert spec["sessionAffinity"] == "ClientIP", values
        assert spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == int(ttl)
        assert _get(several, "PodDisruptionBudget", "marquee-router")["spec"]["minAvailable"] == 1
        assert not c.kube_validate(_get(several, "Service", "marquee-router"), "1.29")


# --- item 17: the webhook path is not a value ----------------------------------------------------

def test_the_trigger_webhook_path_is_fixed() -> None:
    import helm_python

    assert "webhookPath" not in c.chart_defaults()["retrainTrigger"]
    with pytest.raises(helm_python.HelmValuesError, match="webhookPath"):
        c.render({"retrainTrigger": {"webhookPath": "/alerts"}})
    amc = next(o for o in c.default_objects() if o["kind"] == "AlertmanagerConfig")
    (hook,) = amc["spec"]["receivers"][0]["webhookConfigs"]
    assert hook["url"].endswith("/webhook")
    assert '@app.post("/webhook")' in (c.REPO / "monitoring" / "retrain" / "app.py").read_text()
