"""The gate's reason (the ``gate.reason`` tag ``marquee registry show`` prints) states the
tolerance the gate applied. Before: it was rounded to a whole percent, so a gate tolerance of
0.005 read "− 0%" (as if the gate were strict) and 0.015 "− 2%"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp.dsl import Artifact, Metrics

from marquee.registry import Registry
from marquee.settings import Settings
from tests.pipeline.test_components import C, art, run_chain


@pytest.mark.parametrize(("tolerance", "shown"), [(0.005, "0.5%"), (0.015, "1.5%")])
def test_the_gate_reason_names_the_tolerance_applied(tmp_path, home, tolerance, shown):
    settings = Settings()
    first = run_chain(tmp_path / "run1", settings)  # version 1, production
    scores, report = art(Metrics, tmp_path, "scores"), art(Artifact, tmp_path, "report")
    C.evaluate.python_func(dataset=first["validated"], train=first["train"], val=first["val"],
                           test=first["test"], model=first["model"], scores=scores,
                           report=report, tolerance=tolerance,
                           registry_uri=settings.resolved_registry_uri)
    gate = json.loads(Path(report.path).read_text())["gate"]
    production = Registry(settings.resolved_registry_uri).get_version(first["version"])
    floor = production.metrics["ndcg_at_10"] * (1 - tolerance)
    assert gate["tolerance"] == tolerance
    assert gate["reason"].endswith(f"− {shown})")
    assert f"{floor:.4f}" in gate["reason"]
