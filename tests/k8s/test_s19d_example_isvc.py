"""k8s/examples/inferenceservice-canary.yaml runs the same model server as the chart's
InferenceServices: a platform engineer who copies it gets the same settings (both
ConfigMaps), credentials, namespace, security context, probes and volumes, and a server the
chart's ServiceMonitor scrapes. Compared with the chart's render, not with copied strings."""

from __future__ import annotations

from typing import Any

import chartlib as c

EXAMPLE = c.K8S / "examples" / "inferenceservice-canary.yaml"
# Keys of the predictor and of its container that must be what the chart renders. Left out:
# what the example sets on purpose (replicas, canaryTrafficPercent, resources, args with its
# own version) and the chart's checksum annotations and tier label.
PREDICTOR_KEYS = ("serviceAccountName", "automountServiceAccountToken", "securityContext",
                  "volumes", "timeout")
CONTAINER_KEYS = ("name", "image", "imagePullPolicy", "ports", "envFrom", "env",
                  "securityContext", "volumeMounts", "startupProbe", "readinessProbe",
                  "livenessProbe")


def _chart_isvc() -> dict[str, Any]:
    # Serverless, as the example (the mode canaryTrafficPercent needs)
    objs = c.objects({"models": {"deploymentMode": "Serverless"}})
    return next(o for o in objs if o["kind"] == "InferenceService")


def _example() -> dict[str, Any]:
    (_, isvc), = c.load_yaml_docs([EXAMPLE])
    return isvc


def test_the_example_predictor_is_the_charts() -> None:
    chart, example = _chart_isvc()["spec"]["predictor"], _example()["spec"]["predictor"]
    diffs = [f"predictor.{k}: chart {chart.get(k)!r}, example {example.get(k)!r}"
             for k in PREDICTOR_KEYS if chart.get(k) != example.get(k)]
    (cc,), (ec,) = chart["containers"], example["containers"]
    diffs += [f"container.{k}: chart {cc.get(k)!r}, example {ec.get(k)!r}"
              for k in CONTAINER_KEYS if cc.get(k) != ec.get(k)]
    assert diffs == []


def test_the_example_reads_every_configmap_and_variable_of_the_chart() -> None:
    """Named separately, so a failure says what the copied server would lack."""
    (cc,) = _chart_isvc()["spec"]["predictor"]["containers"]
    (ec,) = _example()["spec"]["predictor"]["containers"]
    refs = lambda ctr: [e["configMapRef"]["name"] for e in ctr.get("envFrom", [])]  # noqa: E731
    assert "marquee-model-server" in refs(cc)
    assert refs(ec) == refs(cc)
    names = lambda ctr: {e["name"] for e in ctr.get("env", [])}  # noqa: E731
    assert "POD_NAMESPACE" in names(cc)
    assert names(cc) - names(ec) == set()


def test_the_charts_model_servicemonitor_scrapes_the_example() -> None:
    """KServe copies the InferenceService's labels to its predictor Service; the chart's
    ServiceMonitor selects by the chart's labels (KServe adds the rest)."""
    monitors = [o for o in c.default_objects() if o["kind"] == "ServiceMonitor"
                and o["metadata"]["labels"].get("app.kubernetes.io/component") == "model"]
    (monitor,) = monitors
    chart_labels = _chart_isvc()["metadata"]["labels"]
    example_labels = _example()["metadata"].get("labels", {})
    wanted = {k: v for k, v in monitor["spec"]["selector"]["matchLabels"].items()
              if chart_labels.get(k) == v}
    assert wanted  # the release's labels, at least
    assert {k: example_labels.get(k) for k in wanted} == wanted
