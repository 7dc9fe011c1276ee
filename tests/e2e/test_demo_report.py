"""`marquee demo`'s pieces that need no running loop: the alert it posts when Prometheus is
not installed is a valid Alertmanager v4 notification of ModelDataDrift, and the HTML report
shows every section from a recorded run (and survives an incomplete one)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import yaml

from monitoring.loop.configs import ALERT_RULES
from monitoring.loop.demo import DemoRecord, direct_alert
from monitoring.loop.report import render, write_report
from monitoring.retrain.models import WebhookMessage


def test_direct_alert_is_the_rules_model_data_drift_notification() -> None:
    rules = {r["alert"]: r for g in yaml.safe_load(ALERT_RULES.read_text())["groups"]
             for r in g["rules"]}
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    body = direct_alert({"drift_share": 0.25, "drift_share_threshold": 0.2,
                         "model_version": "abc", "drifted_features": ["age_bucket"]}, now)
    msg = WebhookMessage.model_validate(body)
    (alert,) = msg.alerts
    assert alert.status == "firing" and alert.alertname == "ModelDataDrift"
    for key, value in rules["ModelDataDrift"]["labels"].items():
        assert alert.labels[key] == value
    assert alert.annotations["runbook_url"] == \
        rules["ModelDataDrift"]["annotations"]["runbook_url"]
    assert "25%" in alert.annotations["summary"] and alert.startsAt == now
    # the same drift state gives the same fingerprint: the trigger deduplicates re-posts
    again = WebhookMessage.model_validate(direct_alert({"model_version": "abc"}, now))
    assert again.alerts[0].dedup_key == alert.dedup_key


def _record() -> dict:
    feature = {"name": "age_bucket", "kind": "categorical", "method": "jensenshannon",
               "threshold": 0.1, "rows_reference": 100, "exact": True}
    pred = {"name": "score", "method": "wasserstein", "threshold": 0.1, "rows_reference": 1,
            "rows_current": 1}

    def summary(score: float, drifted: bool) -> dict:
        return {"drift_detected": drifted, "drifted_features": ["age_bucket"] if drifted else [],
                "features": [{**feature, "score": score, "drifted": drifted,
                              "rows_current": 500}],
                "prediction": [{**pred, "score": score / 2, "drifted": False, "skipped": None},
                               {**pred, "name": "genre_mix", "skipped": "no items"}],
                "drift_share": 1.0 if drifted else 0.0, "drift_share_threshold": 0.2,
                "window": {"rows": 500}, "reference_rows": 1000,
                "outputs": {"report_html": "file:///store/report.html"}}

    rec = DemoRecord(home="/h", mode="prometheus", baseline_version="1", new_version="2",
                     outcome="Succeeded", wall_seconds=123.4)
    rec.steps = [{"step": "train", "start_s": 0.0, "seconds": 40.0}]
    rec.versions = [{"version": 2, "aliases": ["production"], "created": "t",
                     "bundle_version": "b2", "bundle_uri": "file:///b2",
                     "metrics": {"ndcg_at_10": 0.2}, "gate": "candidate",
                     "gate_candidate_ndcg": "0.2", "gate_production_ndcg": "0.19",
                     "pipeline_run_id": "run-2"}]
    rec.drift = {"normal": summary(0.02, False), "drifted": summary(0.4, True),
                 "segment": {"occupation": ["student"]}}
    rec.alert = {"alertname": "ModelDataDrift", "fired_at": "t0",
                 "alert_to_pipeline_start_seconds": 0.04, "summary": "<drift & more>"}
    rec.decisions = [{"time": "t1", "decision": "started", "source": "webhook",
                      "alertname": "ModelDataDrift", "run_id": "rt-1", "detail": "queued"}]
    rec.rollout = {"name": "retrain-shadow-v2",
                   "spec": {"strategy": "shadow", "shadow": {"promoteTo": "canary"},
                            "candidate": {"version": "2"}, "baseline": {"alias": "production"}},
                   "status": {"phase": "Succeeded", "message": "promoted", "baselineVersion": "1",
                              "decisions": [{"time": "t2", "phase": "Progressing", "step": 1,
                                             "outcome": "Successful", "reason": "all checks",
                                             "statistics": {"checks": {"errorRate": 0.0}}}]}}
    rec.quality = {"b2": {"registry_version": "2", "exposures": 10, "clicked": 5, "ctr": 0.5,
                          "ctr_interval": [0.2, 0.8], "ndcg_at_10": 0.3, "ndcg_lists": 10}}
    return rec


def test_report_shows_every_section(tmp_path: Path) -> None:
    from marquee.settings import Settings

    rec = _record()
    settings = Settings(home=tmp_path / "home")
    path, uri = write_report(settings, rec, tmp_path / "out")
    page = path.read_text()
    for text in ("Timeline", "Model versions and gate decisions", "Drift scores",
                 "Alert and retraining", "decision log", "Rollout", "Online quality",
                 "retrain-shadow-v2", "0.4000", "errorRate 0", "0.04 s", "Succeeded"):
        assert text in page, text
    assert "&lt;drift &amp; more&gt;" in page and "<drift & more>" not in page  # escaped
    assert uri is not None and uri.endswith("report.html")
    assert (settings.home / "store" / "demo" / rec.stamp / "report.html").read_text() == page
    assert json.loads((tmp_path / "out" / "report.json").read_text())["new_version"] == "2"


def test_report_of_an_interrupted_run_still_renders() -> None:
    page = render({"outcome": "interrupted", "notes": ["interrupted (Ctrl-C)"], "steps": []})
    assert "interrupted" in page and "no rollout" in page


def test_report_draws_the_rollout_as_rollout_report_does() -> None:
    """The demo's page carries the chart of ``marquee rollout report``: the candidate's traffic
    over time with a marker per decision; a record it cannot parse keeps the table only."""
    import yaml

    spec = yaml.safe_load((Path(__file__).parents[2] / "k8s" / "examples" /
                           "rollout-canary.yaml").read_text())["spec"]
    decisions = [{"time": f"2026-11-24T00:0{i}:00Z", "phase": phase, "step": step,
                  "outcome": outcome, "reason": reason, "statistics": {}}
                 for i, (phase, step, outcome, reason) in enumerate([
                     ("Progressing", 1, "Successful", "candidate weight 5%"),
                     ("Progressing", 2, "Successful", "candidate weight 25%"),
                     ("RolledBack", 2, "Failed", "errorRate 0.2 > max 0.05"),
                 ])]
    rollout = {"name": "recommender-v2", "spec": spec,
               "status": {"phase": "RolledBack", "message": "rolled back",
                          "decisions": decisions}}
    page = render({"outcome": "RolledBack", "steps": [], "rollout": rollout})
    assert page.count("<svg") == 1 and page.count('class="decision"') == 3
    assert "candidate share of live traffic" in page
    broken = render({"outcome": "RolledBack", "steps": [],
                     "rollout": {**rollout, "spec": {**spec, "strategy": "blue-green"}}})
    assert "<svg" not in broken and "errorRate 0.2 &gt; max 0.05" in broken
