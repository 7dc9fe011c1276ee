"""The demo's HTML report: one self-contained page (no scripts, no external assets).

Written to ``<home>/demo/<stamp>/report.html`` (with ``report.json``, the same record) and to
the object store under ``demo/<stamp>/report.html``.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from marquee.settings import Settings

__all__ = ["write_report", "render"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1d232a;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #d6dbe0;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.88rem}
th,td{border:1px solid #d6dbe0;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#17803d;font-weight:600}.bad{color:#c0262d;font-weight:600}
.warn{color:#a15c00;font-weight:600}.muted{color:#66707a;font-size:.85rem}
.kpi{display:inline-block;border:1px solid #d6dbe0;border-radius:6px;padding:.5rem .8rem;
margin:.3rem .5rem .3rem 0}.kpi b{display:block;font-size:1.3rem}
details pre{background:#f6f8fa;padding:.5rem;overflow:auto;max-height:20rem;font-size:.8rem}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _num(x: Any, fmt: str = "{:.4f}") -> str:
    if x is None or x == "":
        return ""
    try:
        return fmt.format(float(x))
    except (TypeError, ValueError):
        return _e(x)


def _table(headers: list[str], rows: list[list[str]], raw: bool = True) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        (c if raw else f"<td>{_e(c)}</td>") for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(x: Any, cls: str = "") -> str:
    return f'<td class="{cls}">{x}</td>' if cls else f"<td>{x}</td>"


def _details(title: str, obj: Any) -> str:
    return (f"<details><summary>{_e(title)}</summary><pre>"
            f"{_e(json.dumps(obj, indent=2, default=str))}</pre></details>")


def _drift_section(rec: dict[str, Any]) -> str:
    drift = rec.get("drift") or {}
    normal, drifted = drift.get("normal"), drift.get("drifted")
    if not normal and not drifted:
        return "<p class='muted'>no drift check ran</p>"
    out = []
    seg = drift.get("segment")
    if seg:
        out.append(f"<p>Injected drift: traffic only from users with "
                   f"<b>{_e(', '.join(f'{k} in {v}' for k, v in seg.items()))}</b>.</p>")
    for label, s in (("normal traffic", normal), ("drifted traffic", drifted)):
        if not s:
            continue
        verdict = ("<span class='bad'>drift</span>" if s["drift_detected"]
                   else "<span class='ok'>no drift</span>")
        link = s.get("outputs", {}).get("report_html")
        judged = sum(not f.get("skipped") for f in s["features"])  # skipped: too few values
        out.append(f"<p><b>{label}</b>: {verdict} — {len(s['drifted_features'])}/"
                   f"{judged} features drifted (share {s['drift_share']:.0%}, "
                   f"alert at {s['drift_share_threshold']:.0%}) over {_e(s['window']['rows'])} "
                   f"requests vs {_e(s['reference_rows'])} reference rows"
                   + (f"; <span class='muted'>drift report {_e(link)}</span>" if link else "")
                   + "</p>")
    names = [f["name"] for f in (normal or drifted)["features"]]
    by = {lab: {f["name"]: f for f in s["features"]} for lab, s in
          (("normal", normal), ("drifted", drifted)) if s}
    rows = []
    for n in names:
        row = [_td(_e(n))]
        thr = None
        for lab in ("normal", "drifted"):
            f = by.get(lab, {}).get(n)
            if f is None:
                row.append(_td(""))
                continue
            thr = f["threshold"]
            if f.get("skipped"):
                row.append(_td(_e(f["skipped"]), "muted"))
                continue
            row.append(_td(_num(f["score"]), "num bad" if f["drifted"] else "num"))
        row.insert(1, _td(_e((by.get("normal") or by.get("drifted"))[n]["method"])))
        row.append(_td(_num(thr, "{:g}"), "num"))
        rows.append(row)
    preds = {lab: {p["name"]: p for p in s["prediction"]} for lab, s in
             (("normal", normal), ("drifted", drifted)) if s}
    for name in ("score", "item_popularity", "genre_mix"):
        row = [_td(f"prediction: {name}")]
        method = thr = ""
        for lab in ("normal", "drifted"):
            p = preds.get(lab, {}).get(name)
            if p is None or p.get("skipped"):
                row.append(_td(_e(p.get("skipped") if p else ""), "muted"))
                continue
            method, thr = p["method"], p["threshold"]
            row.append(_td(_num(p["score"]), "num bad" if p["drifted"] else "num"))
        row.insert(1, _td(_e(method)))
        row.append(_td(_num(thr, "{:g}"), "num"))
        rows.append(row)
    out.append(_table(["feature", "method", "score (normal)", "score (drifted)", "threshold"],
                      rows))
    return "".join(out)


def render(rec: dict[str, Any]) -> str:
    alert, run, rollout = rec.get("alert") or {}, rec.get("run"), rec.get("rollout")
    outcome = rec.get("outcome", "")
    cls = "ok" if outcome == "Succeeded" else ("bad" if outcome in ("failed", "RolledBack",
                                                                    "Failed") else "warn")
    kpis = [("outcome", f"<span class='{cls}'>{_e(outcome)}</span>"),
            ("wall time", f"{rec.get('wall_seconds', 0):.0f} s"),
            ("versions", f"{_e(rec.get('baseline_version'))} → "
                         f"{_e(rec.get('new_version') or '—')}"),
            ("alert → pipeline start",
             f"{alert['alert_to_pipeline_start_seconds']:.2f} s"
             if alert.get("alert_to_pipeline_start_seconds") is not None else "—"),
            ("alerting", _e(rec.get("mode")))]
    parts = [f"<h1>Marquee — the closed loop</h1><p class='muted'>{_e(rec.get('started'))} · "
             f"home {_e(rec.get('home'))} · {_e(rec.get('machine', {}).get('host'))}, "
             f"{_e(rec.get('machine', {}).get('cpus'))} CPUs, load average "
             f"{_e(rec.get('machine', {}).get('load_average_start'))} → "
             f"{_e(rec.get('machine', {}).get('load_average_end'))}</p>",
             "".join(f"<div class='kpi'>{_e(k)}<b>{v}</b></div>" for k, v in kpis)]
    for note in rec.get("notes", []):
        parts.append(f"<p class='warn'>{_e(note)}</p>")

    parts.append("<h2>Timeline</h2>")
    parts.append(_table(["step", "started at (s)", "took (s)"], [
        [_td(_e(s["step"])), _td(_num(s["start_s"], "{:.0f}"), "num"),
         _td(_num(s.get("seconds"), "{:.1f}"), "num")] for s in rec.get("steps", [])]))

    parts.append("<h2>Model versions and gate decisions</h2>")
    parts.append(_table(
        ["version", "aliases", "created", "NDCG@10", "recall@50", "coverage@10", "gate",
         "gate NDCG@10 candidate / production", "pipeline run"],
        [[_td(_e(v["version"]), "num"), _td(_e(", ".join(v["aliases"]))), _td(_e(v["created"])),
          _td(_num(v["metrics"].get("ndcg_at_10")), "num"),
          _td(_num(v["metrics"].get("recall_at_50")), "num"),
          _td(_num(v["metrics"].get("coverage_at_10")), "num"), _td(_e(v["gate"])),
          _td(f"{_num(v['gate_candidate_ndcg'])} / {_num(v['gate_production_ndcg'])}"),
          _td(_e(v["pipeline_run_id"]), "muted")] for v in rec.get("versions", [])]))

    parts.append("<h2>Drift scores</h2>" + _drift_section(rec))

    parts.append("<h2>Alert and retraining</h2>")
    if alert:
        rows = [("alert", alert.get("alertname")), ("via", alert.get("via")),
                ("summary", alert.get("summary")), ("runbook", alert.get("runbook_url")),
                ("fired (Prometheus activeAt / posted)", alert.get("fired_at")),
                ("Alertmanager startsAt", alert.get("alertmanager_starts_at")),
                ("drifted traffic → alert (s)", alert.get("drift_to_alert_seconds")),
                ("retraining run started (decision log)", alert.get("pipeline_started_at")),
                ("alert → pipeline start (s)", alert.get("alert_to_pipeline_start_seconds")),
                ("run", alert.get("run_id")),
                ("alert state at the end", alert.get("state_at_end"))]
        parts.append(_table(["", ""], [[_td(_e(k)), _td(_e(v))] for k, v in rows
                                       if v is not None]))
    if run:
        parts.append(_table(["run", "status", "launcher", "started", "finished", "pipeline run",
                             "version", "gate", "rollout"],
                            [[_td(_e(run["run_id"])), _td(_e(run["status"])),
                              _td(_e(run["launcher"])), _td(_e(run["started_at"])),
                              _td(_e(run["finished_at"])), _td(_e(run["pipeline_run_id"])),
                              _td(_e(run["model_version"])), _td(_e(run["gate_decision"])),
                              _td(_e(run.get("rollout")))]]))
    parts.append("<h3>Retrain trigger: decision log (this run)</h3>")
    parts.append(_table(["time", "decision", "source", "alert", "run", "detail"], [
        [_td(_e(d["time"])), _td(_e(d["decision"]), "ok" if d["decision"] in (
            "started", "rollout-started") else ""), _td(_e(d["source"])),
         _td(_e(d.get("alertname"))), _td(_e(d.get("run_id"))), _td(_e(d.get("detail")))]
        for d in rec.get("decisions", [])]))
    if rec.get("oncall"):
        parts.append(f"<p class='muted'>On-call receiver got {len(rec['oncall'])} alert "
                     "notification(s) (a stand-in pager on one machine).</p>")

    parts.append("<h2>Rollout</h2>")
    if rollout:
        st, spec = rollout["status"], rollout["spec"]
        def ref(r: dict[str, Any]) -> str:
            return f"version {r['version']}" if r.get("version") else f"alias {r.get('alias')}"

        parts.append(f"<p><b>{_e(rollout['name'])}</b>: {_e(spec.get('strategy'))} "
                     f"(then {_e(spec.get('shadow', {}).get('promoteTo'))}) of "
                     f"{_e(ref(spec['candidate']))} against {_e(ref(spec['baseline']))} "
                     f"(version {_e(st.get('baselineVersion'))}); phase "
                     f"<b>{_e(st.get('phase'))}</b> — {_e(st.get('message'))}</p>")
        parts.append(_rollout_chart(rollout))
        rows = []
        for d in st.get("decisions", []):
            oc = d.get("outcome")
            stats = d.get("statistics") or {}
            checks = stats.get("checks") or {}
            brief = ", ".join(f"{k} {v:.4g}" for k, v in checks.items()
                              if isinstance(v, (int, float)))
            rows.append([_td(_e(d.get("time"))), _td(_e(d.get("phase"))),
                         _td(_e(d.get("step")), "num"),
                         _td(_e(oc), {"Successful": "ok", "Failed": "bad"}.get(oc, "warn")),
                         _td(_e(d.get("reason"))), _td(_e(brief)),
                         _td(_details("statistics", stats))])
        parts.append(_table(["time", "phase", "step", "outcome", "reason", "checks",
                             "statistics"], rows))
        parts.append(_details("rollout spec", spec))
    else:
        parts.append("<p class='muted'>no rollout</p>")

    parts.append("<h2>Online quality per model version</h2>")
    q = rec.get("quality") or {}
    parts.append(_table(["version", "bundle", "lists served", "click-through",
                         "95% interval", "NDCG@10 (replayed ground truth)", "lists scored"], [
        [_td(_e(r.get("registry_version"))), _td(_e(b), "muted"),
         _td(_e(r.get("exposures")), "num"), _td(_num(r.get("ctr"), "{:.3f}"), "num"),
         _td(f"{r['ctr_interval'][0]:.3f}–{r['ctr_interval'][1]:.3f}"
             if r.get("ctr_interval") else ""),
         _td(_num(r.get("ndcg_at_10")), "num"), _td(_e(r.get("ndcg_lists")), "num")]
        for b, r in sorted(q.items())]))
    tr = rec.get("traffic") or {}
    if tr:
        # escaped like every other value of the record: report.json is data, not markup
        parts.append(f"<p class='muted'>Replayed {_e(tr.get('requests'))} requests "
                     f"({_e(tr.get('errors'))} errors), p50 {_e(tr.get('p50_ms'))} ms, p99 "
                     f"{_e(tr.get('p99_ms'))} ms; phases: "
                     + ", ".join(f"{_e(p['phase'])} at {_e(p['at'])}"
                                 for p in tr.get("phases", []))
                     + "</p>")

    parts.append("<h2>Processes</h2>")
    parts.append(_table(["name", "pid", "url", "ready (s)", "log"], [
        [_td(_e(s["name"])), _td(_e(s["pid"]), "num"), _td(_e(s["url"])),
         _td(_num(s["ready_seconds"], "{:.1f}"), "num"), _td(_e(s["log"]), "muted")]
        for s in rec.get("services", [])]))
    parts.append(_details("the whole record (report.json)", rec))
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>Marquee demo {_e(rec.get('stamp'))}</title><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>")


def write_report(settings: Settings, record: Any, out_dir: Path) -> tuple[Path, str | None]:
    """Write report.html and report.json locally and to the store."""
    rec = asdict(record) if not isinstance(record, dict) else record
    rec = json.loads(json.dumps(rec, default=str))
    out_dir.mkdir(parents=True, exist_ok=True)
    page = render(rec)
    path = out_dir / "report.html"
    path.write_text(page)
    (out_dir / "report.json").write_text(json.dumps(rec, indent=2))
    uri = None
    try:
        from marquee.store import open_store

        store = open_store(settings.resolved_store_uri, settings.s3_endpoint_url)
        key = f"demo/{rec.get('stamp')}/report.html"
        store.put_bytes(key, page.encode())
        store.put_bytes(f"demo/{rec.get('stamp')}/report.json",
                        json.dumps(rec, indent=2).encode())
        uri = store.uri(key)
    except Exception:  # noqa: BLE001 - the local copy is there; the store may be down
        uri = None
    return path, uri


def _rollout_chart(rollout: dict[str, Any]) -> str:
    """The chart of ``marquee rollout report`` (the candidate's traffic over time, each decision
    marked), or nothing when the recorded rollout no longer parses (a record of an older
    release): the table below still says everything."""
    from serving.rollout.report import chart_svg
    from serving.rollout.spec import parse_rollout
    from serving.rollout.status import RolloutStatus

    try:
        spec = parse_rollout({"metadata": {"name": rollout["name"]},
                              "spec": rollout["spec"]}).spec
        return f"<div>{chart_svg(spec, RolloutStatus.from_dict(rollout['status']))}</div>"
    except Exception:  # noqa: BLE001 - the chart is an extra; the record's table stands
        return ""
