"""The Grafana dashboard's `variant` and `model_version` variables: every selector of a metric
that carries the label (per monitoring/metrics.py's catalogue) filters on the matching
variable, and no other selector does; the model_version variable lists the versions the
router serves, not only those a drift check has judged."""

from __future__ import annotations

import json
import re

from conftest import REPO

from monitoring.metrics import CATALOGUE

DASHBOARD = REPO / "monitoring" / "grafana" / "marquee.json"
#: label -> the matcher a selector of a metric with that label must carry
SCOPES = {"variant": 'variant=~"$variant"', "model_version": 'model_version=~"$model_version"'}
#: The model servers' ``variant`` label is their own MARQUEE_SERVING_VARIANT setting (empty in
#: the chart), not the router's assignment, so serving panels follow $model_version only.
NOT_SCOPED = {("marquee_serving_", "variant")}
#: A metric name with its selector, if any: ``marquee_x`` or ``marquee_x{...}``.
_SELECTOR = re.compile(r"\b(marquee_[a-z0-9_]+)\b(\{[^}]*\})?")


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _labels_by_series() -> dict[str, tuple[str, ...]]:
    """Every series name Prometheus stores (``_bucket`` etc. included) -> its labels."""
    return {s: m.labels for m in CATALOGUE for s in m.series_names}


def _panel_queries(dash: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def _variable(dash: dict, name: str) -> dict:
    return next(v for v in dash["templating"]["list"] if v["name"] == name)


def test_panel_selectors_filter_on_the_variables_of_their_labels() -> None:
    """A panel that reads a metric labelled `variant` / `model_version` follows the
    dashboard's variable of that name; a metric without the label is not filtered on it
    (the matcher would match nothing but the empty value)."""
    labels = _labels_by_series()
    checked = 0
    for title, expr in _panel_queries(_dashboard()):
        for name, selector in _SELECTOR.findall(expr):
            for label, matcher in SCOPES.items():
                exempt = any(name.startswith(p) and label == lb for p, lb in NOT_SCOPED)
                if label in labels[name] and not exempt:
                    assert matcher in selector, f"{title!r}: {name}{selector} ignores ${label}"
                    checked += 1
                else:
                    assert f"{label}=" not in selector, \
                        f"{title!r}: {name} is not scoped on {label}, yet {selector} filters on it"
    assert checked >= 36, checked  # (selector, label) pairs in 29 queries


def test_model_version_variable_lists_the_router_versions() -> None:
    """A version becomes selectable once the router serves it (marquee_router_variant_info
    carries it), not only after a drift check judged it; the drift job's versions stay."""
    dash = _dashboard()
    var = _variable(dash, "model_version")
    query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
    assert query == var["definition"], var
    for text in (query, var["definition"]):
        used = dict(_SELECTOR.findall(text))
        assert {"marquee_router_variant_info", "marquee_drift_share"} <= set(used), text
        for name, selector in used.items():
            assert "model_version" in _labels_by_series()[name], name
            assert 'namespace=~"$namespace"' in selector, (name, selector)
    if query.startswith("query_result("):
        # an instant query: the regex picks the label out of each result series
        assert var["regex"] == '/model_version="([^"]+)"/', var
        assert "$__range" in query, query  # versions seen over the dashboard's time range
    assert var["multi"] and var["includeAll"] and var["allValue"] == ".*", var
