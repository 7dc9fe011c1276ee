"""Settings are data mirrored one to one by Helm values: every field of each deployable's
settings class has its value in the chart, and the chart sets its MARQUEE_* variable."""

from __future__ import annotations

from typing import Any

from pydantic.alias_generators import to_camel

import chartlib as c


def env_of(obj: dict[str, Any], container: str) -> dict[str, Any]:
    (pod,) = c.pod_specs(obj)
    (ctr,) = [x for x in pod["containers"] if x["name"] == container]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in ctr.get("env", [])}


def configmap(name: str) -> dict[str, str]:
    (cm,) = [o for o in c.default_objects()
             if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    return cm["data"]


def test_core_settings_are_mirrored() -> None:
    from marquee.settings import Settings

    values = c.chart_defaults()["settings"]
    # namespace: not a value, every container gets POD_NAMESPACE from its pod (below)
    fields = set(Settings.model_fields) - {"namespace"}
    assert {to_camel(f) for f in fields} == set(values)
    for o in c.default_objects():
        for pod in c.pod_specs(o):
            for ctr in pod["containers"]:
                env = {e["name"]: e for e in ctr.get("env", [])}
                assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == \
                    "metadata.namespace", o["metadata"]["name"]
    data = configmap("marquee-settings")
    always = {"home", "store_uri", "registry_uri", "model_name", "pipeline_image", "bind_host",
              "gate_tolerance", "seed"}
    for field in fields:
        if field in always or values[to_camel(field)]:
            assert f"MARQUEE_{field.upper()}" in data, field
    assert data["MARQUEE_BIND_HOST"] == "0.0.0.0"
    assert data["MARQUEE_REGISTRY_URI"] == "http://marquee-mlflow.marquee.svc.cluster.local:5000"
    assert data["MARQUEE_STORE_URI"] == "s3://marquee/marquee"
    Settings.model_validate({k.removeprefix("MARQUEE_").lower(): v for k, v in data.items()
                             if k.startswith("MARQUEE_")})


def test_model_server_settings_are_mirrored() -> None:
    from serving.settings import ServingSettings

    set_by_chart = {"model_version", "alias", "bundle_uri", "runtime", "host",
                    "payload_sink_token"}  # the token: from sink.auth.existingSecret
    values = c.chart_defaults()["modelServer"]
    assert {to_camel(f) for f in set(ServingSettings.model_fields) - set_by_chart} == set(values)
    data = configmap("marquee-model-server")
    assert "MARQUEE_SERVING_PAYLOAD_SINK_TOKEN" not in data  # a secret, never a ConfigMap value
    for field in ServingSettings.model_fields:
        if field not in set_by_chart and values[to_camel(field)] is not None:
            assert f"MARQUEE_SERVING_{field.upper()}" in data, field
    ServingSettings.model_validate({k.removeprefix("MARQUEE_SERVING_").lower(): v
                                    for k, v in data.items()})


def test_retrain_trigger_settings_are_mirrored() -> None:
    from monitoring.retrain.config import TriggerSettings

    # a Secret mounted as a file; the Service URL; the release's namespace; a mounted ConfigMap
    not_values = {"token", "token_file", "url", "namespace", "inference_service_template"}
    values = c.chart_defaults()["retrainTrigger"]
    for field in set(TriggerSettings.model_fields) - not_values:
        assert to_camel(field) in values, field
    deploy = next(o for o in c.all_feature_objects()
                  if o["kind"] == "Deployment" and o["metadata"]["name"] == "marquee-trigger")
    env = env_of(deploy, "trigger")
    for field in TriggerSettings.model_fields:
        if field == "token":
            assert "MARQUEE_RETRAIN_TOKEN" not in env  # never a plain variable
            continue
        if field in {"command", "pipeline_params"} and not values[to_camel(field)]:
            continue
        if field == "inference_service_template" and not (
                values["autoRollout"] == "shadow" and values["rolloutTarget"] == "kubernetes"):
            continue
        assert f"MARQUEE_RETRAIN_{field.upper()}" in env, field


def test_every_marquee_container_gets_the_settings_and_s3_credentials() -> None:
    for o in c.all_feature_objects():
        for pod in c.pod_specs(o):
            for ctr in pod["containers"]:
                refs = [e["configMapRef"]["name"] for e in ctr.get("envFrom", [])]
                assert "marquee-settings" in refs, o["metadata"]["name"]
                env = {e["name"]: e for e in ctr["env"]}
                ref = env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "marquee-s3", "key": "AWS_SECRET_ACCESS_KEY"}
                if o["kind"] == "InferenceService" or o["metadata"]["name"] == "marquee-sink":
                    assert "marquee-model-server" in refs


def test_inference_services_serve_their_bundle() -> None:
    objs = c.all_feature_objects()
    for o in (o for o in objs if o["kind"] == "InferenceService"):
        version = o["metadata"]["labels"]["marquee.dev/model-version"]
        pred = o["spec"]["predictor"]
        (ctr,) = pred["containers"]
        assert ctr["name"] == "kserve-container"
        assert ctr["args"][:5] == ["serve", "--runtime", "kserve", "--model-version", version]
        env = {e["name"]: e.get("value") for e in ctr["env"]}
        # the registry resolves version N; no STORAGE_URI (tests/k8s/test_k8s_models.py)
        assert "STORAGE_URI" not in env
        assert pred["logger"] == {"mode": "all",  # models.logger.enabled: on in all-features
                                  "url": "http://marquee-sink.marquee.svc.cluster.local:80/payload-sink"}
        assert {"requests", "limits"} <= set(ctr["resources"])


def test_router_settings_are_mirrored() -> None:
    from serving.router.settings import RouterSettings

    # bind host; tests only; the admin token: from router.adminAuth.existingSecret
    not_values = {"host", "fault_assignment_candidate_weight", "admin_token"}
    values = c.chart_defaults()["router"]
    fields = set(RouterSettings.model_fields) - not_values
    for field in fields:
        assert to_camel(field) in values, field
    deploy = next(o for o in c.all_feature_objects()
                  if o["kind"] == "Deployment" and o["metadata"]["name"] == "marquee-router")
    env = env_of(deploy, "router")
    for field in fields - {"upstreams"}:  # upstreams: only when given
        assert f"MARQUEE_ROUTER_{field.upper()}" in env, field
    assert env["MARQUEE_ROUTER_BASELINE_VERSION"] == "1"
    template = env["MARQUEE_ROUTER_UPSTREAM_URL_TEMPLATE"]
    isvcs = {o["metadata"]["name"] for o in c.all_feature_objects() if o["kind"] == "InferenceService"}
    for version in ("1", "2"):  # the template names the predictor Service of each version
        host = template.replace("{version}", version).split("//")[1].split(".")[0]
        assert host.removesuffix("-predictor") in isvcs
    assert env["MARQUEE_ROUTER_ADMIN_TOKEN"] == {"secretKeyRef": {  # a Secret, never a value
        "name": "marquee-router-admin-token", "key": "token"}}
    RouterSettings.model_validate({k.removeprefix("MARQUEE_ROUTER_").lower(): v
                                   for k, v in env.items() if k.startswith("MARQUEE_ROUTER_")
                                   and k != "MARQUEE_ROUTER_ADMIN_TOKEN"})


def _read_variables() -> set[str]:
    """Every MARQUEE_* variable the code reads: a field of a settings class (with its env
    prefix, or a validation alias) or a CLI option's ``envvar``."""
    import re

    from marquee.settings import Settings
    from monitoring.retrain.config import TriggerSettings
    from serving.router.settings import RouterSettings
    from serving.settings import ServingSettings

    names = c.settings_variables(Settings, ServingSettings, RouterSettings, TriggerSettings)
    for package in ("marquee", "serving", "monitoring", "components", "pipelines"):
        for path in (c.REPO / package).rglob("*.py"):
            names.update(re.findall(r'envvar="(MARQUEE_[A-Z0-9_]+)"', path.read_text()))
    return names


def test_the_chart_sets_no_marquee_variable_that_nothing_reads() -> None:
    """A MARQUEE_* variable in a container or a settings ConfigMap that no settings class or
    CLI option reads is a setting that silently does nothing (InferenceServices once carried
    MARQUEE_MODEL_VERSION, while the server reads --model-version)."""
    # extraEnv is the user's own (the all-features values put one variable there)
    known = _read_variables() | {e["name"] for e in c.all_features_values()["extraEnv"]}
    assert {"MARQUEE_SERVING_PAYLOAD_SINK_ENABLED", "MARQUEE_ROUTER_PORT",
            "MARQUEE_RETRAIN_COOLDOWN_SECONDS", "MARQUEE_NAMESPACE"} <= known
    unread: set[tuple[str, str]] = set()
    for o in c.all_feature_objects():
        name = o["metadata"]["name"]
        if o["kind"] == "ConfigMap":
            unread |= {(name, k) for k in o.get("data", {})
                       if k.startswith("MARQUEE_") and k not in known}
        for pod in c.pod_specs(o):
            for ctr in pod["containers"] + pod.get("initContainers", []):
                unread |= {(name, e["name"]) for e in ctr.get("env", [])
                           if e["name"].startswith("MARQUEE_") and e["name"] not in known}
    assert not unread, sorted(unread)
