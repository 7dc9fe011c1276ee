"""``marquee rollout report``: one rollout as a self-contained HTML page.

What a release owner forwards after a rollout ended (or while it runs): the header (versions,
strategy, phase, times, message), a step chart of the candidate's share of traffic drawn from
the decisions, a marker per decision coloured by its outcome, the figures that decided it
(threshold checks, the A/B test, the interleaving sign test, shadow agreement) as far as the
decisions' statistics hold them, and every decision in a table.

The page is built from the stored status alone, plus the spec when it still parses (a rollout
frozen on a refused spec is reported too, its weights then read from the decisions' own
words). Nothing is invented: a figure missing from the statistics is shown as ``n/a`` or not
at all. Every text that comes from the store is escaped. No scripts, no external CSS: the
chart is inline SVG drawn here, as ``monitoring/drift/report.py`` draws its histograms.

People edit a status by hand (``kubectl edit --subresource=status``, ``status.json``), and a
decision's ``statistics`` is free-form JSON: any value may sit where a figure is expected. A
value the page cannot use as a number is shown as ``n/a`` (the decision's full statistics
are still printed as JSON in its row), one it cannot use as text is shown as its JSON.
"""

from __future__ import annotations

import html
import json
import re
from typing import TYPE_CHECKING, Any

from serving.rollout.display import usable, utc
from serving.rollout.status import Decision, Outcome, Phase, RolloutStatus

if TYPE_CHECKING:
    from serving.rollout.spec import RolloutSpec

__all__ = ["report_html", "candidate_share", "mirrored_share"]


PHASE_COLOUR = {
    Phase.PENDING: "#7f8c8d", Phase.SHADOWING: "#8e44ad", Phase.PROGRESSING: "#2471a3",
    Phase.PAUSED: "#d68910", Phase.PROMOTING: "#17a589", Phase.SUCCEEDED: "#1e8449",
    Phase.ROLLED_BACK: "#c0392b", Phase.FAILED: "#922b21",
}
OUTCOME_COLOUR = {Outcome.SUCCESSFUL: "#1e8449", Outcome.FAILED: "#c0392b"}
OTHER_COLOUR = "#d68910"  # Inconclusive (or anything newer)

# The machine's own words when it enters a stage (serving/rollout/machine.py): read only when
# the spec no longer parses, to draw the weights of a frozen rollout.
_WEIGHT_WORDS = (re.compile(r"candidate weight (\d+)%"), re.compile(r"A/B test \d+/(\d+)"))
_SHADOW_WORDS = re.compile(r"shadowing (\d+)% of requests")


def _text(value: Any) -> str:
    """A stored value as text: a string as it is, anything else (a hand-edited version that
    is a number, a list, an object) as its JSON, so the page shows what the status holds."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _e(value: Any) -> str:
    """HTML-escaped text of any stored value (``html.escape`` alone fails on a non-string)."""
    return html.escape(_text(value))


def _num(x: Any, fmt: str = ".4g", unit: str = "") -> str:
    if not usable(x):
        return "n/a"
    return (str(x) if isinstance(x, int) and fmt == ".4g" else format(x, fmt)) + unit


def _ratio(a: Any, b: Any) -> float | None:
    """``a / b`` when both are usable numbers and the result is one (None otherwise)."""
    if not (usable(a) and usable(b)) or b == 0:
        return None
    try:
        return a / b
    except OverflowError:  # int / int beyond float range
        return None


def _numbers(values: Any, fmt: str = ".4g") -> str:
    """A list of figures joined by " / " (a single value, as an edited status may hold, is
    shown alone)."""
    items = values if isinstance(values, list) else [] if values is None else [values]
    return " / ".join(_num(v, fmt) for v in items)


def _outcome_colour(outcome: Outcome) -> str:
    return OUTCOME_COLOUR.get(outcome, OTHER_COLOUR)


# --- traffic over time --------------------------------------------------------------------------
def candidate_share(spec: RolloutSpec | None, decision: Decision) -> int | None:
    """The candidate's percent of live traffic after ``decision`` (None: not known, a
    rollout whose spec is refused and whose decision does not say)."""
    if decision.phase in (Phase.PENDING, Phase.SHADOWING, Phase.ROLLED_BACK, Phase.FAILED):
        return 0
    if decision.phase in (Phase.PROMOTING, Phase.SUCCEEDED):
        return 100
    if spec is None:
        if "team-draft interleaving" in decision.reason:
            return 50
        for words in _WEIGHT_WORDS:
            m = words.search(decision.reason)
            if m:
                return int(m.group(1))
        return None
    strategy = spec.shadow.promote_to if spec.strategy == "shadow" else spec.strategy
    if strategy == "ab":
        return spec.ab.candidate_weight
    if strategy == "interleave":
        return 50
    if strategy == "canary":  # a pause keeps the weight of the last weight step before it
        weights = [s.weight for s in spec.steps[:max(decision.step, 0)] if s.weight]
        return weights[-1] if weights else 0
    return 0  # a clean shadow waiting for `promote`: nothing routed to the candidate yet


def mirrored_share(spec: RolloutSpec | None, decision: Decision) -> float | None:
    """Percent of requests mirrored to the candidate while shadowing (None: not shadowing, or
    not known)."""
    if decision.phase != Phase.SHADOWING:
        return None
    if spec is not None:
        return spec.shadow.sample_rate * 100
    m = _SHADOW_WORDS.search(decision.reason)
    return float(m.group(1)) if m else None


def _series(spec: RolloutSpec | None, status: RolloutStatus) -> list[int | None]:
    """Candidate share per decision; unknown ones carry the last known share forward, and the
    last one is the status's own weights (what the controller decided last)."""
    out: list[int | None] = []
    last: int | None = None
    for d in status.decisions:
        w = candidate_share(spec, d)
        last = w if w is not None else last
        out.append(last)
    if out:
        out[-1] = status.weights.candidate
    return out


def _chart(spec: RolloutSpec | None, status: RolloutStatus, width: int = 760,
           height: int = 280) -> str:
    """The candidate's traffic share as a step line, a marker per decision, the final phase."""
    left, right, top, bottom = 46, 120, 14, 40
    pw, ph = width - left - right, height - top - bottom
    ds = status.decisions
    parts = [f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fbfcfc" '
             f'stroke="#d5d8dc"/>']
    for pct in (0, 25, 50, 75, 100):
        y = top + ph - pct / 100 * ph
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#e5e8e8"/><text x="{left - 6}" y="{y + 3:.1f}" font-size="10" '
                     f'text-anchor="end" fill="#555">{pct}%</text>')
    if not ds:
        parts.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph / 2:.1f}" font-size="12" '
                     f'text-anchor="middle" fill="#555">no decisions yet: the controller has '
                     f'not ticked this rollout</text>')
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                f'role="img">{"".join(parts)}</svg>')
    t0 = ds[0].time.timestamp()
    span = ds[-1].time.timestamp() - t0
    n = len(ds)

    def x(i: int) -> float:
        if span <= 0:  # every decision at one instant: spread them by order
            return left + (pw * i / (n - 1) if n > 1 else 0)
        return left + (ds[i].time.timestamp() - t0) / span * pw

    def y(pct: float) -> float:
        return top + ph - pct / 100 * ph

    shares = _series(spec, status)
    # the candidate's live share: a step line over the decisions whose share is known
    path, pen = [], False
    for i, w in enumerate(shares):
        if w is None:
            pen = False
            continue
        path.append(f"{'H' if pen else 'M'}{x(i):.1f}" + (f" V{y(w):.1f}" if pen else
                                                           f" {y(w):.1f}"))
        pen = True
    if path:
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="#2471a3" '
                     f'stroke-width="2.5"><title>candidate share of live traffic</title></path>')
    # shadowing: the share of requests mirrored to the candidate (it answers no user)
    mirrored = [mirrored_share(spec, d) for d in ds]
    for i, m in enumerate(mirrored):
        if m is None:
            continue
        end = x(i + 1) if i + 1 < n else x(i) + 4
        parts.append(f'<line x1="{x(i):.1f}" x2="{end:.1f}" y1="{y(m):.1f}" y2="{y(m):.1f}" '
                     f'stroke="#8e44ad" stroke-width="2" stroke-dasharray="6 4">'
                     f'<title>mirrored to the candidate (shadow): {m:g}% of requests'
                     f'</title></line>')
    for i, d in enumerate(ds):
        w = shares[i]
        rep = d.statistics.get("repeats")
        tip = (f"{utc(d.time)} UTC · {d.phase.value} step {d.step} · {d.outcome.value}"
               + (f" ×{_text(rep)}" if rep else "")
               + f" · candidate {_num(w, unit='%')}: {d.reason}")
        fill, ring = ((_outcome_colour(d.outcome), "#fff") if w is not None else
                      ("#fff", _outcome_colour(d.outcome)))  # hollow: share not known
        parts.append(f'<circle class="decision" cx="{x(i):.1f}" cy="{y(w or 0):.1f}" r="5" '
                     f'fill="{fill}" stroke="{ring}" stroke-width="1.5">'
                     f'<title>{_e(tip)}</title></circle>')
    # the final phase, at the last decision
    last_x, colour = x(n - 1), PHASE_COLOUR.get(status.phase, "#555")
    parts.append(f'<line x1="{last_x:.1f}" x2="{last_x:.1f}" y1="{top}" y2="{top + ph}" '
                 f'stroke="{colour}" stroke-dasharray="3 3"/>'
                 f'<text class="final-phase" x="{last_x + 6:.1f}" y="{top + 12}" font-size="12" '
                 f'font-weight="bold" fill="{colour}">{_e(status.phase.value)}</text>')
    parts.append(f'<text x="{left}" y="{height - 22}" font-size="10" fill="#555">'
                 f'{_e(utc(ds[0].time))} UTC</text><text x="{left + pw}" y="{height - 22}" '
                 f'font-size="10" text-anchor="end" fill="#555">{_e(utc(ds[-1].time))} UTC'
                 f'</text>')
    legend = [("#2471a3", "candidate share of live traffic")]
    if any(m is not None for m in mirrored):
        legend.append(("#8e44ad", "mirrored to the candidate (shadow, dashed)"))
    legend += [(OUTCOME_COLOUR[Outcome.SUCCESSFUL], "Successful"),
               (OUTCOME_COLOUR[Outcome.FAILED], "Failed"), (OTHER_COLOUR, "Inconclusive")]
    lx = left
    for c, label in legend:
        parts.append(f'<rect x="{lx}" y="{height - 12}" width="10" height="10" fill="{c}"/>'
                     f'<text x="{lx + 14}" y="{height - 3}" font-size="10">{_e(label)}</text>')
        lx += 24 + 6 * len(label)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="candidate traffic share over time">{"".join(parts)}</svg>')


def chart_svg(spec: RolloutSpec | None, status: RolloutStatus) -> str:
    """The rollout's chart alone (inline SVG): the candidate's traffic share over time, a
    marker per decision coloured by outcome, the final phase; for other pages (the demo's)."""
    return _chart(spec, status)


def _chart_note(spec: RolloutSpec | None, status: RolloutStatus) -> str:
    notes = []
    if any(d.phase == Phase.SHADOWING for d in status.decisions):
        notes.append("While shadowing, the candidate answers no user: its live share is 0 and "
                     "the dashed line is the share of requests mirrored to it.")
    if spec is None and status.decisions:
        notes.append("The spec no longer parses: the weights are read from the decisions' "
                     "reasons, carried forward where a decision does not state one, and the last "
                     "is the status's current weights.")
    return "".join(f"<p class=note>{_e(n)}</p>" for n in notes)


# --- the figures that decided it ----------------------------------------------------------------
def _threshold(spec: RolloutSpec | None, name: str) -> str:
    if spec is None:
        return "n/a (spec refused)"
    for check in spec.analysis.metrics:
        if check.name == name:
            bounds = ([f"≥ {check.min:g}"] if check.min is not None else []) + (
                [f"≤ {check.max:g}"] if check.max is not None else [])
            return " and ".join(bounds)
    return "n/a"


def _violates(spec: RolloutSpec | None, name: str, value: Any) -> bool:
    if spec is None or not usable(value):
        return False
    for check in spec.analysis.metrics:
        if check.name == name:
            return (check.min is not None and value < check.min) or (
                check.max is not None and value > check.max)
    return False


def _table(head: list[str], rows: list[tuple[str, list[str]]]) -> str:
    """A table whose cells are already HTML; each row carries a class."""
    return ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"
            + "".join(f"<tr class={cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
                      for cls, cells in rows) + "</table>")


def _row_class(d: Decision) -> str:
    return {Outcome.SUCCESSFUL: "ok", Outcome.FAILED: "bad"}.get(d.outcome, "wait")


def _checks_section(spec: RolloutSpec | None, ds: list[Decision]) -> str:
    rows = []
    for d in ds:
        checks = d.statistics.get("checks")
        if not isinstance(checks, dict):
            continue
        for name, value in checks.items():
            if not isinstance(name, str) or name.endswith(("Skipped", "Interval")):
                continue
            interval = checks.get(f"{name}Interval")
            shown = _num(value) + (f" (95% {_num(interval[0])}..{_num(interval[1])})"
                                   if isinstance(interval, list) and len(interval) == 2 else "")
            skipped = checks.get(f"{name}Skipped")
            verdict = ("skipped: " + str(skipped) if skipped else
                       "outside" if _violates(spec, name, value) else
                       "not measured" if value is None else "within")
            cls = "bad" if verdict == "outside" else "wait" if value is None else "ok"
            rows.append((cls, [_e(utc(d.time)), _e(d.phase.value), str(d.step), _e(name),
                               _e(shown), _e(_threshold(spec, name)), _e(verdict),
                               f"<span style='color:{_outcome_colour(d.outcome)}'>"
                               f"{_e(d.outcome.value)}</span>"]))
    if not rows:
        return ""
    return ("<h2>Checks against thresholds</h2><p>Each analysis's metrics of the candidate "
            "against the spec's bounds (a click-through ratio fails only when its whole 95% "
            "interval is out of bounds).</p>"
            + _table(["time (UTC)", "phase", "step", "metric", "value", "threshold", "verdict",
                      "decision"], rows))


def _ab_section(ds: list[Decision]) -> str:
    rows, srm_rows = [], []
    for d in ds:
        m = d.statistics.get("msprt")
        if isinstance(m, dict):
            rows.append((_row_class(d), [
                _e(utc(d.time)), _num(m.get("rate_a")), _num(m.get("rate_b")),
                f"{_num(m.get('n_a'))} / {_num(m.get('n_b'))}",
                _num(m.get("difference"), "+.4f"),
                f"[{_num(m.get('ci_low'), '+.4f')}, {_num(m.get('ci_high'), '+.4f')}]",
                _num(m.get("p_value"), ".3g"), _num(m.get("alpha")), _e(m.get("unit", "n/a")),
                _e(d.outcome.value)]))
        s = d.statistics.get("srm")
        if isinstance(s, dict):
            srm_rows.append(("bad" if s.get("mismatch") else "ok", [
                _e(utc(d.time)), _e(_numbers(s.get("observed"))),
                _e(_numbers(s.get("expected"), ".1f")), _num(s.get("chi2"), ".3g"),
                _num(s.get("p_value"), ".3g"), _num(s.get("threshold")),
                "MISMATCH" if s.get("mismatch") else "no"]))
    if not rows and not srm_rows:
        return ""
    out = "<h2>A/B test</h2>"
    if rows:
        out += ("<p>Click-through per side (lists with a click / lists shown), the candidate's "
                "difference with its always-valid (1−α) interval, and the mSPRT's always-valid "
                "p at each look; the last look decided.</p>"
                + _table(["time (UTC)", "CTR baseline", "CTR candidate", "lists b / c",
                          "difference", "interval", "always-valid p", "alpha", "unit",
                          "decision"], rows))
    if srm_rows:
        out += ("<h3>Sample ratio (users per side vs the declared split)</h3>"
                + _table(["time (UTC)", "users b / c", "expected", "chi²", "p", "threshold",
                          "mismatch"], srm_rows))
    return out


def _interleave_section(ds: list[Decision]) -> str:
    rows = []
    for d in ds:
        st, il = d.statistics.get("signTest"), d.statistics.get("interleave")
        if not isinstance(st, dict) and not isinstance(il, dict):
            continue
        st, il = st if isinstance(st, dict) else {}, il if isinstance(il, dict) else {}
        rows.append((_row_class(d), [
            _e(utc(d.time)), _num(il.get("impressions")), _num(il.get("baseline_wins")),
            _num(il.get("candidate_wins")), _num(il.get("ties")), _num(st.get("share_b"), ".3f"),
            _num(st.get("p_value"), ".3g"), _num(d.statistics.get("fixedHorizonSignTestP"), ".3g"),
            _num(st.get("alpha")), _e(d.outcome.value)]))
    if not rows:
        return ""
    return ("<h2>Interleaving</h2><p>Team-draft wins per side, the candidate's share of the "
            "decided lists and the sequential sign test's always-valid p (the fixed-horizon p "
            "for reference only: it is not valid under repeated looks).</p>"
            + _table(["time (UTC)", "lists", "baseline wins", "candidate wins", "ties",
                      "candidate share", "always-valid p", "fixed-horizon p", "alpha",
                      "decision"], rows))


def _shadow_section(ds: list[Decision]) -> str:
    rows = []
    for d in ds:
        sh = d.statistics.get("shadow")
        if not isinstance(sh, dict):
            continue
        cand, base = sh.get("latency_p99_ms"), sh.get("baseline_latency_p99_ms")
        delta = cand - base if usable(cand) and usable(base) else None
        mirrored, errors = sh.get("mirrored"), sh.get("errors")
        rate = _ratio(errors, mirrored)
        rows.append((_row_class(d), [
            _e(utc(d.time)), _num(mirrored), f"{_num(errors)} ({_num(rate, '.2%')})",
            _num(sh.get("dropped")), _num(sh.get("topk_overlap_mean"), ".3f"),
            _num(sh.get("rbo_mean"), ".3f"), _num(sh.get("kendall_tau_mean"), ".3f"),
            f"{_num(cand, '.1f', ' ms')} vs {_num(base, '.1f', ' ms')}",
            _num(delta, "+.1f", " ms"), _num(sh.get("latency_delta_ms_mean"), "+.1f", " ms"),
            _e(d.outcome.value)]))
    if not rows:
        return ""
    return ("<h2>Shadow</h2><p>Mirrored requests, the candidate's agreement with the "
            "baseline's lists (top-k overlap, rank-biased overlap, Kendall tau) and latency "
            "deltas (candidate − baseline).</p>"
            + _table(["time (UTC)", "mirrored", "errors", "dropped", "top-k overlap", "RBO",
                      "Kendall tau", "p99 candidate vs baseline", "p99 delta",
                      "mean latency delta", "decision"], rows))


def _figures(spec: RolloutSpec | None, ds: list[Decision]) -> str:
    """The sections in the order the strategy runs them (a shadow hands over to another)."""
    first = spec.strategy if spec is not None else None
    sections = {"shadow": _shadow_section(ds), "ab": _ab_section(ds),
                "interleave": _interleave_section(ds), "canary": _checks_section(spec, ds)}
    order = ["shadow", "ab", "interleave", "canary"]
    if first in order:
        order.remove(first)
        order.insert(0, first)
    body = "".join(sections[k] for k in order)
    return body or ("<h2>Analysis</h2><p>No analysis statistics recorded yet (the decisions so "
                    "far hold none).</p>")


# --- the decision table -------------------------------------------------------------------------
def _scalar(value: Any) -> str:
    """One statistic in the short summary: a number formatted, a bool as JSON writes it (not
    ``n/a``: ``srm.mismatch=false`` is a finding), anything else as text."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return _num(value) if isinstance(value, (int, float)) else _text(value)


def _flat(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _flat(v, f"{prefix}{k}.")]
    if value is None:
        return []
    if isinstance(value, list):
        return [f"{prefix[:-1]}=[{', '.join(_scalar(v) for v in value)}]"]
    return [f"{prefix[:-1]}={_scalar(value)}"]


def _compact(stats: dict[str, Any]) -> str:
    if not stats:
        return ""
    pairs = _flat({k: v for k, v in stats.items() if k != "window"})
    short = ", ".join(pairs)
    if len(short) > 140:
        short = short[:139] + "…"
    full = json.dumps(stats, indent=1, sort_keys=True, default=str)
    return (f"<details><summary>{_e(short or 'window only')}</summary><pre>{_e(full)}</pre>"
            f"</details>")


def _decisions(ds: list[Decision]) -> str:
    if not ds:
        return "<h2>Decisions</h2><p>None yet.</p>"
    rows = []
    for d in ds:
        rep = d.statistics.get("repeats")
        rows.append((_row_class(d), [
            _e(utc(d.time)), _e(d.phase.value), str(d.step),
            f"<b style='color:{_outcome_colour(d.outcome)}'>{_e(d.outcome.value)}</b>"
            + (f" ×{_e(rep)}" if rep else ""),
            _e(d.reason), _compact(d.statistics)]))
    return (f"<h2>Decisions ({len(ds)})</h2>"
            + _table(["time (UTC)", "phase", "step", "outcome", "reason", "statistics"], rows))


# --- the page -----------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1c2833;
max-width:1200px}
h1{margin-bottom:4px}h2{margin-top:28px;border-bottom:1px solid #d5d8dc;padding-bottom:3px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #d5d8dc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f2f3f4}tr.bad td{background:#fdedec}tr.wait td{background:#fef9e7}
.phase{display:inline-block;color:#fff;padding:2px 10px;border-radius:10px;font-weight:bold}
.note{color:#555;font-size:13px}dl{display:grid;grid-template-columns:max-content auto;
gap:3px 14px;margin:8px 0}dt{font-weight:bold}dd{margin:0}
pre{font-size:11px;white-space:pre-wrap;max-width:640px}summary{cursor:pointer}
""".strip()


def _shown(value: Any) -> str:
    """A resolved version from the start decision as text ("" when it holds none)."""
    return "" if value is None or value == "" else _text(value)


def report_html(name: str, status: RolloutStatus, spec: RolloutSpec | None = None,
                spec_error: str | None = None, pending_command: str | None = None) -> str:
    """The page of rollout ``name``: ``spec`` None when it no longer parses (``spec_error``
    says why)."""
    ds = status.decisions
    colour = PHASE_COLOUR.get(status.phase, "#555")
    if spec is not None:
        strategy = spec.strategy + (f" → {spec.shadow.promote_to}"
                                    if spec.strategy == "shadow" else "")
        model = spec.model_name
        baseline = _shown(status.baseline_version) or str(spec.baseline)
        candidate = _shown(status.candidate_version) or str(spec.candidate)
    else:
        strategy = model = "n/a (spec refused)"
        baseline = _shown(status.baseline_version) or "n/a"
        candidate = _shown(status.candidate_version) or "n/a"
    started = status.started_at
    ended = ds[-1].time if ds and status.phase.terminal else None
    fields = [
        ("model", _e(model)),
        ("versions", f"baseline {_e(baseline)} → candidate {_e(candidate)}"),
        ("strategy", _e(strategy)),
        ("phase", f"<span class=phase style='background:{colour}'>{_e(status.phase.value)}"
                  f"</span> step {status.step}"
                  + (f"/{len(spec.steps)}" if spec is not None and spec.steps else "")),
        ("weights", f"baseline {status.weights.baseline}% · candidate "
                    f"{status.weights.candidate}%"
                    + (" (decided; NOT applied)" if status.routing_error else "")),
        ("failed checks", f"{status.failed_checks}"
                          + (f"/{spec.analysis.failure_limit}" if spec is not None else "")),
        ("started", f"{_e(utc(started))} UTC" if started else "not yet"),
        ("ended", f"{_e(utc(ended))} UTC" if ended else
                  "running" if not status.phase.terminal else "n/a"),
        ("message", _e(status.message) or "—"),
    ]
    if status.routing_error:
        fields.append(("routing", _e(f"not applied: {status.routing_error}")))
    if pending_command:
        fields.append(("pending command", _e(f"{pending_command} (next controller tick)")))
    if spec_error:
        fields.append(("spec", _e(f"refused: {spec_error}")))
    header = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in fields)
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>rollout {_e(name)}: {_e(status.phase.value)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Rollout {_e(name)}</h1><dl>{header}</dl>"
        f"<h2>Candidate traffic over time</h2>{_chart(spec, status)}{_chart_note(spec, status)}"
        f"{_figures(spec, ds)}{_decisions(ds)}"
        "<p class=note>Generated by <code>marquee rollout report</code> from the stored status; "
        "times in UTC.</p></body></html>\n")
