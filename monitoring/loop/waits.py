"""Waiting for the loop's milestones, each read from the part that owns it.

* alert firing — Prometheus' ``/api/v1/alerts`` (``activeAt``) and Alertmanager's
  ``/api/v2/alerts`` (``startsAt``);
* run started / finished — the retrain trigger's decision log and run records
  (``<home>/retrain/``);
* version registered — the MLflow registry;
* rollout started — the rollout's persisted status (``<home>/rollouts/<name>/``) and the
  router's routing in force.

Every wait polls with a bounded timeout and returns what it found.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from monitoring.loop.procs import poll
from serving.router.settings import admin_headers

__all__ = ["parse_time", "prometheus_alerts", "wait_prometheus_ready_for_alerts",
           "wait_alert_firing", "wait_alertmanager_alert", "decisions", "wait_decision",
           "wait_run_finished", "wait_version_registered", "wait_rollout_started",
           "wait_rollout_phase"]


def parse_time(value: str) -> datetime:
    """RFC 3339 with nanoseconds (Prometheus, Alertmanager) → aware datetime."""
    v = re.sub(r"(\.\d{6})\d+", r"\1", value.strip().replace("Z", "+00:00"))
    t = datetime.fromisoformat(v)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _get(url: str, *, headers: dict[str, str] | None = None, **params: Any) -> Any:
    r = httpx.get(url, params=params or None, headers=headers, timeout=3.0, trust_env=False)
    r.raise_for_status()
    return r.json()


def prometheus_alerts(prom_url: str) -> list[dict[str, Any]]:
    return _get(f"{prom_url}/api/v1/alerts")["data"]["alerts"]


def wait_prometheus_ready_for_alerts(prom_url: str, jobs: list[str], *,
                                     timeout: float = 60.0) -> None:
    """Every job's target is up and an Alertmanager is listed (Prometheus discovers both
    every few seconds; an alert fired before that goes nowhere)."""
    def ready() -> bool:
        targets = _get(f"{prom_url}/api/v1/targets")["data"]["activeTargets"]
        up = {t["labels"]["job"] for t in targets if t.get("health") == "up"}
        ams = _get(f"{prom_url}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        return set(jobs) <= up and bool(ams)

    poll(ready, timeout=timeout, interval=0.25, what=f"prometheus targets {jobs} up and "
         "an alertmanager listed")


def wait_alert_firing(prom_url: str, alertname: str, *, timeout: float = 60.0,
                      after: datetime | None = None) -> dict[str, Any]:
    """The first firing ``alertname`` in Prometheus (its ``activeAt`` is when it became
    active; without ``for:`` that is when it fired)."""
    def firing() -> dict[str, Any] | None:
        for a in prometheus_alerts(prom_url):
            if a["labels"].get("alertname") == alertname and a["state"] == "firing" and (
                    after is None or parse_time(a["activeAt"]) >= after):
                return a
        return None

    return poll(firing, timeout=timeout, interval=0.2,  # type: ignore[return-value]
                what=f"{alertname} firing in Prometheus")


def wait_alertmanager_alert(am_url: str, alertname: str, *,
                            timeout: float = 30.0) -> dict[str, Any]:
    """The alert as Alertmanager holds it (``startsAt``, ``fingerprint``, receivers)."""
    def active() -> dict[str, Any] | None:
        for a in _get(f"{am_url}/api/v2/alerts", filter=f'alertname="{alertname}"'):
            if a.get("status", {}).get("state") == "active":
                return a
        return None

    return poll(active, timeout=timeout, interval=0.2,  # type: ignore[return-value]
                what=f"{alertname} active in Alertmanager")


def decisions(home: Path) -> list[Any]:
    from monitoring.retrain.state import StateStore

    return StateStore(Path(home) / "retrain").decisions()


def wait_decision(home: Path, kind: str | tuple[str, ...], *, timeout: float = 60.0,
                  after: datetime | None = None, source: str | None = None) -> Any:
    """The first decision of ``kind`` (e.g. ``started``, ``rollout-started``) in the
    trigger's log, at or after ``after``."""
    kinds = (kind,) if isinstance(kind, str) else kind

    def found() -> Any:
        for d in decisions(home):
            if d.decision.value in kinds and (after is None or d.time >= after) and (
                    source is None or d.source == source):
                return d
        return None

    return poll(found, timeout=timeout, interval=0.1, what=f"decision {'/'.join(kinds)}")


def wait_run_finished(home: Path, run_id: str, *, timeout: float = 300.0) -> Any:
    """The run record once the run succeeded or failed."""
    from monitoring.retrain.state import StateStore

    store = StateStore(Path(home) / "retrain")

    def done() -> Any:
        run = store.load_run(run_id)
        return run if run.status.value in ("succeeded", "failed") else None

    return poll(done, timeout=timeout, interval=0.5, what=f"run {run_id} finished")


def wait_version_registered(registry_uri: str, model: str, *, above: int = 0,
                            timeout: float = 300.0) -> Any:
    """The newest registry version greater than ``above``."""
    from marquee.registry import Registry

    registry = Registry(registry_uri, model)

    def newer() -> Any:
        versions = [v for v in registry.list_versions() if v.version > above]
        return versions[-1] if versions else None

    return poll(newer, timeout=timeout, interval=1.0, what=f"a version of {model} above {above}")


def wait_rollout_started(home: Path, name: str, router_url: str, *,
                         timeout: float = 120.0) -> tuple[Any, dict[str, Any]]:
    """The rollout past Pending in its status, and the router routing to its candidate."""
    from serving.rollout.store import FileStatusStore

    store = FileStatusStore(Path(home) / "rollouts")

    def started() -> tuple[Any, dict[str, Any]] | None:
        stored = store.get(name)
        if stored.status.phase.value == "Pending":
            return None
        routing = _get(f"{router_url}/admin/routing", headers=admin_headers())
        if routing.get("rollout") != name:
            return None
        return stored, routing

    return poll(started, timeout=timeout, interval=0.2,  # type: ignore[return-value]
                what=f"rollout {name} started")


def wait_rollout_phase(home: Path, name: str, phases: tuple[str, ...], *,
                       timeout: float = 300.0) -> Any:
    from serving.rollout.store import FileStatusStore

    store = FileStatusStore(Path(home) / "rollouts")

    def reached() -> Any:
        stored = store.get(name)
        return stored if stored.status.phase.value in phases else None

    return poll(reached, timeout=timeout, interval=0.5,
                what=f"rollout {name} in {'/'.join(phases)}")
