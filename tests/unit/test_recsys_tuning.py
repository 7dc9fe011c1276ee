"""Optuna tuning: two real trials on small data."""

from __future__ import annotations

import torch

from recsys.config import RecommenderConfig
from recsys.data.split import per_user_temporal_split
from recsys.data.synth import generate
from recsys.tuning import apply_params, empty_summary, tune

BASE = {"retrieval": {"dim": 16, "epochs": 2, "batch_size": 256, "history_len": 10},
        "ranker": {"n_candidates": 30, "n_estimators": 20, "early_stopping_rounds": 0,
                   "folds": 1}}


def test_apply_params_overrides_nested_fields_only() -> None:
    base = RecommenderConfig.model_validate(BASE)
    cfg = apply_params(base, {"retrieval": {"dim": 32}, "ranker": {"objective": "binary"}})
    assert cfg.retrieval.dim == 32 and cfg.retrieval.epochs == 2
    assert cfg.ranker.objective == "binary" and cfg.ranker.n_candidates == 30
    assert base.retrieval.dim == 16  # the base is not modified


def test_two_trials_return_parameters_that_make_a_valid_config() -> None:
    torch.set_num_threads(1)
    data = generate(150, 80, 5_000, seed=3)
    split = per_user_temporal_split(data.interactions, test_frac=0.2)
    params, summary = tune(split.train, split.test, data.users, data.items, n_trials=2,
                           timeout=300, seed=0, base_config=BASE)
    assert summary["n_trials"] == 2
    assert summary["completed"] + summary["pruned"] + summary["failed"] == 2
    assert summary["completed"] >= 1
    assert 0.0 <= summary["best_value"] <= 1.0
    assert set(params) == {"retrieval", "ranker"}
    cfg = apply_params(RecommenderConfig.model_validate(BASE), params)
    assert cfg.retrieval.history_mode in ("causal", "set")
    for trial in summary["trials"]:
        assert trial["state"] in ("COMPLETE", "PRUNED", "FAIL")
    # a skipped search (the tune component with n_trials 0) records the same fields
    assert set(summary) == set(empty_summary())
    assert all(type(summary[k]) is type(v) for k, v in empty_summary().items() if v is not None)


def test_a_failed_trial_records_why(caplog) -> None:
    """A trial whose fit raised ValueError was counted in ``failed`` with no reason anywhere but
    optuna's own log line: the recorded summary (and the warning that the base configuration
    is kept) did not say what went wrong. Here every trial fails: the items table is empty."""
    torch.set_num_threads(1)
    data = generate(150, 80, 5_000, seed=3)
    split = per_user_temporal_split(data.interactions, test_frac=0.2)
    with caplog.at_level("WARNING", logger="recsys.tuning"):
        params, summary = tune(split.train, split.test, data.users, data.items.iloc[:0],
                               n_trials=1, timeout=300, seed=0, base_config=BASE)
    assert params == {} and summary["failed"] == 1
    [trial] = summary["trials"]
    assert trial["state"] == "FAIL"
    assert trial["error"].startswith("ValueError: items: no rows")
    assert "no trial completed (1x ValueError: items: no rows" in caplog.text
