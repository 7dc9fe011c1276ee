"""Shared helpers of the Kubernetes tests: render the chart offline, split manifests into
objects, and turn CRD OpenAPI schemas into JSON Schema for strict offline validation.

Everything here is offline: helm-python-sdk renders in process, the CRD schemas come from
``../shared/schemas`` (beside the repository) and from the chart's own CRD template.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "marquee"
SHARED_SCHEMAS = REPO.parent / "shared" / "schemas"
K8S = REPO / "k8s"
RELEASE = "marquee"
NAMESPACE = "marquee"
KUBE_VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33")
# API groups whose kinds are custom resources: kubernetes-validate has no schema for them,
# they are checked against their CRD schemas instead. Any other "no schema" is a failure.
KNOWN_CRD_GROUPS = frozenset({"serving.kserve.io", "monitoring.coreos.com", "marquee.dev"})


# The store the tests install with (the chart has no default; k8s/render.py's placeholder).
STORE = "s3://marquee/marquee"


def with_store(values: dict[str, Any] | None) -> dict[str, Any]:
    """``values`` with ``settings.storeUri`` set to :data:`STORE` unless they set it."""
    out = copy.deepcopy(values) if values else {}
    out.setdefault("settings", {}).setdefault("storeUri", STORE)
    return out


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE,
           namespace: str = NAMESPACE) -> dict[str, str]:
    """``{template path: manifest}`` of the chart, rendered like ``helm install`` with
    ``values`` (over the chart's defaults and :data:`STORE`)."""
    import helm_python

    with helm_python.Chart.load(CHART) as chart:
        return chart.render(with_store(values), name=name, namespace=namespace,
                            is_install=True)


@functools.lru_cache(maxsize=8)
def _objects_cached(key: str) -> str:
    return json.dumps(split(render(json.loads(key))))


def objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rendered objects (a fresh copy of a cached render)."""
    return json.loads(_objects_cached(json.dumps(values, sort_keys=True)))


def default_objects() -> list[dict[str, Any]]:
    return objects(None)


def all_feature_objects() -> list[dict[str, Any]]:
    return objects(all_features_values())


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def split(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """Every object of a render, in template order (NOTES.txt left out)."""
    objs: list[dict[str, Any]] = []
    for path in sorted(manifests):
        if path.endswith("NOTES.txt"):
            continue
        objs.extend(d for d in yaml.safe_load_all(manifests[path]) if d)
    return objs


def chart_defaults() -> dict[str, Any]:
    """values.yaml, with :data:`STORE` as ``settings.storeUri`` (which has no default)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    values["settings"]["storeUri"] = STORE
    return values


def _enable_all(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (True if k == "enabled" and isinstance(v, bool) else _enable_all(v))
                for k, v in node.items()}
    return node


def all_features_values() -> dict[str, Any]:
    """Every ``enabled`` flag of values.yaml set to true, plus what the optional features need
    and every optional value filled in (canary, pull secrets, Pushgateway, S3 endpoint …)."""
    values = _enable_all(chart_defaults())
    values["router"]["ingress"].update(host="recs.example.com", className="nginx",
                                       tlsSecretName="recs-tls",
                                       annotations={"example.com/team": "recsys"})
    values["models"]["deploymentMode"] = "Serverless"  # canaryTrafficPercent needs it
    values["models"]["versions"] = [
        {"version": "1"},
        {"version": "2", "canaryTrafficPercent": 10, "minReplicas": 2, "maxReplicas": 4},
        {"version": "3", "shadow": True},
    ]
    values["models"]["extraArgs"] = ["--log-level", "info"]
    values["image"]["pullSecrets"] = ["regcred"]
    values["settings"]["pushgatewayUrl"] = "http://pushgateway.monitoring.svc.cluster.local:9091"
    values["settings"]["s3EndpointUrl"] = "http://minio.minio.svc.cluster.local:9000"
    values["extraEnv"] = [{"name": "MARQUEE_LOG_LEVEL", "value": "info"}]
    values["nodeSelector"] = {"kubernetes.io/os": "linux"}
    values["tolerations"] = [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}]
    values["commonLabels"] = {"team": "recsys"}
    values["serviceAccount"]["annotations"] = {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/m"}
    values["serviceMonitor"]["labels"] = {"release": "kube-prometheus-stack"}
    values["prometheusRule"]["labels"] = {"release": "kube-prometheus-stack"}
    values["alertmanagerConfig"]["labels"] = {"alertmanagerConfig": "marquee"}
    values["networkPolicy"]["routerIngressFrom"] = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    return values


def group_of(obj: dict[str, Any]) -> str:
    api = obj["apiVersion"]
    return api.split("/")[0] if "/" in api else ""


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether ``labels`` are selected: a label selector (``matchLabels`` and
    ``matchExpressions``) or a Service's plain ``{label: value}`` selector."""
    plain = "matchLabels" not in selector and "matchExpressions" not in selector
    for key, value in (selector if plain else selector.get("matchLabels", {})).items():
        if labels.get(key) != value:
            return False
    for e in selector.get("matchExpressions", []):
        have = e["key"] in labels
        ok = {"In": have and labels[e["key"]] in e.get("values", []),
              "NotIn": not have or labels[e["key"]] not in e.get("values", []),
              "Exists": have, "DoesNotExist": not have}[e["operator"]]
        if not ok:
            return False
    return True


def pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod templates (``metadata`` and ``spec``) of a Kubernetes workload; none for other
    kinds (an InferenceService's predictor is a spec without a template)."""
    kind = obj["kind"]
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return [obj["spec"]["template"]]
    if kind == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]]
    return []


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs inside a workload (Deployment, CronJob, InferenceService predictor)."""
    if obj["kind"] == "InferenceService":
        return [obj["spec"]["predictor"]]
    return [tpl["spec"] for tpl in pod_templates(obj)]


# --- kubernetes-validate, cached ------------------------------------------------------------

class NoSchema(Exception):
    """kubernetes-validate has no schema for this kind and API version."""


@functools.lru_cache(maxsize=256)
def _kube_validator(version: str, kind: str, api_version: str) -> Any:
    """The validator ``kubernetes_validate.validate(obj, version, strict=True)`` builds,
    built once per (version, kind, apiVersion) instead of once per object: the same schema
    files (``v<version>-local-strict``), the same Draft 2020-12 validator and registry."""
    import re

    import importlib_resources
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    chosen = [v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(version)][-1]
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    base = importlib_resources.files(kubernetes_validate) / "kubernetes-json-schema" / f"v{chosen}-local-strict"
    path = base / f"{kind.lower()}-{group}.json"
    if not path.is_file():
        raise NoSchema(f"no schema for {kind} {api_version} in Kubernetes {version}")
    schema = json.loads(path.read_text())
    defs = json.loads((base / "_definitions.json").read_text())
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def kube_validate(obj: dict[str, Any], version: str) -> str | None:
    """None when ``obj`` is valid for Kubernetes ``version`` (strict: unknown fields fail);
    otherwise the reason. A missing schema is a failure outside the known CRD groups
    (kubernetes-validate itself only warns, e.g. for batch/v1beta1 CronJob on 1.30)."""
    import jsonschema

    try:
        validator = _kube_validator(version, obj["kind"], obj["apiVersion"])
    except NoSchema as exc:
        return None if group_of(obj) in KNOWN_CRD_GROUPS else f"no schema: {exc}"
    try:
        validator.validate(obj)
    except jsonschema.ValidationError as exc:
        return f"{'.'.join(map(str, exc.path))}: {exc.message}"
    return None


# --- CRD OpenAPI v3 → JSON Schema ----------------------------------------------------------

def openapi_to_jsonschema(schema: dict[str, Any]) -> dict[str, Any]:
    """Make a CRD's structural OpenAPI v3 schema checkable with ``jsonschema`` (Draft 7), as
    ../shared/schemas/SOURCES.md says: ``nullable: true`` adds ``null`` to the type, and every
    object with ``properties`` and without ``x-kubernetes-preserve-unknown-fields`` gets
    ``additionalProperties: false`` (the API server's strict field validation), except inside
    ``anyOf``/``oneOf``/``allOf``/``not``, whose subschemas only constrain the fields they name
    (else a ``not`` rule could never match). OpenAPI's boolean
    ``exclusiveMinimum``/``exclusiveMaximum`` become Draft 7 numbers."""
    return _convert(copy.deepcopy(schema))


_JUNCTORS = ("anyOf", "oneOf", "allOf", "not")


def _convert(node: Any, junction: bool = False) -> Any:
    if isinstance(node, list):
        return [_convert(n, junction) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _convert(v, junction or k in _JUNCTORS) if k in _SCHEMA_KEYS else v
           for k, v in node.items()}
    if "properties" in out:
        out["properties"] = {k: _convert(v, junction) for k, v in out["properties"].items()}
    for bound, excl in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(out.get(excl), bool):
            if out.pop(excl) and bound in out:
                out[excl] = out.pop(bound)
    if out.pop("nullable", False):
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        elif t is None and "enum" in out:
            out["enum"] = [*out["enum"], None]
    if ("properties" in out and "additionalProperties" not in out and not junction
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


_SCHEMA_KEYS = {"items", "additionalProperties", "allOf", "anyOf", "oneOf", "not"}


def shared_schema(group: str, version: str, kind: str) -> dict[str, Any]:
    path = SHARED_SCHEMAS / f"{group}_{version}_{kind}.json"
    return openapi_to_jsonschema(json.loads(path.read_text()))


def chart_crd(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ModelRollout CustomResourceDefinition as the chart renders it."""
    crds = [o for o in split(render(values)) if o["kind"] == "CustomResourceDefinition"]
    (crd,) = [c for c in crds if c["spec"]["names"]["kind"] == "ModelRollout"]
    return crd


def modelrollout_schema() -> dict[str, Any]:
    crd = chart_crd()
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return openapi_to_jsonschema(version["schema"]["openAPIV3Schema"])


def errors(validator_cls: Any, schema: dict[str, Any], instance: Any) -> list[str]:
    v = validator_cls(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in v.iter_errors(instance)]


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads a bare ``=`` as the string it is in Kubernetes (PyYAML resolves
    it to the YAML 1.1 ``value`` tag, which it cannot construct; kustomize prints
    ``matchType: =`` unquoted)."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=_Loader) if d]


def load_yaml_docs(paths: Iterable[Path]) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in paths for d in yaml.safe_load_all(p.read_text()) if d]


def settings_variables(*classes: Any) -> set[str]:
    """The environment variables the given pydantic-settings classes read: each field under
    the class's env prefix, plus any string validation alias (``MARQUEE_NAMESPACE`` /
    ``POD_NAMESPACE``)."""
    names: set[str] = set()
    for cls in classes:
        prefix = cls.model_config["env_prefix"]
        for field, info in cls.model_fields.items():
            names.add(f"{prefix}{field}".upper())
            alias = info.validation_alias
            names.update(a for a in getattr(alias, "choices", [alias]) if isinstance(a, str))
    return names
