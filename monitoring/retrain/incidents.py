"""``marquee incidents``: firing alerts from Alertmanager (API v2) and recent retraining.

Alertmanager's ``GET /api/v2/alerts`` returns gettable alerts:
``{labels, annotations, startsAt, endsAt, updatedAt, fingerprint, generatorURL,
receivers: [{name}], status: {state: active|suppressed|unprocessed, silencedBy, inhibitedBy}}``.
"""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from marquee.errors import error_text, redact_uri
from monitoring.errors import MonitoringError
from monitoring.retrain.models import Decision, RunRecord

__all__ = ["ActiveAlert", "fetch_alerts", "render_incidents"]

_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


class _AlertStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")
    state: str = "active"
    silencedBy: list[str] = Field(default_factory=list)
    inhibitedBy: list[str] = Field(default_factory=list)


class ActiveAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    fingerprint: str = ""
    status: _AlertStatus = Field(default_factory=_AlertStatus)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "?")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")


def fetch_alerts(alertmanager_url: str, client: httpx.Client | None = None,
                 include_suppressed: bool = False) -> list[ActiveAlert]:
    """Active alerts, most severe and oldest first."""
    params = {"active": "true", "silenced": str(include_suppressed).lower(),
              "inhibited": str(include_suppressed).lower()}
    url = alertmanager_url.rstrip("/") + "/api/v2/alerts"
    own = client is None
    client = client or httpx.Client(timeout=10.0)
    try:
        resp = client.get(url, params=params)
        resp.raise_for_status()
        body = resp.json()
        if not isinstance(body, list):  # another service on that port, a proxy's error page
            raise ValueError(f"expected a JSON list of alerts, got {type(body).__name__}")
        alerts = [ActiveAlert.model_validate(a) for a in body]
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        raise MonitoringError(redact_uri(f"cannot read alerts from {url}: {error_text(exc)}")
                              ) from exc
    finally:
        if own:
            client.close()
    alerts.sort(key=lambda a: (_SEVERITY_ORDER.get(a.severity, 9), a.startsAt))
    return alerts


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return ""
    secs = int((now - when).total_seconds())
    if secs < 90:
        return f"{secs}s ago"
    if secs < 5400:
        return f"{secs // 60}m ago"
    if secs < 2 * 86400:
        return f"{secs // 3600}h{(secs % 3600) // 60:02d}m ago"
    return f"{secs // 86400}d ago"


def _duration(run: RunRecord) -> str:
    if run.started_at is None:
        return ""
    end = run.finished_at or datetime.now(timezone.utc)
    secs = int((end - run.started_at).total_seconds())
    return f"{secs // 60}m{secs % 60:02d}s"


def render_incidents(console: Console, alerts: list[ActiveAlert] | None,
                     runs: list[RunRecord], decisions: list[Decision],
                     alert_source: str, runs_source: str = "") -> None:
    # Every text below comes from elsewhere (Alertmanager's labels and annotations, a run's
    # reason and error, URLs): printed as text, never read as rich markup, in which "[x]"
    # vanished and a "[/x]" ended the command in a MarkupError.
    now = datetime.now(timezone.utc)
    if alerts is None:
        console.print(f"[yellow]Alerts: {escape(alert_source)}[/yellow]")
    else:
        table = Table(title=f"Firing alerts ({escape(alert_source)})", title_justify="left")
        table.add_column("severity", no_wrap=True)
        table.add_column("alert", no_wrap=True)
        table.add_column("where")
        table.add_column("since", no_wrap=True)
        table.add_column("summary", ratio=1)
        runbooks: dict[str, str] = {}
        for a in alerts:
            # the namespace first: the runbooks' commands take it (--namespace, kubectl -n),
            # and releases in several namespaces share one Alertmanager
            where = " ".join(f"{k}={a.labels[k]}" for k in
                             ("namespace", "model_version", "variant", "feature", "strategy")
                             if k in a.labels)
            sev = escape(a.severity)
            style = "bold red" if sev == "critical" else "yellow" if sev == "warning" else ""
            if a.status.state == "suppressed":
                sev += " (silenced)" if a.status.silencedBy else " (inhibited)"
            table.add_row(f"[{style}]{sev}[/{style}]" if style else sev, escape(a.name),
                          escape(where), _ago(a.startsAt, now),
                          escape(a.annotations.get("summary", "")))
            if a.annotations.get("runbook_url"):
                runbooks.setdefault(a.name, a.annotations["runbook_url"])
        if not alerts:
            table.add_row("", "[green]no alerts firing[/green]", "", "", "")
        console.print(table)
        if runbooks:
            console.print("Runbooks:")
            for name, url in runbooks.items():  # whole URLs, never folded: on-call copies them
                console.print(f"  {escape(name)}: {escape(url)}", soft_wrap=True,
                              highlight=False)

    if runs_source:  # whole, never folded: it names a directory or a URL
        console.print(f"Runs and decisions: {escape(runs_source)}", soft_wrap=True,
                      highlight=False)
    table = Table(title="Recent retraining runs", title_justify="left")
    table.add_column("run", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("model")
    table.add_column("requested", no_wrap=True)
    table.add_column("took", no_wrap=True)
    table.add_column("version / gate")
    table.add_column("reason", ratio=1)
    for r in runs:
        colour = {"succeeded": "green", "failed": "red"}.get(r.status.value, "cyan")
        result = " / ".join(x for x in (r.model_version, r.gate_decision) if x)
        table.add_row(escape(r.run_id), f"[{colour}]{r.status.value}[/{colour}]",
                      escape(r.model), _ago(r.requested_at, now), _duration(r),
                      escape(result), escape(r.error or r.reason))
    if not runs:
        table.add_row("", "none yet", "", "", "", "", "")
    console.print(table)

    if decisions:
        table = Table(title="Recent trigger decisions", title_justify="left")
        table.add_column("when", no_wrap=True)
        table.add_column("decision", no_wrap=True)
        table.add_column("source", no_wrap=True)
        table.add_column("alert")
        table.add_column("detail", ratio=1)
        for d in reversed(decisions):
            table.add_row(_ago(d.time, now), d.decision.value, escape(d.source),
                          escape(d.alertname or ""), escape(d.detail))
        console.print(table)
