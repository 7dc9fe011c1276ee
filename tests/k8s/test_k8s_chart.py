"""The chart renders, lints clean, documents its values and refuses bad ones (offline)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
import yaml

import chartlib as c

CORE_KINDS = {
    "ConfigMap", "Deployment", "Service", "ServiceAccount", "HorizontalPodAutoscaler",
    "PodDisruptionBudget", "CronJob", "Role", "RoleBinding", "NetworkPolicy",
    "CustomResourceDefinition", "PersistentVolumeClaim",
}
CR_KINDS = {"InferenceService", "ServiceMonitor", "PrometheusRule", "AlertmanagerConfig"}
SEVERAL_ROUTERS_KINDS = {"HorizontalPodAutoscaler", "PodDisruptionBudget"}


def kinds(objs: list[dict[str, Any]]) -> Counter[str]:
    return Counter(o["kind"] for o in objs)


def by_kind_name(objs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


# --- rendering -----------------------------------------------------------------------------

def test_renders_with_default_values() -> None:
    objs = c.default_objects()
    # one router replica by default: no HPA, and no budget that would block every drain
    assert set(kinds(objs)) == CORE_KINDS - SEVERAL_ROUTERS_KINDS | CR_KINDS
    names = by_kind_name(objs)
    for component in ("router", "controller", "trigger", "mlflow"):
        assert ("Deployment", f"marquee-{component}") in names
    # the payload-log sink is off by default (KServe's logger is): tests/k8s/test_k8s_sink_auth.py
    assert not [key for key in names if key[1] == "marquee-sink"]
    for job in ("drift", "skew"):
        assert names[("CronJob", f"marquee-{job}")]["apiVersion"] == "batch/v1"
    assert ("CustomResourceDefinition", "modelrollouts.marquee.dev") in names
    (isvc,) = [o for o in objs if o["kind"] == "InferenceService"]
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert ("Ingress", "marquee-router") not in names


def test_renders_with_every_optional_feature_on() -> None:
    objs = c.all_feature_objects()
    assert set(kinds(objs)) >= CORE_KINDS | CR_KINDS | {"Ingress", "PriorityClass"}
    names = by_kind_name(objs)
    ingress = names[("Ingress", "marquee-router")]
    assert ingress["spec"]["rules"][0]["host"] == "recs.example.com"
    isvcs = {o["metadata"]["name"]: o for o in objs if o["kind"] == "InferenceService"}
    assert set(isvcs) == {"marquee-v1", "marquee-v2", "marquee-v3"}
    assert isvcs["marquee-v2"]["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert "canaryTrafficPercent" not in isvcs["marquee-v1"]["spec"]["predictor"]
    settings_cm = names[("ConfigMap", "marquee-settings")]
    assert settings_cm["data"]["MARQUEE_PUSHGATEWAY_URL"] == \
        "http://pushgateway.monitoring.svc.cluster.local:9091"
    assert all(o["metadata"]["labels"]["team"] == "recsys" for o in objs)


def test_shadow_version_yields_to_serving_versions() -> None:
    """A shadow candidate runs at the chart's lower PriorityClass (never preempting) and
    prefers nodes without the serving versions' pods; serving versions are untouched."""
    values = c.chart_defaults()
    values["models"]["versions"] = [{"version": "1"}, {"version": "2", "shadow": True}]
    values["models"]["shadowPriorityClass"]["enabled"] = True
    values["affinity"] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["ml"]}]}}]}}
    objs = c.objects(values)
    names = by_kind_name(objs)
    pc = names[("PriorityClass", "marquee-marquee-shadow")]  # <fullname>-<namespace>-shadow
    assert pc["value"] < 0 and pc["preemptionPolicy"] == "Never" and not pc["globalDefault"]
    serving = names[("InferenceService", "marquee-v1")]["spec"]["predictor"]
    shadow = names[("InferenceService", "marquee-v2")]["spec"]["predictor"]
    assert serving["labels"]["marquee.dev/tier"] == "serving"
    assert shadow["labels"]["marquee.dev/tier"] == "shadow"
    assert "priorityClassName" not in serving and "podAntiAffinity" not in serving["affinity"]
    assert shadow["priorityClassName"] == "marquee-marquee-shadow"
    # cluster-scoped: the same release name in another namespace names another class
    other = c.split(c.render(values, namespace="recs-eu"))
    assert [o["metadata"]["name"] for o in other if o["kind"] == "PriorityClass"] == [
        "marquee-recs-eu-shadow"]
    anti = shadow["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == {
        "app.kubernetes.io/instance": "marquee", "marquee.dev/tier": "serving"}
    # the chart-wide affinity is kept beside the shadow's own term, on both
    assert shadow["affinity"]["nodeAffinity"] == serving["affinity"]["nodeAffinity"]
    # an explicit class wins; without a created or named class a shadow gets none
    values["models"]["versions"][1]["priorityClassName"] = "batch-low"
    values["models"]["shadowPriorityClass"]["enabled"] = False
    names = by_kind_name(c.objects(values))
    shadow = names[("InferenceService", "marquee-v2")]["spec"]["predictor"]
    assert shadow["priorityClassName"] == "batch-low"
    assert not any(kind == "PriorityClass" for kind, _ in names)
    del values["models"]["versions"][1]["priorityClassName"]
    names = by_kind_name(c.objects(values))
    shadow = names[("InferenceService", "marquee-v2")]["spec"]["predictor"]
    assert "priorityClassName" not in shadow


def _flags(node: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(node, dict):
        return []
    found = [path + (k,) for k, v in node.items() if k == "enabled"]
    for k, v in node.items():
        found += _flags(v, path + (k,))
    return found


def _set(values: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    node = values
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return values


ENABLED_FLAGS = sorted(_flags(c.chart_defaults()))


def test_every_enabled_flag_is_a_real_boolean() -> None:
    defaults = c.chart_defaults()
    assert len(ENABLED_FLAGS) >= 12
    for path in ENABLED_FLAGS:
        node: Any = defaults
        for key in path:
            node = node[key]
        assert isinstance(node, bool), ".".join(path)


@pytest.mark.parametrize("flag", ENABLED_FLAGS, ids=[".".join(p) for p in ENABLED_FLAGS])
def test_each_enabled_flag_switches_objects(flag: tuple[str, ...]) -> None:
    """Flipping a flag changes what is rendered (so none of them is decorative)."""
    on = c.all_features_values()
    off = _set(c.all_features_values(), flag, False)
    if flag == ("mlflow", "enabled"):  # an external registry replaces the in-chart one
        off["settings"]["registryUri"] = "http://mlflow.mlflow.svc.cluster.local:5000"
    if flag == ("sink", "enabled"):  # KServe's logger (on here) then needs a sink of its own
        off["models"]["logger"]["url"] = "http://sink.example.svc.cluster.local/payload-sink"
    assert c.objects(off) != c.objects(on), f"{'.'.join(flag)}=false changes nothing"
    with_it = {(o["kind"], o["metadata"]["name"]) for o in c.objects(on)}
    without = {(o["kind"], o["metadata"]["name"]) for o in c.objects(off)}
    assert without <= with_it, f"{'.'.join(flag)}=false adds objects"


def test_names_fit_in_63_characters_even_for_a_long_release() -> None:
    release = "a-very-long-release-name-for-a-platform-team-that-likes-it"
    objs = c.split(c.render(name=release))
    seen: set[tuple[str, str]] = set()
    for o in objs:
        name = o["metadata"]["name"]
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), name
        assert (o["kind"], name) not in seen, f"duplicate {o['kind']} {name}"
        seen.add((o["kind"], name))
    (isvc,) = [o for o in objs if o["kind"] == "InferenceService"]
    assert isvc["metadata"]["name"].endswith("-v1") and len(isvc["metadata"]["name"]) <= 45
    # the API server refuses CronJob names over 52 characters; Helm allows releases of 53
    for release in (release, "x" * 39, "y" * 53):
        cronjobs = [o for o in c.split(c.render(name=release)) if o["kind"] == "CronJob"]
        assert {o["metadata"]["name"].rsplit("-", 1)[-1] for o in cronjobs} == {"drift", "skew"}
        assert all(len(o["metadata"]["name"]) <= 52 for o in cronjobs), release


def test_standard_labels_on_every_object_and_pod() -> None:
    required = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                "app.kubernetes.io/component", "app.kubernetes.io/part-of",
                "app.kubernetes.io/managed-by", "helm.sh/chart"}
    for o in c.all_feature_objects():
        assert required <= set(o["metadata"]["labels"]), (o["kind"], o["metadata"]["name"])
        if o["kind"] not in {"CustomResourceDefinition", "PriorityClass"}:  # cluster-scoped
            assert o["metadata"]["namespace"] == c.NAMESPACE
        if o["kind"] in {"Deployment", "CronJob"}:
            tpl = (o["spec"]["template"] if o["kind"] == "Deployment"
                   else o["spec"]["jobTemplate"]["spec"]["template"])
            assert required <= set(tpl["metadata"]["labels"])


def test_one_kind_per_template_file_grouped_by_component() -> None:
    manifests = c.render(c.all_features_values())
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        component = path.split("/")[2]
        assert component in {"settings", "router", "controller", "models", "sink", "mlflow",
                             "trigger", "jobs", "monitoring"}, path
        docs = [d for d in yaml.safe_load_all(text) if d]
        assert len({d["kind"] for d in docs}) <= 1, path


def test_notes_say_what_to_do_next() -> None:
    notes = c.render()["marquee/templates/NOTES.txt"]
    assert "port-forward svc/marquee-router" in notes
    assert "k8s/examples/rollout-canary.yaml" in notes
    assert "marquee-s3" in notes


# --- lint ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kube_version", ["v1.29.0", "v1.33.0"])
@pytest.mark.parametrize("features", ["defaults", "all-features"])
def test_lint_strict_reports_no_warning_or_error(kube_version: str, features: str) -> None:
    import helm_python

    values = c.with_store(None) if features == "defaults" else c.all_features_values()
    report = helm_python.lint(c.CHART, values, strict=True, kube_version=kube_version)
    bad = [m for m in report["messages"] if m["severity"] >= 2]
    assert not bad and not report["errors"], report


# --- required values and the values schema ------------------------------------------------

def test_canary_traffic_percent_in_raw_deployment_mode_fails_render() -> None:
    """KServe splits one InferenceService's traffic in Serverless mode only; before, the chart
    rendered the field in the default RawDeployment mode, where it does nothing."""
    import helm_python

    with pytest.raises(helm_python.HelmRenderError,
                       match="version 2 sets canaryTrafficPercent, which KServe supports in "
                             "Serverless mode only"):
        c.render({"models": {"versions": [{"version": "1"},
                                          {"version": "2", "canaryTrafficPercent": 10}]}})


REQUIRED_CASES = [
    ({"mlflow": {"enabled": False}},
     "settings.registryUri is required when mlflow.enabled is false"),
    ({"router": {"ingress": {"enabled": True}}},
     "router.ingress.host is required when router.ingress.enabled is true"),
]


@pytest.mark.parametrize(("values", "message"), REQUIRED_CASES, ids=["registryUri", "ingressHost"])
def test_missing_required_value_fails_render_with_its_message(values: dict, message: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        c.render(values)


@pytest.mark.parametrize(("values", "message"), REQUIRED_CASES, ids=["registryUri", "ingressHost"])
def test_missing_required_value_is_reported_by_lint(values: dict, message: str) -> None:
    """Helm's lint only logs a failed ``required`` (a warning on stderr, not in the report),
    so lint runs in a child process and its log is read."""
    code = ("import json, sys, helm_python\n"
            f"r = helm_python.lint({str(c.CHART)!r}, json.loads(sys.argv[1]), strict=True)\n"
            "print(json.dumps(r))\n")
    import json

    proc = subprocess.run([sys.executable, "-c", code, json.dumps(c.with_store(values))],
                          capture_output=True, text=True, timeout=60, check=True)
    assert "missing required value" in proc.stderr and message in proc.stderr, proc.stderr


SCHEMA_CASES = [
    ({"settings": {"storeUri": ""}}, "/settings/storeUri"),
    ({"settings": {"storeUri": "gs://bucket/x"}}, "/settings/storeUri"),
    ({"router": {"autoscaling": {"enabled": "true"}}}, "/router/autoscaling/enabled': got string, want boolean"),
    ({"models": {"versions": [{"version": "2", "canaryTrafficPercent": 150}]}},
     "/models/versions/0/canaryTrafficPercent': maximum: got 150, want 100"),
    ({"models": {"versions": [{"version": "latest"}]}}, "/models/versions/0/version"),
    ({"mlflow": {"database": {"existingSecret": ""}}}, "/mlflow/database/existingSecret"),
    ({"retrainTrigger": {"auth": {"existingSecret": ""}}}, "/retrainTrigger/auth/existingSecret"),
    ({"s3": {"existingSecret": ""}}, "/s3/existingSecret"),
    ({"containerSecurityContext": {"readOnlyRootFilesystem": False}},
     "/containerSecurityContext/readOnlyRootFilesystem': value must be true"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
    ({"router": {"replicas": 3}}, "additional properties 'replicas' not allowed"),
    ({"drift": {"schedule": "every hour"}}, "/drift/schedule"),
    ({"modelServer": {"targetRecall": 1.5}}, "/modelServer/targetRecall"),
    ({"retrainTrigger": {"launcher": "airflow"}}, "/retrainTrigger/launcher"),
]


@pytest.mark.parametrize(("values", "message"), SCHEMA_CASES,
                         ids=[m.split("'")[0].strip("/") or m for _, m in SCHEMA_CASES])
def test_values_schema_rejects_bad_values_naming_the_key(values: dict, message: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        c.render(values)


def test_lint_reports_a_schema_violation_as_an_error() -> None:
    import helm_python

    report = helm_python.lint(c.CHART, {"settings": {"storeUri": ""}}, strict=True)
    errors = [m["error"] for m in report["messages"] if m["severity"] == 3]
    assert any("/settings/storeUri" in e for e in errors), report


def test_default_values_with_a_store_satisfy_the_schema() -> None:
    import helm_python

    with helm_python.Chart.load(c.CHART) as chart:
        chart.validate_schema(c.chart_defaults())
        chart.validate_schema(c.all_features_values())


def test_an_install_without_a_store_fails_naming_settings_store_uri() -> None:
    """The chart has no default store: before, it installed with s3://marquee/marquee, a
    bucket of that name that is not the user's, and every component read and wrote it."""
    import helm_python

    assert yaml.safe_load((c.CHART / "values.yaml").read_text())["settings"]["storeUri"] == ""
    with helm_python.Chart.load(c.CHART) as chart, \
            pytest.raises(helm_python.HelmValuesError, match="/settings/storeUri"):
        chart.render(None, name=c.RELEASE, namespace=c.NAMESPACE, is_install=True)
    report = helm_python.lint(c.CHART, None, strict=True)
    errors = [m["error"] for m in report["messages"] if m["severity"] == 3]
    assert any("/settings/storeUri" in e for e in errors), report


# --- documentation of values ----------------------------------------------------------------

def _leaves(node: Any, path: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        out: list[str] = []
        for k, v in node.items():
            out += _leaves(v, f"{path}.{k}" if path else k)
        return out
    return [path]


def test_every_value_is_documented_with_a_param_line() -> None:
    text = (c.CHART / "values.yaml").read_text()
    documented = set(re.findall(r"^\s*## @param (\S+) \S", text, flags=re.M))
    leaves = set(_leaves(c.chart_defaults()))
    missing = {leaf for leaf in leaves
               if leaf not in documented and not any(leaf.startswith(d + ".") for d in documented)}
    assert not missing, f"values without '## @param': {sorted(missing)}"
    unknown = {d for d in documented
               if d not in leaves and not any(leaf.startswith(d + ".") for leaf in leaves)}
    assert not unknown, f"'## @param' for keys that do not exist: {sorted(unknown)}"


MAP_VALUES = {"labels", "annotations", "commonLabels", "nodeSelector", "matchLabels",
              "pipelineParams"}  # keys below these are user data (label names …), not values


def test_values_use_camel_case_keys() -> None:
    for leaf in _leaves(c.chart_defaults()):
        for key in leaf.split("."):
            assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", key), leaf
            if key in MAP_VALUES:
                break


# --- the controller reaches every router replica ---------------------------------------------
def test_controller_applies_routing_to_every_router_replica_through_a_headless_service() -> None:
    objs = c.default_objects()
    router = next(o for o in objs if o["kind"] == "Deployment"
                  and o["metadata"]["name"].endswith("-router"))
    (svc,) = [o for o in objs if o["kind"] == "Service"
              and o["metadata"]["name"].endswith("-router-replicas")]
    assert svc["spec"]["clusterIP"] == "None"  # DNS answers with every ready pod
    assert svc["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]
    (pod,) = c.pod_specs(router)
    (ctr,) = pod["containers"]
    (port,) = [p["containerPort"] for p in ctr["ports"] if p["name"] == "http"]
    controller = next(o for o in objs if o["kind"] == "Deployment"
                      and o["metadata"]["name"].endswith("-controller"))
    (cpod,) = c.pod_specs(controller)
    env = {e["name"]: e.get("value") for e in cpod["containers"][0]["env"]}
    host = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local"
    assert env["MARQUEE_ROUTER_REPLICAS_URL"] == f"http://{host}:{port}"
    # Without Prometheus the controller reads one replica's /admin/stats: refused with
    # several replicas, valid with one.
    import helm_python

    with pytest.raises(helm_python.HelmRenderError,
                       match="settings.prometheusUrl is empty but the router runs several"):
        c.render({"settings": {"prometheusUrl": ""}, "router": {"autoscaling": {"enabled": True}}})
    with pytest.raises(helm_python.HelmRenderError,
                       match="settings.prometheusUrl is empty but the router runs several"):
        c.render({"settings": {"prometheusUrl": ""}, "router": {"replicaCount": 2}})
    one = c.objects({"settings": {"prometheusUrl": ""},
                     "router": {"autoscaling": {"enabled": False}, "replicaCount": 1}})
    assert any(o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-controller")
               for o in one)


def _trigger(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == "Deployment"
                and o["metadata"]["name"] == "marquee-trigger")


@pytest.mark.parametrize("persistence, claim", [
    ({}, "marquee-trigger-state"),
    ({"existingClaim": "retrain-state"}, "retrain-state"),
    ({"enabled": False}, None),
])
def test_the_triggers_state_lives_on_a_volume_that_outlives_the_pod(
        persistence: dict[str, Any], claim: str | None) -> None:
    """Cooldowns, deduplicated alerts and the Kubeflow run being followed survive a replaced
    trigger pod only when MARQUEE_HOME (where monitoring.retrain keeps them) is the claim."""
    objs = c.objects({"retrainTrigger": {"persistence": persistence}})
    pod = _trigger(objs)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    pvcs = [o["metadata"]["name"] for o in objs if o["kind"] == "PersistentVolumeClaim"]
    if claim is None:
        assert "state" not in volumes and "MARQUEE_HOME" not in env and not pvcs
        return
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim
    assert env["MARQUEE_HOME"] == mounts["state"] == "/var/lib/marquee"
    assert pvcs == ([claim] if not persistence else [])
    # the settings ConfigMap's MARQUEE_HOME (/tmp…) is overridden: env wins over envFrom
    assert "MARQUEE_HOME" in next(o for o in objs if o["kind"] == "ConfigMap"
                                  and o["metadata"]["name"] == "marquee-settings")["data"]


def test_the_triggers_automatic_shadow_rollout_mirrors_a_quarter_of_requests() -> None:
    """The chart's MARQUEE_RETRAIN_ROLLOUT_SPEC, merged the way the trigger merges it, is a
    valid ModelRollout whose shadow samples 0.25 of requests (the rate at which a shadow on its
    own node kept user p99 within 10%: benchmarks/RESULTS.md, Shadow, session I)."""
    import json

    from monitoring.retrain.rollout import rollout_document
    from serving.rollout.spec import parse_rollout

    (container,) = _trigger(c.default_objects())["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    doc = rollout_document("movie-recommender", "7",
                           json.loads(env["MARQUEE_RETRAIN_ROLLOUT_SPEC"]))
    spec = parse_rollout(doc, "chart").spec
    assert (spec.strategy, spec.candidate.version) == ("shadow", "7")
    assert spec.shadow.sample_rate == 0.25
