"""The alert rules: promtool checks and unit-tests them; every alert is documented and tested.

`promtool test rules` runs monitoring/prometheus/tests/*.yaml: for every alert a case where it
fires (with its labels and fully expanded annotations) and one where it does not.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from conftest import REPO, require_binary

from monitoring.metrics import metric_names

PROM = REPO / "monitoring" / "prometheus"
RULES = PROM / "alerts.yaml"
RUNBOOKS = REPO / "monitoring" / "runbooks"
RUNBOOK_BASE = "https://github.com/marquee-mlops/marquee/blob/main/monitoring/runbooks/"
ALERTS = {"ModelDataDrift", "PredictionDrift", "TrainingServingSkew", "ClickThroughDrop",
          "HighErrorRate", "HighLatency", "DriftJobStale", "RolloutFailing"}
RETRAIN_WORTHY = {"ModelDataDrift", "PredictionDrift", "ClickThroughDrop"}


def _rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_promtool_check_rules() -> None:
    promtool = require_binary("promtool")
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    promtool = require_binary("promtool")
    files = sorted(str(p) for p in (PROM / "tests").glob("*.yaml"))
    out = subprocess.run([promtool, "test", "rules", *files], capture_output=True, text=True,
                         timeout=120, cwd=PROM / "tests")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") + out.stderr.count("SUCCESS") == len(files)


def test_every_alert_has_severity_annotations_and_runbook() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} == ALERTS
    for r in rules:
        name = r["alert"]
        assert r["labels"]["severity"] in {"warning", "critical"}, name
        assert r["labels"]["model"] == "movie-recommender", name
        assert r["labels"]["retrain"] == ("true" if name in RETRAIN_WORTHY else "false"), name
        ann = r["annotations"]
        assert "$value" in ann["summary"] + ann["description"], f"{name} quotes no value"
        assert "$labels" in ann["summary"] + ann["description"] or name == "DriftJobStale", name
        assert ann["runbook_url"] == f"{RUNBOOK_BASE}{name}.md"
        runbook = RUNBOOKS / f"{name}.md"
        assert runbook.is_file(), runbook
        text = runbook.read_text()
        assert text.startswith(f"# {name}\n")
        for section in ("## What it means", "## First five minutes", "## Escalate"):
            assert section in text, f"{runbook.name} lacks {section!r}"


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_each_alert_has_a_firing_and_a_quiet_case(alert: str) -> None:
    firing = quiet = 0
    for path in (PROM / "tests").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        assert doc["rule_files"] == ["../alerts.yaml"], path.name
        for case in doc["tests"]:
            for t in case.get("alert_rule_test", []):
                if t["alertname"] != alert:
                    continue
                if t.get("exp_alerts"):
                    firing += 1
                    for exp in t["exp_alerts"]:  # annotations fully checked, not left out
                        assert set(exp["exp_annotations"]) == {"summary", "description",
                                                               "runbook_url"}
                else:
                    quiet += 1
    assert firing >= 1 and quiet >= 1, f"{alert}: {firing} firing, {quiet} quiet cases"


def test_rules_only_use_catalogued_metrics() -> None:
    known = metric_names()
    text = RULES.read_text()
    used = set(re.findall(r"\bmarquee_[a-z0-9_]+", text))
    assert used, "no metric found in the rules"
    assert used <= known, f"not in monitoring.metrics.CATALOGUE: {sorted(used - known)}"


_AGGREGATION = re.compile(r"\b(sum|min|max|avg|count|group|stddev|stdvar|topk|bottomk|quantile|"
                          r"count_values)\s*(by\s*\(([^)]*)\)|without\s*\([^)]*\))?\s*\(")


def test_every_aggregation_keeps_the_namespace_label() -> None:
    """The chart routes alerts with a namespaced AlertmanagerConfig, which the Prometheus
    Operator matches on namespace="<release namespace>" only: an alert whose expression
    aggregates the label away (ClickThroughDrop's `sum by (variant)`) reaches neither the
    retrain trigger nor that route. `absent()` alone has no namespace to keep."""
    for rule in _rules():
        for m in _AGGREGATION.finditer(rule["expr"]):
            grouping = m[3]
            assert grouping is not None and "namespace" in {g.strip() for g in
                                                            grouping.split(",")}, \
                f"{rule['alert']}: {m[0]!r} drops the namespace label"
