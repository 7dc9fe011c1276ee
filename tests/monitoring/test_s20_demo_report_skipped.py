"""The demo's HTML report counts and shows drift-check features skipped for too few values
(monitoring/drift/job.py: min_rows per feature) as skipped: before, the summary line divided
by every feature and the table printed the skipped feature's NaN score as a number."""

from __future__ import annotations

from monitoring.loop.report import _drift_section


def _feature(name: str, score: float, drifted: bool, skipped: str | None = None) -> dict:
    return {"name": name, "kind": "numeric", "method": "wasserstein", "threshold": 0.1,
            "score": score, "drifted": drifted, "skipped": skipped}


def test_skipped_features_are_neither_counted_nor_scored() -> None:
    why = "only 5 values in the window; a drift verdict needs at least 200"
    summary = {"drift_detected": False, "drifted_features": ["a"], "drift_share": 0.5,
               "drift_share_threshold": 0.5, "window": {"rows": 1000}, "reference_rows": 5000,
               "prediction": [],
               "features": [_feature("a", 0.3, True), _feature("b", 0.01, False),
                            _feature("c", float("nan"), False, why)]}
    page = _drift_section({"drift": {"normal": summary}})
    assert "1/2 features drifted" in page
    assert why in page and "nan" not in page.lower()
