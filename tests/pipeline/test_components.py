"""Each component called through ``.python_func`` on real small files, chained by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kfp.dsl import Artifact, Dataset, Metrics, Model

from components.factory import build_components
from marquee.errors import InvalidArgumentError
from marquee.registry import Registry
from marquee.settings import Settings
from tests.pipeline.conftest import SYNTH, TINY_CONFIG

C = build_components()


def art(cls, root: Path, name: str):
    a = cls(name=name, uri=str(root / name))
    return a


def run_chain(root: Path, settings: Settings, source: str = SYNTH, config: dict | None = None):
    """ingest → validate → split → features → tune → train → evaluate → register."""
    ds, ok, st = art(Dataset, root, "raw"), art(Dataset, root, "validated"), art(Metrics, root, "s")
    C.ingest.python_func(source=source, dataset=ds, home=str(settings.home))
    C.validate.python_func(dataset=ds, validated=ok, stats=st)
    tr, va, te = (art(Dataset, root, n) for n in ("train", "val", "test"))
    C.split.python_func(dataset=ok, train=tr, val=va, test=te, mode="user_temporal",
                        test_frac=0.2, val_frac=0.1, seed=1)
    ref = art(Dataset, root, "reference")
    C.features.python_func(dataset=ok, train=tr, reference=ref, max_rows=500, seed=1)
    bp = art(Artifact, root, "best_params")
    C.tune.python_func(dataset=ok, train=tr, val=va, best_params=bp, n_trials=0)
    model, stats = art(Model, root, "model"), art(Metrics, root, "train_stats")
    C.train.python_func(dataset=ok, train=tr, val=va, best_params=bp, model=model, stats=stats,
                        config_json=json.dumps(config or TINY_CONFIG), seed=1)
    scores, report = art(Metrics, root, "scores"), art(Artifact, root, "report")
    common = dict(store_uri=settings.resolved_store_uri, registry_uri=settings.resolved_registry_uri)
    C.evaluate.python_func(dataset=ok, train=tr, val=va, test=te, model=model, scores=scores,
                           report=report, tolerance=0.05, **common)
    reg = art(Artifact, root, "registered")
    version = C.register.python_func(dataset=ok, model=model, reference=ref, report=report,
                                     best_params=bp, registered=reg, run_id="test-run", **common)
    return dict(dataset=ds, validated=ok, stats=st, train=tr, val=va, test=te, reference=ref,
                model=model, train_stats=stats, scores=scores, report=report, version=version)


def test_skipped_search_records_the_summary_of_a_search(tmp_path):
    """n_trials 0 writes the fields a search writes (trials a list, not a count)."""
    from recsys.tuning import empty_summary

    bp = art(Artifact, tmp_path, "best_params")
    unused = art(Dataset, tmp_path, "unused")  # a skipped search reads no data
    C.tune.python_func(dataset=unused, train=unused, val=unused, best_params=bp, n_trials=0)
    written = json.loads(Path(bp.path).read_text())
    assert written == {"params": {}, **empty_summary()}
    assert written["trials"] == [] and written["n_trials"] == 0


def test_chain_registers_first_version_as_production(tmp_path, home):
    settings = Settings()
    out = run_chain(tmp_path / "run1", settings)
    # ingest wrote the contract tables and a fingerprint
    assert out["dataset"].metadata["fingerprint"]
    assert set(p.name for p in Path(out["dataset"].path).iterdir()) >= {
        "interactions.parquet", "users.parquet", "items.parquet"}
    # split: disjoint and complete
    parts = [pd.read_parquet(Path(out[n].path) / "interactions.parquet") for n in ("train", "val", "test")]
    raw = pd.read_parquet(Path(out["dataset"].path) / "interactions.parquet")
    assert sum(map(len, parts)) == len(raw)
    # the reference profile has the 20 serving features
    ref = pd.read_parquet(Path(out["reference"].path) / "features.parquet")
    assert ref.shape == (500, 20)
    # metrics were logged on the Metrics artifact and the gate let the first version in
    assert 0.0 < out["scores"].metadata["ndcg_at_10"] <= 1.0
    report = json.loads(Path(out["report"].path).read_text())
    assert report["gate"]["decision"] == "promoted-first"
    reg = Registry(settings.resolved_registry_uri)
    info = reg.get_version(out["version"])
    assert info.aliases == ["production"]
    for tag in ("metric.ndcg_at_10", "metric.recall_at_50", "metric.map_at_10",
                "metric.coverage_at_10", "gate.decision", "data_fingerprint", "params",
                "code_revision", "pipeline_run_id", "bundle_uri"):
        assert tag in info.tags, tag
    assert info.tags["pipeline_run_id"] == "test-run"


def test_second_version_is_gated_against_production(tmp_path, home):
    settings = Settings()
    first = run_chain(tmp_path / "run1", settings)
    second = run_chain(tmp_path / "run2", settings)
    reg = Registry(settings.resolved_registry_uri)
    info = reg.get_version(second["version"])
    assert second["version"] == first["version"] + 1
    assert info.tags["gate.decision"] in ("candidate", "rejected")
    assert float(info.tags["gate.production_ndcg_at_10"]) == pytest.approx(
        reg.get_version(first["version"]).metrics["ndcg_at_10"], rel=1e-4)
    assert reg.get_alias("production").version == first["version"]
    if info.tags["gate.decision"] == "candidate":
        assert reg.get_alias("candidate").version == second["version"]


def test_a_gate_tolerance_above_one_fails_the_evaluate_step_before_it_scores(tmp_path, home):
    """A run started from the Kubeflow UI skips the client's argument check: the step itself
    refuses a tolerance under which every model would pass (floor = production × (1 − 1.5) < 0),
    before it loads any model, and writes no report."""
    settings = Settings()
    out = run_chain(tmp_path / "run1", settings)
    scores, report = art(Metrics, tmp_path, "scores2"), art(Artifact, tmp_path, "report2")
    with pytest.raises(InvalidArgumentError, match=r"gate_tolerance=1\.5: must be from 0 to 1"):
        C.evaluate.python_func(dataset=out["validated"], train=out["train"], val=out["val"],
                               test=out["test"], model=art(Model, tmp_path, "never-written"),
                               scores=scores, report=report, tolerance=1.5,
                               registry_uri=settings.resolved_registry_uri)
    assert not Path(report.path).exists()
    reg = Registry(settings.resolved_registry_uri)
    assert reg.get_alias("production").version == out["version"]  # nothing else changed


def test_split_modes_are_leakage_safe(tmp_path, home):
    root = tmp_path
    ds, ok, st = art(Dataset, root, "raw"), art(Dataset, root, "ok"), art(Metrics, root, "s")
    C.ingest.python_func(source=SYNTH, dataset=ds, home=str(home))
    C.validate.python_func(dataset=ds, validated=ok, stats=st)
    tr, va, te = (art(Dataset, root, n) for n in ("tr", "va", "te"))
    C.split.python_func(dataset=ok, train=tr, val=va, test=te, mode="temporal", test_frac=0.2,
                        val_frac=0.1, seed=0)
    train, val, test = (pd.read_parquet(Path(a.path) / "interactions.parquet") for a in (tr, va, te))
    assert train.timestamp.max() < val.timestamp.min() <= val.timestamp.max() < test.timestamp.min()
    with pytest.raises(InvalidArgumentError, match="split_mode='weekly': use one of"):
        C.split.python_func(dataset=ok, train=tr, val=va, test=te, mode="weekly")


def test_ingest_rejects_unknown_source(tmp_path, home):
    with pytest.raises(ValueError, match="neither movielens-100k"):
        C.ingest.python_func(source="kaggle-netflix", dataset=art(Dataset, tmp_path, "d"))
    with pytest.raises(InvalidArgumentError, match="'people=3' is not one of users=N"):
        C.ingest.python_func(source="synth:people=3", dataset=art(Dataset, tmp_path, "d"))
