"""The Grafana dashboard and the metric catalogue: every query parses and names only
catalogued metrics; names and labels follow the contract."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml
from conftest import REPO, require_binary

from monitoring.metrics import ALLOWED_LABELS, CATALOGUE, EXTRA_LABELS, metric_names

DASHBOARD = REPO / "monitoring" / "grafana" / "marquee.json"
#: Histograms whose name carries no unit suffix.
UNITLESS_HISTOGRAMS = frozenset({"marquee_serving_score"})


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _queries(dash: dict) -> list[str]:
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    out += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    return out


def _concrete(expr: str) -> str:
    return (expr.replace("$__rate_interval", "5m").replace("$variant", ".*")
            .replace("$model_version", ".*").replace("$namespace", ".*"))


def test_dashboard_layout_and_datasource() -> None:
    dash = _dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    boxes = []
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for other_title, o in boxes:
            overlap = (g["x"] < o["x"] + o["w"] and o["x"] < g["x"] + g["w"]
                       and g["y"] < o["y"] + o["h"] and o["y"] < g["y"] + g["h"])
            assert not overlap, f"{p['title']!r} overlaps {other_title!r}"
        boxes.append((p["title"], g))
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert p["targets"], p["title"]
    titles = " | ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("requests per second", "error", "latency", "rollout", "phase",
                  "click-through per model version", "drift", "skew", "retraining",
                  "serving (model servers)", "model server"):
        assert topic in titles, topic


def test_dashboard_queries_use_catalogued_metrics() -> None:
    known = metric_names() | {"ALERTS"}
    for expr in _queries(_dashboard()):
        used = set(re.findall(r"\b(marquee_[a-z0-9_]+|ALERTS)\b", expr))
        assert used and used <= known, (expr, used - known)


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses every query (as recording rules) after substituting variables."""
    promtool = require_binary("promtool")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": _concrete(e)}
        for i, e in enumerate(_queries(_dashboard()))]}]}
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_catalogue_follows_the_metrics_contract() -> None:
    names = [m.name for m in CATALOGUE]
    assert len(names) == len(set(names))
    for m in CATALOGUE:
        assert re.fullmatch(r"marquee_[a-z]+_[a-z0-9_]+", m.name), m.name
        assert set(m.labels) <= ALLOWED_LABELS | EXTRA_LABELS, (m.name, m.labels)
        assert (m.kind == "counter") == m.name.endswith("_total"), m.name
        if m.kind == "histogram":
            assert m.buckets, m.name
            # marquee_serving_score: the model server's unitless score distribution (its name
            # is fixed by serving/metrics.py and what reads it); every other one has a unit
            assert m.name.endswith(("_seconds", "_ratio")) or m.name in UNITLESS_HISTOGRAMS, \
                m.name
        assert m.help.endswith(".") and len(m.help) > 20, m.name
        assert m.owner in {"monitoring.drift", "monitoring.skew", "monitoring.retrain",
                           "serving", "serving.router", "serving.rollout"}, m.name
    # the names the alerts (and the dashboard's feedback panel) are built on
    for required in ("marquee_drift_share", "marquee_drift_feature_score",
                     "marquee_prediction_drift_score", "marquee_skew_mismatch_rate",
                     "marquee_drift_last_run_timestamp_seconds", "marquee_router_requests_total",
                     "marquee_router_request_duration_seconds", "marquee_router_feedback_total",
                     "marquee_router_exposures_total", "marquee_router_clicked_exposures_total",
                     "marquee_rollout_failed_checks", "marquee_rollout_phase"):
        assert required in names, required


def test_monitoring_jobs_emit_what_the_catalogue_says() -> None:
    from monitoring.drift import metrics as drift
    from monitoring.retrain import metrics as retrain
    from monitoring.skew import metrics as skew

    for module, owner in ((drift, "monitoring.drift"), (skew, "monitoring.skew"),
                          (retrain, "monitoring.retrain")):
        emitted = {m.name for m in module.REGISTRY.collect()}
        emitted = {n if n.startswith("marquee_") else n for n in emitted}
        declared = {m.name.removesuffix("_total") for m in CATALOGUE if m.owner == owner}
        assert emitted == declared, (owner, emitted ^ declared)


def test_readme_documents_every_metric() -> None:
    text = (REPO / "monitoring" / "README.md").read_text()
    missing = [m.name for m in CATALOGUE if f"`{m.name}`" not in text]
    assert not missing, f"monitoring/README.md does not document {missing}"


def _emitted_by_serving() -> set[str]:
    """Names the router's and the controller's Prometheus objects expose (counters with
    ``_total``)."""
    from prometheus_client import REGISTRY

    import serving.rollout.metrics  # noqa: F401 - registers the controller's metrics
    import serving.router.metrics  # noqa: F401 - registers the router's metrics

    return {f.name + ("_total" if f.type == "counter" else "") for f in REGISTRY.collect()
            if f.name.startswith(("marquee_router_", "marquee_rollout_"))}


def test_every_catalogued_serving_metric_is_emitted_with_its_labels() -> None:
    """The alerts and the dashboard query the catalogue's names: a name that the router or
    the controller does not export would leave an alert that can never fire. And the
    catalogue lists every metric they export."""
    from prometheus_client import REGISTRY

    emitted = _emitted_by_serving()
    catalogued = {m.name for m in CATALOGUE if m.owner in {"serving.router", "serving.rollout"}}
    assert catalogued <= emitted, catalogued - emitted
    assert emitted <= catalogued, f"not in monitoring/metrics.py: {emitted - catalogued}"
    by_name = {getattr(c, "_name", None): c for c in REGISTRY._names_to_collectors.values()}
    for m in CATALOGUE:
        if m.owner in {"serving.router", "serving.rollout"}:
            base = m.name[:-len("_total")] if m.kind == "counter" else m.name
            assert tuple(by_name[base]._labelnames) == m.labels, m.name
            if m.kind == "histogram":  # the catalogue's copy of the buckets stays the router's
                assert tuple(by_name[base]._upper_bounds[:-1]) == m.buckets, m.name


def test_router_error_reasons_are_all_documented() -> None:
    """Every `reason` the router's upstream client counts in marquee_router_errors_total is
    named by the catalogue and by monitoring/README.md (status_4xx was missing from both)."""
    from monitoring.metrics import spec

    source = (REPO / "serving" / "router" / "upstream.py").read_text()
    reasons = set(re.findall(r'reason="([a-z0-9_]+)"', source))
    assert {"status_5xx", "status_4xx", "timeout", "connect", "bad_response"} <= reasons
    row = next(line for line in (REPO / "monitoring" / "README.md").read_text().splitlines()
               if line.startswith("| `marquee_router_errors_total` |"))
    help_text = spec("marquee_router_errors_total").help
    for reason in reasons:
        assert reason in row, f"monitoring/README.md: {reason} missing from {row}"
        assert reason in help_text, f"CATALOGUE: {reason} missing from {help_text!r}"


#: A metric name with its selector, if any: ``marquee_x`` or ``marquee_x{...}``.
_SELECTOR = re.compile(r"\b(marquee_[a-z0-9_]+|ALERTS)\b(\{[^}]*\})?")
NAMESPACE_MATCHER = 'namespace=~"$namespace"'


def _variable_queries(dash: dict) -> list[str]:
    out = []
    for v in dash["templating"]["list"]:
        if v["type"] != "query":
            continue
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        out += [query, v["definition"]]
    return out


def test_every_query_is_scoped_to_the_namespace_variable() -> None:
    """Two releases (say staging and prod) can share one Prometheus: a `namespace` variable
    picks one, and every selector of every panel, annotation and metric-naming variable query
    filters on it (a bare metric name without braces fails too). `namespace` is a target
    label (scrape target / Pushgateway grouping key), not one of the catalogue's labels."""
    dash = _dashboard()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ns = variables["namespace"]
    assert ns["type"] == "query" and ns["includeAll"] and not ns["multi"], ns
    assert ns["allValue"] == ".*" and ns["current"]["value"] == "$__all", ns
    assert ns["query"]["query"] == ns["definition"] == \
        "label_values(marquee_router_variant_info, namespace)", ns  # set at router start
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names[:2] == ["datasource", "namespace"], names
    scoped = _queries(dash) + [q for q in _variable_queries(dash) if q != ns["definition"]
                               and q != ns["query"]["query"]]
    checked = 0
    for expr in scoped:
        for name, selector in _SELECTOR.findall(expr):
            assert NAMESPACE_MATCHER in (selector or ""), (name, selector, expr)
            checked += 1
    assert checked >= 40, checked  # 39 panel selectors, the annotation, the variables


#: An aggregation and its ``by (...)`` labels (group 3), if any.
_AGGREGATION = re.compile(r"\b(sum|min|max|avg|count|group|topk|bottomk|quantile)\s*"
                          r"(by\s*\(([^)]*)\)|without\s*\([^)]*\))?\s*\(")
#: The rollout controller's per-rollout gauges (serving/rollout/metrics.py).
_PER_ROLLOUT_GAUGES = ("marquee_rollout_phase", "marquee_rollout_failed_checks",
                       "marquee_rollout_failure_limit", "marquee_rollout_step",
                       "marquee_rollout_candidate_weight_ratio")


def test_rollout_panels_show_one_series_per_rollout() -> None:
    """Two rollouts whose candidates share a version number and a strategy (two models) have
    series of their own, told apart by ``rollout``: a rollout panel that aggregates it away
    or leaves it out of the legend shows the two as one."""
    targets = [t for p in _dashboard()["panels"] for t in p.get("targets", [])
               if any(g in t["expr"] for g in _PER_ROLLOUT_GAUGES)]
    assert len(targets) == 5, [t["expr"] for t in targets]
    for t in targets:
        assert "{{rollout}}" in t["legendFormat"], t
        for m in _AGGREGATION.finditer(t["expr"]):
            assert m[3] is not None and "rollout" in {g.strip() for g in m[3].split(",")}, t
    for name in _PER_ROLLOUT_GAUGES:
        assert {"rollout", "model", "model_version", "strategy"} <= set(
            next(m for m in CATALOGUE if m.name == name).labels), name

