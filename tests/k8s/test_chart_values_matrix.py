"""The chart as a platform team meets it: non-default combinations of values that
values.schema.json accepts render objects that are valid, secure and wired together (offline).

Each combination is checked for: a render, kubernetes-validate (strict) on core objects and the
shared CRD schemas on custom resources, non-root containers with requests and limits, no
credential as a plain variable, Services, probes and NetworkPolicies that point at ports and
pods that exist, and ServiceMonitors that scrape each pod once. Values the schema accepts must
either take effect or be refused by the schema.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest

import chartlib as c

SHARED = {
    ("serving.kserve.io", "v1beta1", "InferenceService"),
    ("monitoring.coreos.com", "v1", "PrometheusRule"),
    ("monitoring.coreos.com", "v1", "ServiceMonitor"),
}
CREDENTIAL = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|BACKEND_STORE_URI)$")

#: (id, values, release name, namespace): combinations the schema accepts.
MATRIX: list[tuple[str, dict[str, Any], str, str]] = [
    ("defaults", {}, "marquee", "marquee"),
    ("everything-off", {
        "sink": {"enabled": False}, "drift": {"enabled": False}, "skew": {"enabled": False},
        "retrainTrigger": {"enabled": False}, "mlflow": {"enabled": False},
        "settings": {"registryUri": "http://mlflow.mlflow.svc.cluster.local:5000"},
        "networkPolicy": {"enabled": False}, "serviceMonitor": {"enabled": False},
        "prometheusRule": {"enabled": False}, "alertmanagerConfig": {"enabled": False},
        "grafanaDashboard": {"enabled": False}, "models": {"enabled": False},
        "rbac": {"create": False}, "controller": {"installCRD": False}}, "marquee", "marquee"),
    ("sink-and-logger", {"sink": {"enabled": True, "replicaCount": 2},
                         "models": {"logger": {"enabled": True}}}, "marquee", "recs"),
    ("sink-token-own-logger-url", {
        "sink": {"enabled": True, "auth": {"existingSecret": "sink-token"}},
        "models": {"logger": {"enabled": True, "url": "http://sink.example/payload-sink"}},
        "modelServer": {"payloadSinkEnabled": True}}, "marquee", "marquee"),
    ("jobs-one-at-a-time", {"skew": {"enabled": False}}, "marquee", "marquee"),
    ("trigger-local-no-persistence", {
        "retrainTrigger": {"rolloutTarget": "local", "persistence": {"enabled": False}},
        "networkPolicy": {"routerIngressFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "web"}}}]}},
        "marquee", "marquee"),
    ("trigger-existing-claim-no-rollout", {
        "retrainTrigger": {"autoRollout": "none",
                           "persistence": {"existingClaim": "retrain-state"}}},
        "marquee", "marquee"),
    ("external-mlflow", {"mlflow": {"enabled": False},
                         "settings": {"registryUri": "https://mlflow.example.com"}},
     "marquee", "marquee"),
    ("autoscaled-router-ingress", {
        "router": {"autoscaling": {"enabled": True},
                   "ingress": {"enabled": True, "host": "recs.example.com",
                               "tlsSecretName": "recs-tls", "className": "nginx"}}},
     "marquee", "marquee"),
    ("several-router-replicas-no-policies", {"router": {"replicaCount": 3},
                                             "networkPolicy": {"enabled": False}},
     "marquee", "marquee"),
    ("pull-secrets-digest", {"image": {
        "pullSecrets": ["regcred", "mirror"],
        **{f"{k}Digest": "sha256:" + "1" * 64 for k in ("pipeline", "server", "router", "mlflow")},
    }}, "marquee", "marquee"),
    ("other-ports", {
        "router": {"port": 9000, "service": {"port": 8081}}, "controller": {"containerPort": 9091},
        "modelServer": {"port": 9092}, "retrainTrigger": {"port": 9093, "service": {"port": 9094}},
        "mlflow": {"containerPort": 9095, "service": {"port": 9096}},
        "sink": {"enabled": True, "service": {"port": 9097}}}, "marquee", "marquee"),
    ("serverless-canary-shadow", {
        "models": {"deploymentMode": "Serverless", "shadowPriorityClass": {"enabled": True},
                   "versions": [{"version": "1"}, {"version": "2", "canaryTrafficPercent": 10},
                                {"version": 3, "shadow": True, "minReplicas": 0}]}},
     "marquee", "marquee"),
    ("standard-mode", {"models": {"deploymentMode": "Standard"}}, "marquee", "marquee"),
    ("controller-ha", {"controller": {"replicaCount": 3}, "mlflow": {"replicaCount": 2}},
     "marquee", "marquee"),
    ("long-release", {}, "a-very-long-release-name-for-the-platform-team-abcdefghijk", "ml-prod"),
    ("overrides", {"nameOverride": "recs", "commonLabels": {"team": "recsys"}},
     "marquee-staging", "marquee-staging"),
]


def _render(values: dict[str, Any], name: str = c.RELEASE,
            namespace: str = c.NAMESPACE) -> list[dict[str, Any]]:
    return c.split(c.render(values, name=name, namespace=namespace))


def _pods(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    """(name, pod labels, pod spec) of the chart's own workloads (not KServe's predictors)."""
    return [(f"{o['kind']}/{o['metadata']['name']}", tpl["metadata"]["labels"], tpl["spec"])
            for o in objs for tpl in c.pod_templates(o)]


def _ports(spec: dict[str, Any]) -> dict[str | None, int]:
    return {p.get("name"): p["containerPort"]
            for ctr in spec["containers"] for p in ctr.get("ports", [])}


def _has_port(port: int | str, ports: dict[str | None, int]) -> bool:
    return port in ports if isinstance(port, str) else port in ports.values()


def _arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


@pytest.mark.parametrize(("values", "name", "namespace"), [m[1:] for m in MATRIX],
                         ids=[m[0] for m in MATRIX])
def test_combination_renders_valid_secure_and_wired(values: dict[str, Any], name: str,
                                                    namespace: str) -> None:
    objs = _render(values, name, namespace)
    problems: list[str] = []
    for o in objs:
        where = f"{o['kind']}/{o['metadata']['name']}"
        if c.group_of(o) not in c.KNOWN_CRD_GROUPS:
            for version in (c.KUBE_VERSIONS[0], c.KUBE_VERSIONS[-1]):
                if reason := c.kube_validate(o, version):
                    problems.append(f"{where}: Kubernetes {version}: {reason}")
        group, _, version = o["apiVersion"].partition("/")
        if (group, version, o["kind"]) in SHARED:
            schema = c.shared_schema(group, version, o["kind"])
            problems += [f"{where}: {e}" for e in c.errors(jsonschema.Draft7Validator, schema, o)]
        if o["kind"] not in {"CustomResourceDefinition", "PriorityClass"}:
            assert o["metadata"]["namespace"] == namespace, where
        for pod in c.pod_specs(o):
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            for ctr in c.containers(pod):
                who = f"{where}:{ctr['name']}"
                assert ctr["securityContext"]["runAsNonRoot"] is True, who
                assert ctr["securityContext"]["readOnlyRootFilesystem"] is True, who
                for kind in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(ctr["resources"][kind]), f"{who} {kind}"
                for env in ctr.get("env", []):
                    if CREDENTIAL.search(env["name"]):
                        assert "secretKeyRef" in env["valueFrom"], (who, env)
    assert not problems, problems

    pods = _pods(objs)
    for where, _, spec in pods:
        ports = _ports(spec)
        for ctr in spec["containers"]:
            for probe in ("livenessProbe", "readinessProbe"):
                if probe in ctr:
                    port = ctr[probe]["httpGet"]["port"]
                    assert _has_port(port, ports), f"{where} {probe} on port {port}: {ports}"
    services = [o for o in objs if o["kind"] == "Service"]
    for svc in services:
        hit = [spec for _, labels, spec in pods
               if c.selector_matches(svc["spec"]["selector"], labels)]
        assert hit, f"Service {svc['metadata']['name']} selects no pod"
        for port in svc["spec"]["ports"]:
            assert all(_has_port(port["targetPort"], _ports(spec)) for spec in hit), \
                f"Service {svc['metadata']['name']}: no container port {port['targetPort']}"
    for policy in (o for o in objs if o["kind"] == "NetworkPolicy"):
        hit = [spec for _, labels, spec in pods
               if c.selector_matches(policy["spec"]["podSelector"], labels)]
        assert hit, f"NetworkPolicy {policy['metadata']['name']} selects no pod"
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                assert all(_has_port(port["port"], _ports(spec)) for spec in hit), policy
    if any(o["kind"] == "NetworkPolicy" for o in objs):
        for where, labels, _ in pods:
            assert any(c.selector_matches(p["spec"]["podSelector"], labels)
                       for p in objs if p["kind"] == "NetworkPolicy"), f"{where}: no policy"
    for monitor in (o for o in objs if o["kind"] == "ServiceMonitor"):
        if "matchExpressions" in monitor["spec"]["selector"]:
            continue  # the model servers': KServe's predictor Services, not rendered here
        hit = [s for s in services if c.selector_matches(monitor["spec"]["selector"],
                                               s["metadata"]["labels"])]
        # two Services over the same pods would make Prometheus scrape every pod twice
        assert len(hit) == 1, (monitor["metadata"]["name"], [s["metadata"]["name"] for s in hit])
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in {p["name"] for p in hit[0]["spec"]["ports"]}


def test_router_pods_are_scraped_through_one_service_only() -> None:
    """The headless Service the controller uses to reach every router replica selects the
    same pods as the router Service: if the router's ServiceMonitor picked both, each pod
    would be two targets and every sum over the router's counters would double."""
    for values in ({}, {"router": {"autoscaling": {"enabled": True}}}):
        objs = c.objects(values)
        (monitor,) = [o for o in objs if o["kind"] == "ServiceMonitor"
                      and o["metadata"]["name"] == "marquee-router"]
        scraped = [o["metadata"]["name"] for o in objs if o["kind"] == "Service"
                   and c.selector_matches(monitor["spec"]["selector"], o["metadata"]["labels"])]
        assert scraped == ["marquee-router"], scraped
        (headless,) = [o for o in objs if o["metadata"]["name"] == "marquee-router-replicas"]
        router = next(o for o in objs if o["kind"] == "Deployment"
                      and o["metadata"]["name"] == "marquee-router")
        assert headless["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("port", [8080, 9091])
def test_the_controller_listens_on_controller_container_port(port: int) -> None:
    """Probes, Service and NetworkPolicy name the container port controller.containerPort;
    the process must listen there (`marquee rollout controller --port`, default 8080)."""
    objs = c.objects({"controller": {"containerPort": port}})
    deploy = next(o for o in objs if o["kind"] == "Deployment"
                  and o["metadata"]["name"] == "marquee-controller")
    (ctr,) = c.pod_specs(deploy)[0]["containers"]
    assert {p["name"]: p["containerPort"] for p in ctr["ports"]} == {"http": port}
    assert ctr["livenessProbe"]["httpGet"]["port"] == "http"
    listens = _arg(ctr["args"], "--port") or "8080"
    assert int(listens) == port, ctr["args"]
    # the user's args stay as given, the port comes after them
    assert ctr["args"][:4] == c.chart_defaults()["controller"]["args"]


@pytest.mark.parametrize("mode", ["RawDeployment", "Standard"])
def test_standard_mode_is_raw_deployment_for_canaries_and_autoscaling(mode: str) -> None:
    """KServe 0.15+ calls RawDeployment "Standard": plain Deployments, no Knative, so no
    canaryTrafficPercent, and the HPA autoscaler class as in RawDeployment."""
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match="Serverless mode only"):
        c.render({"models": {"deploymentMode": mode,
                             "versions": [{"version": "1"},
                                          {"version": "2", "canaryTrafficPercent": 10}]}})
    (isvc,) = [o for o in c.objects({"models": {"deploymentMode": mode}})
               if o["kind"] == "InferenceService"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"


@pytest.mark.parametrize("key", ["podSecurityContext", "containerSecurityContext"])
def test_the_schema_refuses_dropping_a_security_context(key: str) -> None:
    """`--set podSecurityContext=null` deletes the defaults; the schema accepted it and every
    pod rendered without runAsNonRoot (containers: without a read-only root, with every
    capability)."""
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match=re.escape(key)):
        c.render({key: None})


RESOURCES = [("router",), ("controller",), ("sink",), ("mlflow",), ("retrainTrigger",),
             ("models",), ("jobs",)]


@pytest.mark.parametrize("path", RESOURCES, ids=[p[0] for p in RESOURCES])
def test_the_schema_refuses_dropping_resources(path: tuple[str, ...]) -> None:
    """`<component>.resources: null` left the sink, MLflow, the trigger, the model servers and
    the jobs without requests and limits (the router and controller were already refused)."""
    import helm_python

    values: dict[str, Any] = {path[0]: {"resources": None}}
    if path[0] == "sink":
        values["sink"]["enabled"] = True
    with pytest.raises(helm_python.HelmValuesError, match="resources"):
        c.render(values)


def test_a_version_can_scale_to_zero() -> None:
    """models.versions[].minReplicas 0 (allowed by the schema; Serverless scales to zero)
    was replaced by models.minReplicas, since `default` treats 0 as unset."""
    objs = c.objects({"models": {"deploymentMode": "Serverless", "minReplicas": 2,
                                 "versions": [{"version": "1"},
                                              {"version": "2", "minReplicas": 0}]}})
    got = {o["metadata"]["name"]: o["spec"]["predictor"]["minReplicas"]
           for o in objs if o["kind"] == "InferenceService"}
    assert got == {"marquee-v1": 2, "marquee-v2": 0}


def test_the_schema_refuses_a_sink_path_the_sink_does_not_serve() -> None:
    """The sink serves its CloudEvents route at serving.payload.sink.SINK_PATH only; another
    sink.loggerPath made every logger post answered 404."""
    import helm_python

    from serving.payload.sink import SINK_PATH

    assert c.chart_defaults()["sink"]["loggerPath"] == SINK_PATH
    with pytest.raises(helm_python.HelmValuesError, match="/sink/loggerPath"):
        c.render({"sink": {"enabled": True, "loggerPath": "/events"},
                  "models": {"logger": {"enabled": True}}})


@pytest.mark.parametrize(("values", "message"), [
    ({"router": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
     "router.autoscaling: minReplicas (5) is greater than maxReplicas (2)"),
    ({"models": {"minReplicas": 4, "maxReplicas": 3}},
     "would run minReplicas 4 above maxReplicas 3"),
    ({"models": {"versions": [{"version": "1"}, {"version": "2", "minReplicas": 2,
                                                  "maxReplicas": 1}]}},
     "models: version 2 would run minReplicas 2 above maxReplicas 1"),
])
def test_minimum_replicas_above_the_maximum_fail_the_render(values: dict[str, Any],
                                                           message: str) -> None:
    """The schema cannot compare two values; the API server would refuse the object at
    install time, halfway through the release. The render fails first, naming both."""
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        c.render(values)
