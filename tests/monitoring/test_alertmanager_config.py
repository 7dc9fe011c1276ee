"""monitoring/alertmanager/alertmanager.yml: valid for amtool, and every alert of the rule
file reaches the receivers its `retrain` label promises."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from conftest import REPO, require_binary

CONFIG = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"
RULES = REPO / "monitoring" / "prometheus" / "alerts.yaml"


def _alert_labels() -> dict[str, dict[str, str]]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["labels"] for g in doc["groups"] for r in g["rules"]}


def test_amtool_check_config() -> None:
    amtool = require_binary("amtool")
    out = subprocess.run([amtool, "check-config", str(CONFIG)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@pytest.mark.parametrize("alert", sorted(_alert_labels()))
def test_each_alert_routes_to_retrain_only_when_labelled(alert: str) -> None:
    amtool = require_binary("amtool")
    labels = {**_alert_labels()[alert], "alertname": alert}
    out = subprocess.run([amtool, "config", "routes", "test", f"--config.file={CONFIG}",
                          *(f"{k}={v}" for k, v in labels.items())],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    receivers = out.stdout.strip().split(",")
    if labels["retrain"] == "true":
        assert receivers == ["retrain-trigger", "oncall"]
    else:
        assert receivers == ["oncall"]


def test_retrain_receiver_is_authenticated_grouped_by_model_and_sees_resolved() -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    retrain_route = next(r for r in cfg["route"]["routes"] if r["receiver"] == "retrain-trigger")
    assert retrain_route["group_by"] == ["namespace", "model"]
    assert retrain_route["matchers"] == ['retrain="true"']
    receiver = next(r for r in cfg["receivers"] if r["name"] == "retrain-trigger")
    (hook,) = receiver["webhook_configs"]
    assert hook["url"].endswith("/webhook") and hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and "credentials_file" in auth and "credentials" not in auth


def test_skew_inhibits_retraining_on_drift() -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    rule = next(r for r in cfg["inhibit_rules"]
                if r["source_matchers"] == ['alertname="TrainingServingSkew"'])
    assert rule["target_matchers"] == ['alertname=~"ModelDataDrift|PredictionDrift"']
    assert rule["equal"] == ["namespace", "model"]


def test_skew_in_one_namespace_does_not_inhibit_drift_in_another(tmp_path) -> None:
    """Two releases sharing one Alertmanager: a TrainingServingSkew in staging inhibited the
    ModelDataDrift of production (``equal: [model]``), which then reached neither on-call nor
    the retrain trigger. The real Alertmanager with the repository's configuration (receivers
    pointed at a closed local port: nothing is delivered), alerts posted to its API."""
    from datetime import datetime, timezone

    import httpx
    from conftest import alertmanager_at, free_port, wait_until

    from monitoring.loop.configs import alertmanager_yaml

    (tmp_path / "token").write_text("t")
    closed = f"http://127.0.0.1:{free_port()}"
    config = alertmanager_yaml(closed, tmp_path / "token", f"{closed}/oncall")
    with alertmanager_at(tmp_path, config) as url:
        now = datetime.now(timezone.utc).isoformat()

        def alert(name: str, namespace: str) -> dict:
            return {"labels": {"alertname": name, "model": "movie-recommender",
                               "namespace": namespace, "severity": "warning"},
                    "startsAt": now}

        httpx.post(f"{url}/api/v2/alerts", json=[
            alert("TrainingServingSkew", "staging"), alert("ModelDataDrift", "prod"),
            alert("ModelDataDrift", "staging")]).raise_for_status()

        def states() -> dict[tuple[str, str], str]:
            return {(a["labels"]["alertname"], a["labels"]["namespace"]): a["status"]["state"]
                    for a in httpx.get(f"{url}/api/v2/alerts").json()}

        # the positive control first: the inhibition works within a namespace
        wait_until(lambda: states().get(("ModelDataDrift", "staging")) == "suppressed",
                   timeout=20, what="staging drift inhibited by staging skew")
        got = states()
    assert got[("ModelDataDrift", "prod")] == "active", got
    assert got[("TrainingServingSkew", "staging")] == "active"
