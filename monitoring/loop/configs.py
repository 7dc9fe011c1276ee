"""Configuration files of Prometheus and Alertmanager for the loop on one machine.

Both are derived from the repository's single sources, never re-typed:

* rules: ``monitoring/prometheus/alerts.yaml`` as it is; only the ``for:`` durations named in
  ``for_overrides`` are rewritten (a test cannot wait 30 minutes).
* Alertmanager: ``monitoring/alertmanager/alertmanager.yml`` with its route tree and inhibit
  rules unchanged; the receivers' URLs point at the local trigger and on-call sink, the bearer
  token at a local file, and ``group_wait`` is ``0s`` so a firing alert is sent at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ALERT_RULES", "ALERTMANAGER_CONFIG", "rules_yaml", "prometheus_yaml",
           "alertmanager_yaml"]

MONITORING = Path(__file__).resolve().parents[1]
ALERT_RULES = MONITORING / "prometheus" / "alerts.yaml"
ALERTMANAGER_CONFIG = MONITORING / "alertmanager" / "alertmanager.yml"


def rules_yaml(for_overrides: Mapping[str, str] | None = None,
               source: Path = ALERT_RULES) -> str:
    """The alert rules; ``{"ClickThroughDrop": "10s"}`` shortens that alert's ``for:``."""
    text = source.read_text()
    if not for_overrides:
        return text
    doc = yaml.safe_load(text)
    seen = set()
    for group in doc["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert")
            if name in for_overrides:
                rule["for"] = for_overrides[name]
                seen.add(name)
    missing = set(for_overrides) - seen
    if missing:
        raise KeyError(f"no alert rule named {sorted(missing)} in {source}")
    return yaml.safe_dump(doc, sort_keys=False, width=1000)


def prometheus_yaml(scrape: Mapping[str, str], alertmanager: str, rule_file: Path, *,
                    interval: str = "1s") -> str:
    """Scrape ``{job: "127.0.0.1:port"}`` every ``interval``, evaluate rules as often, and
    send alerts to ``alertmanager`` (``127.0.0.1:port``)."""
    doc: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": interval},
        "rule_files": [str(rule_file)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                           for job, target in scrape.items()],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def alertmanager_yaml(trigger_url: str, token_file: Path, oncall_url: str, *,
                      group_wait: str = "0s", source: Path = ALERTMANAGER_CONFIG) -> str:
    """The repository's Alertmanager configuration, pointed at local receivers."""
    doc = yaml.safe_load(source.read_text())
    webhook = trigger_url.rstrip("/") + "/webhook"
    found = False
    for receiver in doc["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            if receiver["name"] == "retrain-trigger":
                hook["url"] = webhook
                auth = hook.setdefault("http_config", {}).setdefault("authorization", {})
                auth["credentials_file"] = str(token_file)
                found = True
            else:
                hook["url"] = oncall_url
    if not found:
        raise KeyError(f"{source}: no retrain-trigger webhook receiver")

    def wait(route: dict[str, Any]) -> None:
        route["group_wait"] = group_wait
        for child in route.get("routes", []):
            if "group_wait" in child or child.get("receiver") == "retrain-trigger":
                wait(child)

    wait(doc["route"])
    return yaml.safe_dump(doc, sort_keys=False)
