"""The install guides create every Secret that the default objects need, with the key they read.

A pod whose ``secretKeyRef`` (or secret volume) names a Secret that does not exist never
starts (CreateContainerConfigError). k8s/README.md, the page for those who apply
``k8s/rendered`` with kustomize, listed the Secrets to create but not the router's admin token,
so the router and the rollout controller of a default install could not start.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.k8s.chartlib import K8S, REPO


def _walk(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _required_secrets() -> dict[str, set[str]]:
    """``{secret name: keys}`` that the rendered default objects read and do not mark optional."""
    needed: dict[str, set[str]] = {}
    for path in sorted((K8S / "rendered").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") == "Kustomization":
                continue
            for node in _walk(doc):
                ref = node.get("secretKeyRef")
                if isinstance(ref, dict) and not ref.get("optional"):
                    needed.setdefault(ref["name"], set()).add(ref["key"])
                vol = node.get("secret")
                if isinstance(vol, dict) and "secretName" in vol and not vol.get("optional"):
                    keys = {item["key"] for item in vol.get("items", [])}
                    needed.setdefault(vol["secretName"], set()).update(keys)
    return needed


def _created(text: str) -> dict[str, set[str]]:
    """``{secret name: keys}`` of the ``kubectl create secret generic`` commands in ``text``."""
    created: dict[str, set[str]] = {}
    joined = text.replace("\\\n", " ")
    for line in joined.splitlines():
        match = re.search(r"create secret generic ([\w.-]+)(.*)", line)
        if match:
            created[match.group(1)] = set(re.findall(r"--from-literal=([\w.-]+)=", match.group(2)))
    return created


def test_the_default_objects_read_secrets() -> None:
    needed = _required_secrets()
    assert "marquee-s3" in needed and "marquee-router-admin-token" in needed, needed


@pytest.mark.parametrize("doc", ["k8s/README.md", "docs/DEPLOY.md"])
def test_the_guide_creates_every_secret_the_default_objects_need(doc: str) -> None:
    created = _created((REPO / doc).read_text())
    for name, keys in sorted(_required_secrets().items()):
        assert name in created, f"{doc} does not create the Secret {name!r} (keys {sorted(keys)})"
        assert keys <= created[name], (f"{doc} creates {name!r} with {sorted(created[name])}, "
                                       f"the objects read {sorted(keys)}")


def test_the_guides_name_the_store_the_rendered_objects_use() -> None:
    """k8s/rendered carries the chart's placeholder store; the pages for those who apply it say
    which one (and that it must be replaced), so nobody writes to a bucket named 'marquee'
    unawares. The values.yaml line said "Required" although the chart renders with it."""
    settings = yaml.safe_load((K8S / "rendered" / "settings" / "configmap.yaml").read_text())
    store = settings["data"]["MARQUEE_STORE_URI"]
    for doc in ("k8s/README.md", "docs/DEPLOY.md", "helm/marquee/values.yaml"):
        assert store in (REPO / doc).read_text(), f"{doc} does not name the rendered store {store}"
