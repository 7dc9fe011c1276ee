"""The skew check's page: ``report.html`` beside ``summary.json``.

What on-call opens from a TrainingServingSkew alert: the verdict, every feature (skewed ones
first) with its mismatch rate against its threshold as a bar and the distribution distance,
and for each skewed feature its example requests (request id, served value, offline value).
Self-contained (no scripts, no external CSS or fonts), in the look of the drift check's
``report.html`` (``monitoring.drift.report``); every value from the data is escaped.
"""

from __future__ import annotations

import html
import math

from monitoring.drift.report import check_page_css
from monitoring.skew.job import SkewFeatureResult, SkewSummary
from monitoring.window import Window

__all__ = ["summary_html"]


def _bar(rate: float, threshold: float, skewed: bool) -> str:
    """The mismatch rate on a scale to three times the threshold (the mark), red when
    skewed."""
    ratio = rate / threshold if threshold > 0 else (math.inf if rate > 0 else 0.0)
    width = min(ratio / 3, 1.0) * 100
    colour = "#c0392b" if skewed else "#27ae60"
    return (f'<div class="bar"><div style="width:{width:.1f}%;background:{colour}"></div>'
            f'<span style="left:33.3%"></span></div>')


def _worst_first(f: SkewFeatureResult) -> tuple[bool, float, str]:
    ratio = f.mismatch_rate / f.threshold if f.threshold > 0 else f.mismatch_rate * 1e9
    return (not f.skewed, -ratio, f.name)


def _value(v: object) -> str:
    return "null" if v is None else v if isinstance(v, str) else repr(v)


def _examples(f: SkewFeatureResult) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(x.request_id)}</td><td>{e(_value(x.served))}</td>"
                   f"<td>{e(_value(x.offline))}</td></tr>" for x in f.examples)
    return (f"<h3>{e(f.name)} — {f.mismatches:,} of {f.compared:,} requests differ</h3>"
            + (f"<table><tr><th>request id</th><th>served</th><th>offline</th></tr>{rows}"
               "</table>" if rows else "<p>no examples kept</p>"))


def summary_html(s: SkewSummary, window: Window | None = None) -> str:
    """One page for a skew check; ``window`` (the checked window) is named when given."""
    e = html.escape
    features = sorted(s.features, key=_worst_first)
    rows = "".join(
        f"<tr class={'skew' if f.skewed else 'ok'}><td>{e(f.name)}</td><td>{e(f.kind)}</td>"
        f"<td>{f.mismatch_rate:.2%}</td><td>{f.mismatches:,} / {f.compared:,}</td>"
        f"<td>{f.threshold:.2%}</td><td>{_bar(f.mismatch_rate, f.threshold, f.skewed)}</td>"
        f"<td>{'n/a' if f.distance is None or math.isnan(f.distance) else f'{f.distance:.4f}'}"
        f" <small>{e(f.distance_method)}</small></td>"
        f"<td>{'SKEW' if f.skewed else ''}</td></tr>"
        for f in features)
    examples = "".join(_examples(f) for f in features if f.skewed)
    verdict = (f"SKEW: {len(s.skewed_features)} of {len(s.features)} features skewed "
               f"({e(', '.join(s.skewed_features))})" if s.skew_detected else
               f"no skew: all {len(s.features)} features match")
    span = (f" from {window.since.isoformat()} to {window.until.isoformat()}"
            if window is not None else "")
    left_out = "".join([
        f"; {s.rows_without_features:,} rows without logged features left out"
        if s.rows_without_features else "",
        f"; {s.rows_unreadable:,} rows that cannot be recomputed left out "
        f"(e.g. {e(s.unreadable_example or '')})" if s.rows_unreadable else ""])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Skew: {e(s.model_name)} {e(s.model_version)}</title>
<style>
{check_page_css('skew', s.skew_detected)}
h3{{font-size:1em;margin:1em 0 .3em}}
</style></head><body>
<h1>Skew check — {e(s.model_name)} version {e(s.model_version)}</h1>
<p class="verdict">{verdict}</p>
<p>Window{span}: {s.window_rows:,} payload rows of version {e(s.model_version)};
{s.requests_sampled:,} requests sampled, {s.joined:,} joined with their offline recomputation,
{s.unmatched:,} unmatched{left_out}. Checked {s.created.isoformat()}.</p>
<p>Served features against the training pipeline's feature code, request by request. The bar
is the mismatch rate on a scale to three times its threshold (the mark).
Numbers: <a href="summary.json">summary.json</a></p>
<h2>Features</h2>
<table><tr><th>feature</th><th>kind</th><th>mismatch</th><th>requests</th><th>threshold</th><th></th><th>distance</th><th>skewed</th></tr>
{rows}</table>
<h2>Skewed features: example requests</h2>
{examples or "<p>none</p>"}
<p><small>timings (s): {e(str(s.timings_seconds))}</small></p>
</body></html>
"""
