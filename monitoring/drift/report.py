"""The drift check's outputs: JSON summary, a short HTML page, Evidently's report.

* ``summary.json``: ``DriftSummary`` (authoritative numbers, every row of the window).
* ``report.html``: what on-call reads first: verdict, per-feature scores against thresholds,
  reference-vs-current bar charts of every feature (drifted ones first), prediction and
  embedding drift, window and timings. Self-contained, about 100 kB.
* ``evidently.html``: Evidently's report, one ``ValueDrift`` per feature with the configured
  method and threshold, on a random sample (``report.sample_rows``) for the distribution
  plots; its scores are those of the sample. Rendered by a child process after the verdict
  is out (``report.evidently``: never by default, on_drift, always). Its embedded data is
  made inert first (:func:`inert_evidently_data`): Evidently does not escape ``</script>``.

Stored under ``monitoring/drift/<model>/<version>/<UTC stamp>/`` with ``latest.json`` beside.
"""

from __future__ import annotations

import html
import math
import re
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from marquee.store import ObjectStore
from monitoring.drift.config import DriftConfig
from monitoring.drift.summary import (
    DriftSummary,
    FeatureResult,
    Histogram,
    drift_ratio,
    worst_first,
)

__all__ = ["prefetch_evidently", "summary_html", "evidently_html", "EvidentlyRenderer",
           "publish", "put_evidently", "output_prefix", "newer_published", "check_page_css",
           "inert_evidently_data"]

_EVIDENTLY_MODULES = ("evidently", "evidently.metrics", "evidently.core.report",
                      "evidently.legacy.metrics.data_drift.embedding_drift_methods")


def prefetch_evidently() -> threading.Thread:
    """Import Evidently (~5-10 s) in the background while the window is read and scored."""
    import importlib

    def load() -> None:
        for name in _EVIDENTLY_MODULES:
            importlib.import_module(name)

    thread = threading.Thread(target=load, name="import-evidently", daemon=True)
    thread.start()
    return thread


def _bar(method: str, score: float | None, threshold: float, drifted: bool) -> str:
    """The score's way towards drift (:func:`drift_ratio`: a p-value's runs the other way
    from a distance's) on a scale to three times the threshold, red when it drifted."""
    ratio = drift_ratio(method, score, threshold)
    if ratio is None:
        return ""
    width = min(ratio / 3, 1.0) * 100
    colour = "#c0392b" if drifted else "#27ae60"
    return (f'<div class="bar"><div style="width:{width:.1f}%;background:{colour}"></div>'
            f'<span style="left:33.3%"></span></div>')


def _score(x: float | None, fmt: str = ".4f") -> str:
    return "n/a" if x is None or math.isnan(x) else format(x, fmt)


def _worst_first(f: FeatureResult) -> tuple[bool, float]:
    return worst_first(f.drifted, f.method, f.score, f.threshold)


def _svg(h: Histogram | None, width: int = 440, height: int = 150) -> str:
    """Reference (grey) and current (red) shares per bin, as an inline SVG bar chart."""
    if h is None or not h.labels:
        return ""
    e = html.escape
    n = len(h.labels)
    top = max(max(h.reference), max(h.current), 1e-9)
    plot_h, slot = height - 40, (width - 10) / n
    bars = []
    for i, (label, r, c) in enumerate(zip(h.labels, h.reference, h.current)):
        x = 5 + i * slot
        for j, (v, colour) in enumerate(((r, "#95a5a6"), (c, "#c0392b"))):
            bh = v / top * plot_h
            bars.append(f'<rect x="{x + 2 + j * slot * 0.45:.1f}" y="{10 + plot_h - bh:.1f}" '
                        f'width="{slot * 0.42:.1f}" height="{bh:.1f}" fill="{colour}">'
                        f'<title>{e(label)}: reference {r:.1%}, current {c:.1%}</title></rect>')
        bars.append(f'<text x="{x + slot / 2:.1f}" y="{height - 18}" font-size="9" '
                    f'text-anchor="middle">{e(label[:10])}</text>')
    return (f'<svg width="{width}" height="{height}" role="img">{"".join(bars)}'
            f'<text x="5" y="{height - 3}" font-size="10" fill="#555">grey: reference, '
            f'red: current</text></svg>')


def check_page_css(row_class: str, alarm: bool) -> str:
    """The style the drift and skew checks' pages share: a verdict in red (``alarm``) or green,
    rows of class ``row_class`` (the flagged features) shaded, and threshold bars."""
    return f"""body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}
table{{border-collapse:collapse}} td,th{{padding:.2em .7em;border-bottom:1px solid #ddd;text-align:left}}
tr.{row_class} td{{background:#fdecea}} .verdict{{font-size:1.4em;font-weight:bold;color:{'#c0392b' if alarm else '#27ae60'}}}
.bar{{position:relative;width:12em;height:.8em;background:#eee}} .bar div{{height:100%}}
.bar span{{position:absolute;top:-.2em;height:1.2em;border-left:2px solid #333}}"""


def summary_html(s: DriftSummary, evidently_file: str | None = "evidently.html") -> str:
    e = html.escape
    verdict = "DRIFT" if s.drift_detected else "no drift"
    # what else made the verdict DRIFT ("0 of 20 features drifted" alone reads as no drift)
    moved = [p.name for p in s.prediction if p.drifted]
    also = "".join([f"; prediction drift: {e(', '.join(moved))}" if moved else "",
                    "; user embedding drift" if s.embedding and s.embedding.drifted else ""])
    features = sorted(s.features, key=_worst_first)
    rows = "".join(
        f"<tr class={'drift' if f.drifted else 'ok'}><td>{e(f.name)}</td><td>{e(f.kind)}</td>"
        f"<td>{e(f.method)}</td>"
        + (f"<td>{_score(f.score)}</td><td>{f.threshold:g}</td>"
           f"<td>{_bar(f.method, f.score, f.threshold, f.drifted)}</td>"
           f"<td>{'yes' if f.drifted else ''}</td>" if f.skipped is None else
           f"<td colspan=4>skipped: {e(f.skipped)}</td>")
        + f"<td>{f.rows_current:,}{'' if f.exact else ' (sample)'}</td></tr>"
        for f in features)
    judged = sum(f.skipped is None for f in s.features)
    pred = "".join(
        f"<tr class={'drift' if p.drifted else 'ok'}><td>{e(p.name)}</td><td>{e(p.method)}</td>"
        + (f"<td>{_score(p.score)}</td><td>{p.threshold:g}</td>"
           f"<td>{_bar(p.method, p.score, p.threshold, p.drifted)}</td>"
           f"<td>{'yes' if p.drifted else ''}</td>" if p.skipped is None else
           f"<td colspan=4>skipped: {e(p.skipped)}</td>") + "</tr>"
        for p in s.prediction)
    emb = ""
    if s.embedding is not None:
        m = s.embedding
        emb = (f"<h2>User embeddings</h2><p>{e(m.method)}: "
               + (f"score {_score(m.score)}, threshold {m.threshold:g} — "
                  f"{'drift' if m.drifted else 'no drift'} ({m.rows_current} users vs "
                  f"{m.rows_reference})" if m.skipped is None else f"skipped: {e(m.skipped)}")
               + "</p>")
    charts = "".join(
        f"<div class=chart><h3>{e(f.name)} — {e(f.method)} {_score(f.score, '.3f')} "
        f"(threshold {f.threshold:g})</h3>{_svg(f.histogram)}</div>"
        for f in features if f.drifted)
    others = "".join(f"<div class=chart><h3>{e(f.name)} — {_score(f.score, '.3f')}</h3>"
                     f"{_svg(f.histogram)}</div>" for f in features
                     if not f.drifted and f.skipped is None)
    versions = ", ".join(f"{e(k)}: {v:,}" for k, v in s.window.model_versions.items())
    link = (f'<p>Distributions per feature (Evidently, on a sample): '
            f'<a href="{evidently_file}">{evidently_file}</a></p>' if evidently_file else "")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Drift: {e(s.model_name)} {e(s.model_version)}</title>
<style>
{check_page_css('drift', s.drift_detected)}
.charts{{display:flex;flex-wrap:wrap;gap:1em}} .chart h3{{font-size:.9em;margin:.3em 0}}
</style></head><body>
<h1>Drift check — {e(s.model_name)} version {e(s.model_version)}</h1>
<p class="verdict">{verdict}: {len(s.drifted_features)} of {judged} features drifted
({s.drift_share:.0%}; dataset drift at {s.drift_share_threshold:.0%}){also}</p>
<p>Window: {e(s.window.source)} — {s.window.rows:,} requests in {s.window.files} files
{('from ' + s.window.since.isoformat() + ' to ' + s.window.until.isoformat()) if s.window.since and s.window.until else ''}
(model versions {versions or 'n/a'}){f'; {s.window.rows_without_features:,} rows without logged features left out' if s.window.rows_without_features else ''}. Reference: {e(s.reference)}, {s.reference_rows:,} rows.
Checked {s.created.isoformat()}.</p>
{link}
<h2>Features</h2>
<table><tr><th>feature</th><th>kind</th><th>method</th><th>score</th><th>threshold</th><th></th><th>drifted</th><th>rows</th></tr>
{rows}</table>
<h2>Drifted features: reference vs current</h2>
<div class=charts>{charts or "<p>none</p>"}</div>
<details><summary>Other features</summary><div class=charts>{others}</div></details>
<h2>Predictions</h2>
<table><tr><th>view</th><th>method</th><th>score</th><th>threshold</th><th></th><th>drifted</th></tr>
{pred}</table>
{emb}
<p><small>timings (s): {e(str(s.timings_seconds))}</small></p>
</body></html>
"""


def _sample(table: pa.Table, n: int, rng: np.random.Generator) -> pa.Table:
    if table.num_rows <= n:
        return table
    return table.take(np.sort(rng.choice(table.num_rows, n, replace=False)))


def _samples(config: DriftConfig, reference: pa.Table, window: pa.Table):  # noqa: ANN202
    rng = np.random.default_rng(config.seed)
    feats = config.resolved()
    n = config.report.sample_rows
    ref = _sample(reference.select([f.name for f in feats]), n, rng).to_pandas()
    cur = _sample(window.select([f.column for f in feats]), n, rng).to_pandas()
    cur.columns = [f.name for f in feats]
    for frame in (ref, cur):  # dictionary-encoded columns arrive as pandas categoricals
        for f in feats:
            if f.kind == "categorical":
                frame[f.name] = frame[f.name].astype(object)
    spec = [[f.name, f.kind, f.method, f.threshold] for f in feats]
    return spec, ref, cur


# Evidently 0.7 writes its report's data as two JSON literals in an inline <script>, one line
# each (`var metric_<id> = {...};`, `var additional_graphs_metric_<id> = {...};`), and does not
# escape "</script>" or "<!--" in them: a feature name or a category holding "</script><img
# src=x onerror=...>" ended the script early and the rest ran as markup in the reader's
# browser. JSON has "<", ">" and "&" only inside strings, where \u003c etc. read the same.
_EVIDENTLY_DATA = re.compile(
    r"^([ \t]*var (?:additional_graphs_)?metric_[0-9a-f]{32} = )(.*)$", re.MULTILINE)
_JSON_IN_SCRIPT = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def inert_evidently_data(page: str) -> str:
    """Evidently's page with its embedded data unable to close the <script> it sits in (what
    the data says is unchanged). JSON escapes line breaks, so a value cannot start a line of
    its own; a page whose data is not the two lines this expects is refused (RuntimeError:
    the drift check then publishes its verdict without Evidently's report), not passed on."""
    found: list[str] = []

    def inert(m: re.Match[str]) -> str:
        found.append(m.group(1).strip())
        return m.group(1) + m.group(2).translate(_JSON_IN_SCRIPT)

    out = _EVIDENTLY_DATA.sub(inert, page)
    if len(found) != 2:
        raise RuntimeError(
            "Evidently's report does not hold its data as two lines `var metric_<id> = <JSON>;` "
            f"(found {len(found)}: {found[:3]}); not published, as text from the data could "
            "run as markup in it")
    return out


def evidently_html(config: DriftConfig, reference: pa.Table, window: pa.Table) -> str:
    """Evidently's report: ValueDrift per feature (configured method/threshold) on samples,
    in this process (its data made inert: :func:`inert_evidently_data`)."""
    from monitoring.drift.evidently_worker import render

    return inert_evidently_data(render(*_samples(config, reference, window)))


class EvidentlyRenderer:
    """Evidently's report from a child process (``monitoring.drift.evidently_worker``)
    started before the window is read, so Evidently's import overlaps the drift check."""

    def __init__(self) -> None:
        import subprocess
        import sys
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="marquee-evidently-"))
        self._log = open(self.dir / "worker.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitoring.drift.evidently_worker", str(self.dir)],
            stdout=self._log, stderr=subprocess.STDOUT)

    def submit(self, config: DriftConfig, reference: pa.Table, window: pa.Table) -> None:
        import json
        import os

        spec, ref, cur = _samples(config, reference, window)
        ref.to_parquet(self.dir / "reference.parquet", index=False)
        cur.to_parquet(self.dir / "current.parquet", index=False)
        (self.dir / "request.part").write_text(json.dumps({"features": spec}))
        os.replace(self.dir / "request.part", self.dir / "request.json")

    def result(self, timeout: float = 600.0) -> str:
        """The HTML, its data made inert (:func:`inert_evidently_data`); raises RuntimeError
        with the worker's output when it failed."""
        import shutil
        import subprocess

        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        try:
            out = self.dir / "evidently.html"
            if code != 0 or not out.exists():
                tail = (self.dir / "worker.log").read_text()[-1500:]
                raise RuntimeError(f"Evidently report worker exited {code}: {tail}")
            return inert_evidently_data(out.read_text())
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def cancel(self) -> None:
        import shutil

        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def output_prefix(s: DriftSummary) -> str:
    """``monitoring/drift/<model>/<version>/<UTC stamp>``; the stamp has microseconds, so two
    checks of one version finishing in the same second (two jobs, ``--every`` under 1 s)
    do not write over each other's report."""
    return f"monitoring/drift/{s.model_name}/{s.model_version}/{s.created:%Y%m%dT%H%M%S.%fZ}"


def publish(store: ObjectStore, s: DriftSummary, report: str) -> dict[str, str]:
    """Write report.html, then summary.json and latest.json; ``s.outputs`` gets the URIs."""
    prefix = output_prefix(s)
    store.put_bytes(f"{prefix}/report.html", report.encode())
    s.outputs["report_html"] = store.uri(f"{prefix}/report.html")
    s.outputs["summary_json"] = store.uri(f"{prefix}/summary.json")
    _put_summary(store, s)
    return s.outputs


def put_evidently(store: ObjectStore, s: DriftSummary, html: str) -> None:
    """Add Evidently's report beside a published summary (and list it in the summary)."""
    prefix = output_prefix(s)
    store.put_bytes(f"{prefix}/evidently.html", html.encode())
    s.outputs["evidently_html"] = store.uri(f"{prefix}/evidently.html")
    _put_summary(store, s)


def _put_summary(store: ObjectStore, s: DriftSummary) -> None:
    body = s.model_dump_json(indent=2).encode()
    store.put_bytes(f"{output_prefix(s)}/summary.json", body)
    latest = f"monitoring/drift/{s.model_name}/{s.model_version}/latest.json"
    if newer_published(store, latest, s.created):
        return  # a later check published meanwhile (Evidently's report came after it)
    store.put_bytes(latest, body)


def newer_published(store: ObjectStore, latest: str, created: datetime) -> bool:
    """Whether ``latest`` holds a check created after ``created``: latest.json stays the
    newest summary, whichever of two checks finishes writing last (drift and skew alike)."""
    import json

    from marquee.errors import MarqueeError

    try:
        stored = json.loads(store.get_bytes(latest))["created"]
        return datetime.fromisoformat(stored.replace("Z", "+00:00")) > created
    except (MarqueeError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return False  # none yet, or unreadable: this summary replaces it
