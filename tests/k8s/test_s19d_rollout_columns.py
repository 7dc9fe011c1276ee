"""`kubectl get modelrollouts -o wide`: the Baseline and Candidate columns name the versions
the rollout runs, also when the spec gives a registry alias (the baseline's default).

The status is written by the real controller (one tick against an MLflow registry on SQLite);
the chart's printer columns are evaluated by kubectl's own JSONPath (custom-columns, offline,
as the API server evaluates additionalPrinterColumns)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import chartlib as c

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


def _columns() -> dict[str, str]:
    (v,) = c.chart_crd()["spec"]["versions"]
    return {col["name"]: col["jsonPath"] for col in v["additionalPrinterColumns"]}


def _printed(obj: dict[str, Any], columns: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The columns' values for ``obj``, by kubectl's JSONPath (k8s.io/client-go/util/jsonpath,
    which the API server's table printer runs on each column's jsonPath; a missing field is
    an empty cell)."""
    path = tmp_path / "mro.yaml"
    path.write_text(yaml.safe_dump(obj))
    template = "|".join("{" + jp + "}" for jp in columns.values())
    done = subprocess.run(
        ["kubectl", "label", "--local", "-f", str(path), "s19d=1", "-o", f"jsonpath={template}"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "KUBECONFIG": "/nonexistent"})
    assert done.returncode == 0, done.stderr
    return dict(zip([n.upper() for n in columns], done.stdout.split("|"), strict=True))


@pytest.mark.parametrize(("baseline", "candidate"), [
    ({"alias": "production"}, {"version": "2"}),        # k8s/examples/rollout-*.yaml
    ({"version": "1"}, {"alias": "candidate"}),
])
def test_baseline_and_candidate_columns_show_the_versions(
        tmp_path: Path, baseline: dict[str, str], candidate: dict[str, str]) -> None:
    from marquee.registry import Registry
    from serving.rollout.controller import Controller, MarqueeRegistry
    from serving.rollout.sources import RouterAdmin, RouterStatsSource
    from serving.rollout.spec import parse_rollout
    from serving.rollout.store import FileStatusStore

    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    reg = Registry(uri, "movie-recommender")
    for n in (1, 2):
        assert reg.register(f"file:///bundles/v{n}", {"ndcg_at_10": 0.1}) == n
    reg.set_alias("production", 1)
    reg.set_alias("candidate", 2)

    (_, doc), = c.load_yaml_docs([c.K8S / "examples" / "rollout-canary.yaml"])
    doc["spec"]["baseline"], doc["spec"]["candidate"] = baseline, candidate
    name = doc["metadata"]["name"]
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(parse_rollout(doc, "test"))
    # The first tick resolves the versions and reads no metrics (nothing listens there).
    source = RouterStatsSource(RouterAdmin("http://127.0.0.1:9"))
    status = Controller(store, name, source, registry=MarqueeRegistry(uri, "movie-recommender")
                        ).tick()
    assert status.baseline_version == "1" and status.candidate_version == "2", status.message

    obj = {**doc, "status": status.to_dict()}
    columns = {k: v for k, v in _columns().items() if k in ("Phase", "Baseline", "Candidate")}
    printed = _printed(obj, columns, tmp_path)
    assert printed == {"PHASE": "Progressing", "BASELINE": "1", "CANDIDATE": "2"}, printed
