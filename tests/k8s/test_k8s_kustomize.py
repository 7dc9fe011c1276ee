"""k8s/rendered is the chart rendered with its defaults, and the overlays build offline."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from types import ModuleType

import pytest
import yaml
from conftest import require_binary

import chartlib as c


def render_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_render", c.K8S / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rendered_manifests_match_the_chart() -> None:
    script = render_script()
    fresh, have = script.render_files(), script.current_files()
    stale = sorted(set(fresh) ^ set(have) | {k for k in fresh if have.get(k) != fresh[k]})
    assert not stale, f"k8s/rendered is stale, run python k8s/render.py: {stale}"


def test_rendered_manifests_hold_every_default_object() -> None:
    docs = [d for p in sorted((c.K8S / "rendered").rglob("*.yaml")) if p.name != "kustomization.yaml"
            for d in yaml.safe_load_all(p.read_text()) if d]
    assert docs == c.default_objects()


def kustomize(overlay: str) -> list[dict]:
    kubectl = require_binary("kubectl")
    proc = subprocess.run(
        [kubectl, "kustomize", str(c.K8S / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "KUBECONFIG": "/nonexistent"},
    )
    assert proc.returncode == 0, proc.stderr
    return c.load_all(proc.stdout)


def _get(objs: list[dict], kind: str, name: str) -> dict:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def test_prod_overlay_builds_offline_and_stays_valid() -> None:
    objs = kustomize("prod")
    assert len(objs) == len(c.default_objects())
    # one router replica (its /feedback request state is per replica), with more CPU
    router = _get(objs, "Deployment", "marquee-router")
    assert router["spec"]["replicas"] == 1
    assert router["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "2"
    assert not [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
    assert _get(objs, "InferenceService", "marquee-v1")["spec"]["predictor"]["minReplicas"] == 2
    # a standby controller; only the Lease holder acts (tests/rollout/test_rollout_lease.py)
    ctl = _get(objs, "Deployment", "marquee-controller")
    assert ctl["spec"]["replicas"] == 2
    env = {e["name"] for e in ctl["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"MARQUEE_ROLLOUT_LEASE", "POD_NAME"} <= env
    for o in objs:
        assert o["metadata"]["labels"]["marquee.dev/environment"] == "prod"
        assert not c.kube_validate(o, "1.33"), (o["kind"], o["metadata"]["name"])


def test_dev_overlay_builds_offline() -> None:
    objs = kustomize("dev")
    assert not [o for o in objs if o["kind"] in {"PodDisruptionBudget", "HorizontalPodAutoscaler"}]
    assert _get(objs, "Deployment", "marquee-router")["spec"]["replicas"] == 1
    assert _get(objs, "CronJob", "marquee-drift")["spec"]["schedule"] == "0 * * * *"
    for o in objs:
        assert not c.kube_validate(o, "1.29"), (o["kind"], o["metadata"]["name"])


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_keep_selectors_untouched(overlay: str) -> None:
    """Labels added by an overlay must not reach selectors (immutable on Deployments)."""
    for o in kustomize(overlay):
        if o["kind"] == "Deployment":
            assert "marquee.dev/environment" not in o["spec"]["selector"]["matchLabels"]
