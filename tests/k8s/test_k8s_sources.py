"""One source for alert rules, the dashboard and the retrain route: monitoring/ owns them,
the chart carries copies (Helm cannot read outside the chart) that must stay equal."""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

import chartlib as c

ALERTS_SOURCE = c.REPO / "monitoring" / "prometheus" / "alerts.yaml"
DASHBOARD_SOURCE = c.REPO / "monitoring" / "grafana" / "marquee.json"
ALERTMANAGER_SOURCE = c.REPO / "monitoring" / "alertmanager" / "alertmanager.yml"
ALERTS_COPY = c.CHART / "files" / "alerts.yaml"
DASHBOARD_COPY = c.CHART / "files" / "dashboard.json"


def sync_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_alerts", c.REPO / "helm" / "sync-alerts.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def groups_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Rule groups of a plain rule file (groups:) or of a PrometheusRule (spec.groups:)."""
    return doc.get("groups") or doc.get("spec", {}).get("groups") or []


def rendered(kind: str) -> dict[str, Any]:
    (obj,) = [o for o in c.default_objects() if o["kind"] == kind]
    return obj


def test_chart_copies_equal_their_sources() -> None:
    """Fails as soon as a source exists and its copy differs; a missing source keeps the
    chart's placeholder (a minimal valid rule group / an empty dashboard)."""
    assert sync_script().stale() == [], "run python helm/sync-alerts.py"


def test_prometheusrule_holds_exactly_the_source_rules() -> None:
    rule = rendered("PrometheusRule")
    copy_groups = groups_of(yaml.safe_load(ALERTS_COPY.read_text()))
    assert rule["spec"]["groups"] == copy_groups and copy_groups
    if not ALERTS_SOURCE.is_file():
        pytest.skip("monitoring/prometheus/alerts.yaml does not exist yet (placeholder in use)")
    source = groups_of(yaml.safe_load(ALERTS_SOURCE.read_text()))
    assert rule["spec"]["groups"] == source


def test_every_alert_has_a_runbook_and_a_severity() -> None:
    for group in rendered("PrometheusRule")["spec"]["groups"]:
        for r in group.get("rules", []):
            if "alert" in r:
                assert r["annotations"]["runbook_url"], r["alert"]
                assert r["labels"]["severity"] in {"critical", "warning", "info"}, r["alert"]


def test_dashboard_configmap_holds_the_source_dashboard() -> None:
    cm = next(o for o in c.default_objects() if o["metadata"]["name"] == "marquee-dashboard")
    dashboard = json.loads(cm["data"]["marquee.json"])
    assert dashboard == json.loads(DASHBOARD_COPY.read_text())
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    if not DASHBOARD_SOURCE.is_file():
        pytest.skip("monitoring/grafana/marquee.json does not exist yet (placeholder in use)")
    assert dashboard == json.loads(DASHBOARD_SOURCE.read_text())


def _retrain_route(config: dict[str, Any]) -> dict[str, Any]:
    (route,) = [r for r in config["route"].get("routes", []) if r["receiver"] == "retrain-trigger"]
    return route


@pytest.mark.skipif(not ALERTMANAGER_SOURCE.is_file(), reason="no monitoring/alertmanager yet")
def test_alertmanagerconfig_route_equals_the_source_retrain_route() -> None:
    source = yaml.safe_load(ALERTMANAGER_SOURCE.read_text())
    want = _retrain_route(source)
    (receiver,) = [r for r in source["receivers"] if r["name"] == "retrain-trigger"]
    (hook,) = receiver["webhook_configs"]
    amc = rendered("AlertmanagerConfig")["spec"]
    route = amc["route"]
    assert [f"{m['name']}{m['matchType']}\"{m['value']}\"" for m in route["matchers"]] == \
        want["matchers"]
    assert route["groupBy"] == want["group_by"]
    assert (route["groupWait"], route["groupInterval"], route["repeatInterval"]) == \
        (want["group_wait"], want["group_interval"], want["repeat_interval"])
    (chart_hook,) = amc["receivers"][0]["webhookConfigs"]
    assert chart_hook["sendResolved"] == hook["send_resolved"]
    assert urlparse(chart_hook["url"]).path == urlparse(hook["url"]).path
    assert chart_hook["httpConfig"]["authorization"]["type"] == \
        hook["http_config"]["authorization"]["type"]

    def norm(m: str) -> tuple[str, str, str]:
        for op in ("=~", "!~", "!=", "="):
            if op in m:
                name, value = m.split(op, 1)
                return name.strip(), op, value.strip().strip('"')
        raise AssertionError(m)

    chart_inhibit = [
        ({(m["name"], m["matchType"], m["value"]) for m in r["sourceMatch"]},
         {(m["name"], m["matchType"], m["value"]) for m in r["targetMatch"]}, r["equal"])
        for r in amc["inhibitRules"]]
    source_inhibit = [({norm(m) for m in r["source_matchers"]},
                       {norm(m) for m in r["target_matchers"]}, r["equal"])
                      for r in source.get("inhibit_rules", [])]
    assert chart_inhibit == source_inhibit


def test_trigger_token_file_is_where_the_source_config_expects_it() -> None:
    source = yaml.safe_load(ALERTMANAGER_SOURCE.read_text()) if ALERTMANAGER_SOURCE.is_file() else None
    deploy = next(o for o in c.default_objects()
                  if o["kind"] == "Deployment" and o["metadata"]["name"] == "marquee-trigger")
    (ctr,) = deploy["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in ctr["env"]}
    mount = next(m for m in ctr["volumeMounts"] if m["name"] == "retrain-token")
    assert env["MARQUEE_RETRAIN_TOKEN_FILE"] == f"{mount['mountPath']}/retrain-token"
    if source:
        (receiver,) = [r for r in source["receivers"] if r["name"] == "retrain-trigger"]
        cred = receiver["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"]
        assert cred == env["MARQUEE_RETRAIN_TOKEN_FILE"]
