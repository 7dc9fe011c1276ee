"""The register step leaves the store and the registry agreeing: a step run again in the same
pipeline run (a Kubeflow retry keeps the run's id) registers nothing twice, and a model it
refuses to register publishes no bundle that no version points at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp.dsl import Artifact, Metrics

from marquee.registry import Registry
from marquee.settings import Settings
from marquee.store import open_store
from tests.pipeline.test_components import C, art, run_chain


def _bundles(settings: Settings) -> list[str]:
    """The bundle versions published in the store."""
    store = open_store(settings.resolved_store_uri)
    keys = store.list(f"models/{settings.model_name}/")
    return sorted({key.split("/")[2] for key in keys})


def test_a_retried_register_step_does_not_register_the_model_twice(tmp_path, home):
    """Before: the retry published a second bundle and registered it as version 3 (candidate),
    beside version 2, the same model of the same run, left with no alias."""
    settings = Settings()
    common = dict(store_uri=settings.resolved_store_uri,
                  registry_uri=settings.resolved_registry_uri)
    first = run_chain(tmp_path / "run1", settings)  # version 1, production
    # a second run's evaluation: the same model scores as production does, so it passes
    scores, report = art(Metrics, tmp_path, "scores"), art(Artifact, tmp_path, "report")
    C.evaluate.python_func(dataset=first["validated"], train=first["train"], val=first["val"],
                           test=first["test"], model=first["model"], scores=scores,
                           report=report, tolerance=0.05, **common)
    assert json.loads(Path(report.path).read_text())["gate"]["decision"] == "candidate"
    step = dict(dataset=first["validated"], model=first["model"], reference=first["reference"],
                report=report, best_params=art(Artifact, tmp_path / "run1", "best_params"),
                run_id="marquee-training-2", run_uid="0f6c-run-2", **common)
    # the first try registers, then fails (its output cannot be written: a file is in the way)
    (tmp_path / "blocked").write_text("")
    with pytest.raises(OSError):
        C.register.python_func(registered=art(Artifact, tmp_path / "blocked", "out"), **step)
    registry = Registry(settings.resolved_registry_uri)
    assert [v.version for v in registry.list_versions()] == [first["version"], 2]
    # Kubeflow's retry runs the step again, in the same run
    registered = art(Artifact, tmp_path, "registered")
    assert C.register.python_func(registered=registered, **step) == 2
    assert [v.version for v in registry.list_versions()] == [first["version"], 2]
    assert len(_bundles(settings)) == 2
    assert registry.get_alias("candidate").version == 2
    assert registry.get_alias("production").version == first["version"]
    written = json.loads(Path(registered.path).read_text())
    assert written["version"] == 2
    assert written["bundle_uri"] == registry.get_version(2).bundle_uri


def test_a_model_refused_for_a_production_registered_since_publishes_no_bundle(tmp_path, home):
    """Two runs on an empty registry; the second registers after the first became production.
    Its register step refuses the ungated model. Before: it published the bundle first and
    left it in the store, referenced by no registry version."""
    settings = Settings()
    common = dict(store_uri=settings.resolved_store_uri,
                  registry_uri=settings.resolved_registry_uri)
    first = run_chain(tmp_path / "first", settings)
    published = _bundles(settings)
    assert len(published) == 1
    stale = json.loads(Path(first["report"].path).read_text())  # evaluated on an empty registry
    assert stale["gate"]["decision"] == "promoted-first"
    report = art(Artifact, tmp_path, "stale-report")
    Path(report.path).write_text(json.dumps(stale))
    with pytest.raises(RuntimeError, match=rf"version {first['version']} became production "
                                           "after this run's evaluation found none"):
        C.register.python_func(dataset=first["validated"], model=first["model"],
                               reference=first["reference"], report=report,
                               best_params=art(Artifact, tmp_path / "first", "best_params"),
                               registered=art(Artifact, tmp_path, "registered"),
                               run_id="second", run_uid="run-b", **common)
    assert _bundles(settings) == published
    assert [v.version for v in Registry(settings.resolved_registry_uri).list_versions()] == [
        first["version"]]


def test_another_run_with_the_same_run_uid_registers_its_own_version(tmp_path, home):
    """kfp.local's run id is a random 8-digit number: a later run that draws an earlier one's
    id, under another run name, is a run of its own and registers its model."""
    settings = Settings()
    common = dict(store_uri=settings.resolved_store_uri,
                  registry_uri=settings.resolved_registry_uri)
    first = run_chain(tmp_path / "run1", settings)
    step = dict(dataset=first["validated"], model=first["model"], reference=first["reference"],
                report=first["report"], best_params=art(Artifact, tmp_path / "run1", "best_params"),
                **common)
    registry = Registry(settings.resolved_registry_uri)
    registry.set_tags(first["version"], {"pipeline_run_uid": "12345678"})
    Path(first["report"].path).write_text(json.dumps({**json.loads(
        Path(first["report"].path).read_text()), "gate": {
            "decision": "rejected", "candidate_score": 0.1, "production_score": 0.2,
            "production_version": 1, "tolerance": 0.02, "reason": "worse"}}))
    number = C.register.python_func(registered=art(Artifact, tmp_path, "reg"),
                                    run_id="marquee-training-later", run_uid="12345678", **step)
    assert number == first["version"] + 1
    assert len(_bundles(settings)) == 2
