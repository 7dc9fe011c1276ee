"""The chart as a platform team sets it (session 23, review R): values the schema accepts must
render objects that start and that kubectl accepts, or fail the render naming what is wrong.

- The router refuses at start a request-state TTL longer than /admin/stats keeps
  (serving/router/settings.py ``_feedback_within_stats``); the chart always sets the TTL, so a
  lowered ``router.statsRetentionSeconds`` alone must fail the render, naming both values.
- Helm reads a values file's numbers as floats; a whole number from a million up must still
  reach an int setting as an integer, not as "1e+06".
- ``commonLabels`` and the ``*.labels`` values are written once per key (kubectl refuses a
  mapping with a key twice), never replace a selector label, and are Kubernetes labels.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_binary

import chartlib as c


def _router_env(objs: list[dict[str, Any]]) -> dict[str, str]:
    deploy = next(o for o in objs if o["kind"] == "Deployment"
                  and o["metadata"]["name"] == "marquee-router")
    (ctr,) = deploy["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in ctr["env"] if "value" in e}


def _with_env(monkeypatch: pytest.MonkeyPatch, prefix: str, env: dict[str, str]) -> None:
    """The process environment a container with ``env`` starts with (for ``prefix``)."""
    for name in list(os.environ):
        if name.startswith(prefix):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith(prefix):
            monkeypatch.setenv(name, value)


# --- request-state TTL within what /admin/stats keeps -------------------------------------

@pytest.mark.parametrize(("router", "message"), [
    ({"statsRetentionSeconds": 1800},
     "router.requestStateTtlSeconds (3600) is longer than /admin/stats keeps a list's clicks: "
     "router.statsRetentionSeconds (1800) in whole router.statsBucketSeconds (1) buckets, "
     "1800 s"),
    # whole buckets: 7200 s of 7 s buckets keep 1028 buckets, 7196 s
    ({"statsBucketSeconds": 7, "statsRetentionSeconds": 7200, "requestStateTtlSeconds": 7200},
     "set router.requestStateTtlSeconds to at most 7196 or raise router.statsRetentionSeconds"),
    ({"statsBucketSeconds": 10, "statsRetentionSeconds": 5},
     "raise router.statsRetentionSeconds to at least router.statsBucketSeconds"),
])
def test_a_ttl_longer_than_the_stats_retention_fails_the_render_naming_both(
        router: dict[str, Any], message: str) -> None:
    """Lowering only statsRetentionSeconds used to render a router in CrashLoopBackOff."""
    import helm_python

    with pytest.raises(helm_python.HelmRenderError) as info:
        c.render({"router": router})
    assert message in str(info.value)
    assert "router.requestStateTtlSeconds" in str(info.value)
    assert "router.statsRetentionSeconds" in str(info.value)


@pytest.mark.parametrize("router", [
    {},
    {"statsRetentionSeconds": 1800, "requestStateTtlSeconds": 1800},
    {"statsBucketSeconds": 60, "statsRetentionSeconds": 7200, "requestStateTtlSeconds": 7200},
    {"statsBucketSeconds": 7, "statsRetentionSeconds": 7200, "requestStateTtlSeconds": 7196},
], ids=["defaults", "lowered-pair", "minute-buckets", "whole-buckets"])
def test_a_consistent_ttl_renders_and_the_router_starts_with_it(
        router: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.router.settings import RouterSettings

    env = _router_env(c.split(c.render({"router": router})))
    _with_env(monkeypatch, "MARQUEE_ROUTER_", env)
    settings = RouterSettings()
    want = router.get("requestStateTtlSeconds", 3600.0)
    assert settings.request_state_ttl_seconds == want
    assert env["MARQUEE_ROUTER_REQUEST_STATE_TTL_SECONDS"] == f"{want:g}"


# --- whole numbers of a million and more --------------------------------------------------

def test_large_whole_numbers_reach_int_settings_as_integers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """requestStateMax: 1000000 was rendered "1e+06", which RouterSettings refuses as an int
    (the router would never start); the same for the model servers' int settings."""
    from serving.router.settings import RouterSettings
    from serving.settings import ServingSettings

    objs = c.split(c.render({
        "router": {"requestStateMax": 1_000_000, "logQueueSize": 2_500_000,
                   "statsRetentionSeconds": 2_592_000.0},
        "modelServer": {"maxBodyBytes": 1_048_576, "exactIndexMaxItems": 1_000_000,
                        "faultSeed": 20_240_101, "payloadLogQueueSize": 1_000_000}}))
    env = _router_env(objs)
    assert env["MARQUEE_ROUTER_REQUEST_STATE_MAX"] == "1000000"
    _with_env(monkeypatch, "MARQUEE_ROUTER_", env)
    router = RouterSettings()
    assert (router.request_state_max, router.log_queue_size) == (1_000_000, 2_500_000)
    assert router.stats_retention_seconds == 2_592_000.0
    assert router.request_state_ttl_seconds == 3600.0

    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"
             and o["metadata"]["name"] == "marquee-model-server"]
    assert cm["data"]["MARQUEE_SERVING_MAX_BODY_BYTES"] == "1048576"
    assert cm["data"]["MARQUEE_SERVING_BUDGET_RETRIEVE_MS"] == "50"  # floats stay numbers
    assert cm["data"]["MARQUEE_SERVING_TARGET_RECALL"] == "0.95"
    _with_env(monkeypatch, "MARQUEE_SERVING_", cm["data"])
    serving = ServingSettings()
    assert (serving.max_body_bytes, serving.exact_index_max_items, serving.fault_seed,
            serving.payload_log_queue_size) == (1_048_576, 1_000_000, 20_240_101, 1_000_000)
    assert serving.target_recall == 0.95


# --- labels -------------------------------------------------------------------------------

class _UniqueKeys(yaml.SafeLoader):
    """A loader that refuses a mapping with a key twice, as kubectl and kustomize do."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(k) for k, _ in node.value]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise yaml.constructor.ConstructorError(None, None, f"keys given twice: {twice}",
                                                node.start_mark)
    return loader.construct_mapping(node)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)

LABELS = {
    "commonLabels": {"app.kubernetes.io/part-of": "recs-platform", "release": "common",
                     "team": "recsys"},
    "serviceMonitor": {"labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"labels": {"release": "kube-prometheus-stack"}},
}


def test_common_labels_may_replace_a_chart_label_and_kubectl_accepts_the_objects(
        tmp_path: Path) -> None:
    """A platform team's own app.kubernetes.io/part-of, and a `release` label in both
    commonLabels and serviceMonitor.labels, were written twice into one labels mapping:
    kubectl kustomize (and kubectl apply) refuse it."""
    manifests = c.render(LABELS)
    for path, text in manifests.items():
        if not path.endswith("NOTES.txt"):
            list(yaml.load_all(text, Loader=_UniqueKeys))  # raises on a key given twice
    (tmp_path / "all.yaml").write_text("\n---\n".join(
        t for p, t in sorted(manifests.items()) if not p.endswith("NOTES.txt")))
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - all.yaml\n")
    proc = subprocess.run([require_binary("kubectl"), "kustomize", str(tmp_path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KUBECONFIG": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr
    objs = c.load_all(proc.stdout)
    for o in objs:
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "recs-platform", o["metadata"]["name"]
        assert labels["team"] == "recsys"
        want = "kube-prometheus-stack" if o["kind"] in {"ServiceMonitor", "PrometheusRule"} \
            else "common"
        assert labels["release"] == want, (o["kind"], o["metadata"]["name"])
    router = next(o for o in objs if o["kind"] == "Deployment"
                  and o["metadata"]["name"] == "marquee-router")
    assert c.selector_matches(router["spec"]["selector"],
                              router["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("key", ["app.kubernetes.io/component", "app.kubernetes.io/instance"])
def test_a_selector_label_in_common_labels_fails_the_render_naming_it(key: str) -> None:
    """commonLabels app.kubernetes.io/component replaced the pods' label but not the
    Deployments' selectors: the API server refuses such a Deployment, and every Service
    selected no pod."""
    import helm_python

    with pytest.raises(helm_python.HelmRenderError,
                       match=re.escape(f"{key} is a selector label the chart sets")):
        c.render({"commonLabels": {key: "recs"}})


@pytest.mark.parametrize(("values", "where"), [
    ({"commonLabels": {"team": "recs platform"}}, "/commonLabels/team"),
    ({"commonLabels": {"team": "x" * 64}}, "/commonLabels/team"),
    ({"commonLabels": {"team": "recsys-"}}, "/commonLabels/team"),
    # Helm's validator names a refused key, not where it is
    ({"commonLabels": {"my team": "recsys"}}, "invalid propertyName 'my team'"),
    ({"nodeSelector": {"pool": "gpu nodes"}}, "/nodeSelector/pool"),
    ({"serviceMonitor": {"labels": {"release": "kube prometheus"}}}, "/serviceMonitor/labels"),
    ({"grafanaDashboard": {"labels": {"grafana_dashboard": "1 "}}}, "/grafanaDashboard/labels"),
])
def test_a_label_kubernetes_refuses_is_refused_by_the_schema(values: dict[str, Any],
                                                             where: str) -> None:
    """Such a label rendered and the API server refused the object halfway through the
    install."""
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
        c.render(values)
