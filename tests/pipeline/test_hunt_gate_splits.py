"""An unscored model passes no gate, and a search with nothing to score its trials on does not
run: an empty test split fails evaluate, an empty validation split fails tune (n_trials > 0),
and the run's parameters that would produce them are refused before any step runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from kfp.dsl import Artifact, Dataset, Metrics

from marquee.errors import InvalidArgumentError
from marquee.registry import Registry
from marquee.settings import Settings
from pipelines.run import run_local
from tests.pipeline.conftest import SYNTH
from tests.pipeline.test_components import C, art, run_chain


def _validated(root: Path, settings: Settings, events_per_user: int | None = None):
    """The ingest and validate steps on SYNTH (each user cut to ``events_per_user`` events
    in between, when given); the validated dataset."""
    ds, ok, st = art(Dataset, root, "raw"), art(Dataset, root, "ok"), art(Metrics, root, "s")
    C.ingest.python_func(source=SYNTH, dataset=ds, home=str(settings.home))
    if events_per_user:
        path = Path(ds.path) / "interactions.parquet"
        pd.read_parquet(path).groupby("user_id").head(events_per_user).to_parquet(path,
                                                                                  index=False)
    C.validate.python_func(dataset=ds, validated=ok, stats=st)
    return ok


def _split(root: Path, validated, test_frac: float, val_frac: float):
    parts = [art(Dataset, root, n) for n in ("train", "val", "test")]
    C.split.python_func(dataset=validated, train=parts[0], val=parts[1], test=parts[2],
                        mode="user_temporal", test_frac=test_frac, val_frac=val_frac, seed=1)
    return parts


def test_an_empty_test_split_fails_evaluate_instead_of_passing_the_gate(tmp_path, home):
    """Before: NDCG@10 was 0.0 for the new model and for production on an empty split, and
    0 >= 0 × (1 − tolerance) made the unscored model a ``candidate`` (``promoted-first``, i.e.
    production, with an empty registry)."""
    settings = Settings()
    first = run_chain(tmp_path / "run1", settings)
    tr, va = first["train"], first["val"]
    te = art(Dataset, tmp_path, "empty-test")  # a test split with no events (split now refuses
    Path(te.path).mkdir(parents=True)           # to write one; evaluate is a step of its own)
    pd.read_parquet(Path(first["test"].path) / "interactions.parquet").iloc[:0].to_parquet(
        Path(te.path) / "interactions.parquet", index=False)
    scores, report = art(Metrics, tmp_path, "scores2"), art(Artifact, tmp_path, "report2")
    with pytest.raises(ValueError, match="the test split holds no events"):
        C.evaluate.python_func(dataset=first["validated"], train=tr, val=va, test=te,
                               model=first["model"], scores=scores, report=report,
                               tolerance=0.05, registry_uri=settings.resolved_registry_uri)
    assert not Path(report.path).exists()  # no gate decision for register to act on
    registry = Registry(settings.resolved_registry_uri)
    assert [v.version for v in registry.list_versions()] == [first["version"]]
    assert registry.get_alias("candidate") is None


@pytest.mark.parametrize(("test_frac", "events_per_user"), [(0.0, None), (0.2, 2)])
def test_a_split_that_holds_out_no_test_events_fails_before_training(
        tmp_path, home, test_frac, events_per_user):
    """test_frac=0 (a run started from the Kubeflow UI skips the client's check), or users who
    all have fewer than 3 events: before, the run trained, then passed the gate unscored."""
    settings = Settings()
    ok = _validated(tmp_path, settings, events_per_user)
    with pytest.raises(ValueError, match=rf"test_frac={test_frac} held out no test events"):
        _split(tmp_path, ok, test_frac=test_frac, val_frac=0.1)
    assert not (tmp_path / "train" / "interactions.parquet").exists()


def test_a_search_without_a_validation_split_fails_tune(tmp_path, home):
    """Before: every trial scored 0 on the empty validation split and the first trial's random
    parameters (learning rate, dimension, dropouts) were kept and applied over config_json."""
    settings = Settings()
    ok = _validated(tmp_path, settings)
    tr, va, _ = _split(tmp_path, ok, test_frac=0.2, val_frac=0.0)
    bp = art(Artifact, tmp_path, "best_params")
    with pytest.raises(ValueError, match="validation split holds no events"):
        C.tune.python_func(dataset=ok, train=tr, val=va, best_params=bp, n_trials=2,
                           config_json=json.dumps({"ranker": {"enabled": False}}))
    assert not Path(bp.path).exists()


@pytest.mark.parametrize(("params", "message"), [
    ({"test_frac": 0.0}, "test_frac=0.0: must be above 0"),
    ({"test_frac": 0}, "test_frac=0: must be above 0"),
    ({"n_trials": 2, "val_frac": 0.0}, "val_frac=0.0: must be above 0 when n_trials=2"),
])
def test_parameters_that_leave_nothing_to_score_on_are_refused_before_any_step(
        home, params, message):
    settings = Settings()
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        run_local(settings, {"source": SYNTH, **params})
    assert not settings.runs_dir.exists()  # no step ran


def test_no_search_needs_no_validation_split(home):
    """val_frac=0 stays valid without a search (the final model trains on train alone)."""
    from pipelines.run import check_arguments

    check_arguments({"source": SYNTH, "n_trials": 0, "val_frac": 0.0})


def test_a_whole_number_for_a_float_parameter_runs(home, tiny_config_json):
    """``--param gate_tolerance=0`` (a strict gate) reaches ``run_local`` as the int 0. Before:
    it passed the argument check, then kfp refused it with a traceback (InconsistentTypeException:
    'NUMBER_INTEGER' is incompatible with the input type 'NUMBER_DOUBLE') before any step."""
    settings = Settings()
    result = run_local(settings, {"source": "synth:users=60,items=40,events=800,seed=7",
                                  "config_json": tiny_config_json, "gate_tolerance": 0,
                                  "val_frac": 0})
    info = Registry(settings.resolved_registry_uri).get_version(result.version)
    assert info.tags["gate.tolerance"] == "0.0"
    assert info.aliases == ["production"]


def test_a_run_that_found_no_production_does_not_replace_one_registered_since(tmp_path, home):
    """Two runs on an empty registry (a retraining run and a manual one): both evaluate before
    either registers, so both gate as ``promoted-first``. Before: the later register promoted
    its ungated model over the production the other had just registered (and made that one
    ``previous``); the rollout controller is meant to be the only writer of production."""
    settings = Settings()
    common = dict(store_uri=settings.resolved_store_uri,
                  registry_uri=settings.resolved_registry_uri)
    first = run_chain(tmp_path / "first", settings)  # registered: version 1, production
    registry = Registry(settings.resolved_registry_uri)
    assert registry.get_alias("production").version == first["version"]
    # the second run: its evaluation saw the empty registry, its register comes now
    stale = json.loads(Path(first["report"].path).read_text())
    assert stale["gate"]["decision"] == "promoted-first"
    report = art(Artifact, tmp_path, "stale-report")
    Path(report.path).write_text(json.dumps(stale))
    registered = art(Artifact, tmp_path, "registered")
    with pytest.raises(RuntimeError, match=rf"version {first['version']} became production "
                                           "after this run's evaluation found none"):
        C.register.python_func(dataset=first["validated"], model=first["model"],
                               reference=first["reference"], report=report,
                               best_params=art(Artifact, tmp_path / "first", "best_params"),
                               registered=registered, run_id="second", **common)
    assert registry.get_alias("production").version == first["version"]
    assert registry.get_alias("previous") is None
    assert [v.version for v in registry.list_versions()] == [first["version"]]
    assert not Path(registered.path).exists()


@pytest.mark.parametrize("part", ["users=0", "items=0", "events=0"])
def test_an_empty_synthetic_source_is_refused_before_any_step(home, part):
    """Before: ``users=0``/``items=0`` failed in the ingest step (ValueError from the generator)
    and ``events=0`` in validate, after the run had started."""
    settings = Settings()
    with pytest.raises(InvalidArgumentError, match=re.escape(f"'{part}': {part[:-2]} must be "
                                                             "1 or more")):
        run_local(settings, {"source": f"synth:{part},seed=3"})
    assert not settings.runs_dir.exists()


def test_features_refuses_an_empty_drift_reference(tmp_path, home):
    """A run started from the Kubeflow UI skips the client's check of reference_rows. Before:
    reference_rows=0 wrote a drift reference of 0 rows (statistics of nothing) into the
    bundle, and monitoring had nothing to compare served requests with."""
    settings = Settings()
    ok = _validated(tmp_path, settings)
    tr, va, _ = _split(tmp_path, ok, test_frac=0.2, val_frac=0.1)
    ref = art(Dataset, tmp_path, "reference")
    with pytest.raises(InvalidArgumentError, match=r"reference_rows=0: must be 1 or more"):
        C.features.python_func(dataset=ok, train=tr, val=va, reference=ref, max_rows=0, seed=1)
    assert not (Path(ref.path) / "features.parquet").exists()
