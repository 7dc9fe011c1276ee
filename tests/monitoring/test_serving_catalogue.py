"""The model server's metrics (serving/metrics.py, serving/payload/metrics.py) and their
catalogue entries (monitoring/metrics.py, owner ``serving``) agree, and the dashboard's
Serving row queries them with labels they have."""

from __future__ import annotations

import json
import re

from conftest import REPO
from prometheus_client.metrics import MetricWrapperBase

from monitoring.metrics import CATALOGUE, MetricSpec, spec

DASHBOARD = REPO / "monitoring" / "grafana" / "marquee.json"
SERVING_ROW = "Serving (model servers)"


def _emitted() -> dict[str, tuple[str, tuple[str, ...], tuple[float, ...] | None]]:
    """name -> (kind, labels, buckets) of every Prometheus object serving/metrics.py and
    serving/payload/metrics.py define (counters under their exposed ``_total`` name)."""
    import serving.metrics as sm
    import serving.payload.metrics as pm

    out = {}
    for obj in [*vars(sm).values(), *vars(pm).values()]:
        if not isinstance(obj, MetricWrapperBase):
            continue
        kind = obj._type
        name = obj._name + ("_total" if kind == "counter" else "")
        buckets = tuple(obj._upper_bounds[:-1]) if kind == "histogram" else None  # drop +Inf
        out[name] = (kind, tuple(obj._labelnames), buckets)
    return out


def _catalogued() -> dict[str, MetricSpec]:
    return {m.name: m for m in CATALOGUE if m.owner == "serving"}


def test_serving_metrics_and_catalogue_name_the_same_metrics() -> None:
    emitted, catalogued = set(_emitted()), set(_catalogued())
    assert len(emitted) >= 9, emitted  # the module's objects were found at all
    assert emitted <= catalogued, f"not in monitoring/metrics.py: {sorted(emitted - catalogued)}"
    assert "marquee_serving_payload_sink_unauthorized_total" in emitted  # the sink's module too
    assert catalogued <= emitted, f"not in serving/(payload/)metrics.py: {sorted(catalogued - emitted)}"


def test_serving_metrics_match_their_specs() -> None:
    """Type, label names (in order) and histogram buckets are the same on both sides."""
    for name, (kind, labels, buckets) in _emitted().items():
        m = spec(name)
        assert m.owner == "serving", name
        assert m.kind == kind, (name, m.kind, kind)
        assert m.labels == labels, (name, m.labels, labels)
        assert m.buckets == buckets, (name, m.buckets, buckets)


def _serving_row_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    rows = [p for p in panels if p["type"] == "row"]
    row = next(p for p in rows if p["title"] == SERVING_ROW)
    top = row["gridPos"]["y"]
    bottom = min((p["gridPos"]["y"] for p in rows if p["gridPos"]["y"] > top), default=10**9)
    return [t["expr"] for p in panels if p["type"] != "row" and top < p["gridPos"]["y"] < bottom
            for t in p["targets"]]


def test_dashboard_serving_row_queries_the_model_servers_with_their_labels() -> None:
    """Every query under the Serving row reads marquee_serving_* metrics only, groups and
    filters by labels each of them has, and the row covers traffic, errors, stage latency,
    cold starts, fallbacks and the payload logger."""
    queries = _serving_row_queries()
    assert queries
    used_metrics: set[str] = set()
    for expr in queries:
        series = set(re.findall(r"\bmarquee_[a-z0-9_]+\b", expr))
        assert series and all(s.startswith("marquee_serving_") for s in series), expr
        specs = []
        for s in series:
            base = re.sub(r"_(bucket|sum|count)$", "", s) if s not in _catalogued() else s
            specs.append(spec(base))
            used_metrics.add(base)
        allowed = set.intersection(*(set(m.labels) for m in specs))
        # `namespace` is a target label (the scrape target's namespace), not one of the
        # metric's own labels: the dashboard's namespace variable filters every selector on it
        allowed.add("namespace")
        if any(s.endswith("_bucket") for s in series):
            allowed.add("le")
        used = {lbl.strip() for group in re.findall(r"\bby \(([^)]*)\)", expr)
                for lbl in group.split(",") if lbl.strip()}
        used |= set(re.findall(r"[{,]\s*([a-z_]+)\s*(?:=~|!~|!=|=)", expr))
        assert used <= allowed, (expr, used - allowed)
    for name in ("marquee_serving_requests_total", "marquee_serving_errors_total",
                 "marquee_serving_stage_latency_seconds", "marquee_serving_cold_starts_total",
                 "marquee_serving_fallbacks_total", "marquee_serving_payload_log_dropped_total",
                 "marquee_serving_payload_log_flush_errors_total"):
        assert name in used_metrics, name
