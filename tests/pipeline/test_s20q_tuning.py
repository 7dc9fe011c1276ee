"""The tune step as a user of the search meets it: a search in which no trial completed, and
what its log shows while it runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from kfp.dsl import Artifact, Dataset

from components.factory import build_components
from recsys.data.split import per_user_temporal_split
from recsys.data.synth import generate

C = build_components()

BASE = {"retrieval": {"dim": 16, "epochs": 2, "batch_size": 256, "history_len": 10},
        "ranker": {"n_candidates": 10, "n_estimators": 20, "early_stopping_rounds": 0,
                   "folds": 1}}


def _inputs(root: Path, n_users: int, n_items: int, n_events: int):
    """dataset (users, items), train and val artifacts of a small synthetic catalogue."""
    torch.set_num_threads(1)
    data = generate(n_users, n_items, n_events, seed=3)
    split = per_user_temporal_split(data.interactions, test_frac=0.2)

    def art(name: str, frame=None) -> Dataset:
        a = Dataset(name=name, uri=str(root / name))
        Path(a.path).mkdir(parents=True)
        if frame is not None:
            frame.to_parquet(Path(a.path) / "interactions.parquet", index=False)
        return a

    dataset = art("dataset")
    data.users.to_parquet(Path(dataset.path) / "users.parquet", index=False)
    data.items.to_parquet(Path(dataset.path) / "items.parquet", index=False)
    return dataset, art("train", split.train), art("val", split.test)


def test_a_search_in_which_every_trial_failed_fails_the_step_naming_why(tmp_path):
    """Before: the step succeeded with empty params (a warning in the log), so train went on
    with the unsearched base configuration and the registry's best_params read {} as if no
    search had been asked for. 10 users and 500 items: no ranker trial finds 2 users with a
    held-out item among their 10 candidates."""
    dataset, train, val = _inputs(tmp_path, 10, 500, 120)
    bp = Artifact(name="best_params", uri=str(tmp_path / "best_params"))
    with pytest.raises(RuntimeError) as caught:
        C.tune.python_func(dataset=dataset, train=train, val=val, best_params=bp, n_trials=2,
                           timeout_seconds=300, config_json=json.dumps(BASE), seed=1)
    message = str(caught.value)
    assert "n_trials=2: no trial of the search completed (2 failed" in message
    assert "2x ValueError: ranker: too few users" in message
    assert "n_trials=0" in message  # how to train the base configuration without a search
    assert not Path(bp.path).exists()


def test_the_step_log_shows_each_trial_and_the_best_so_far(tmp_path, caplog):
    """Before: optuna's INFO lines are silenced and the search logged nothing of its own, so a
    step searching for up to tune_timeout_seconds showed no progress at all."""
    dataset, train, val = _inputs(tmp_path, 150, 80, 5_000)
    bp = Artifact(name="best_params", uri=str(tmp_path / "best_params"))
    with caplog.at_level("INFO", logger="recsys.tuning"):
        C.tune.python_func(dataset=dataset, train=train, val=val, best_params=bp, n_trials=3,
                           timeout_seconds=300, config_json=json.dumps(BASE), seed=1)
    written = json.loads(Path(bp.path).read_text())
    lines = [r.getMessage() for r in caplog.records
             if r.name == "recsys.tuning" and r.getMessage().startswith("tune: trial ")]
    assert len(lines) == 3, lines
    for n, (line, trial) in enumerate(zip(lines, written["trials"]), start=1):
        assert line.startswith(f"tune: trial {n}/3 {trial['state']}"), line
        assert re.search(r"s of the 300 s budget", line), line
    # the last line names the study's best, the value and trial the summary records
    assert (f"best {written['best_value']:.4f} (trial {written['best_trial']})"
            in lines[-1]), lines[-1]
