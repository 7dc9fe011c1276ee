"""Configuring and running training: the recommender configuration, the search space, the
torchrun entry point's arguments and the tune step's time budget.

Each test failed on the code before its fix (session 16, helper E)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from kfp.dsl import Artifact, Dataset
from pydantic import ValidationError

from marquee.errors import InvalidArgumentError
from recsys.config import RecommenderConfig
from recsys.data.files import write_dataset
from recsys.data.split import per_user_temporal_split
from recsys.data.synth import generate
from recsys.tuning import apply_params, search_space

TINY = {"retrieval": {"dim": 16, "epochs": 2, "batch_size": 128, "history_len": 10},
        "ranker": {"enabled": False}}


# ------------------------------------------------------------------ configuration
@pytest.mark.parametrize("overrides", [
    '{"retrieval": {"weight_decay": Infinity}}',
    '{"ranker": {"ease_lambda": Infinity}}',
    '{"popularity_half_life_days": Infinity}',
])
def test_an_infinite_setting_is_refused_naming_it(overrides: str) -> None:
    """Before: bounds like ``ge=0`` let Infinity (json.loads accepts it) through, and
    retrieval.weight_decay=Infinity trained NaN losses and NaN item embeddings without an
    error, into a model that the pipeline went on to evaluate and register."""
    from components.common import recommender_config
    from marquee.errors import InvalidArgumentError

    data = json.loads(overrides)
    section = next(iter(data))
    name = section if not isinstance(data[section], dict) else \
        f"{section}.{next(iter(data[section]))}"
    with pytest.raises(ValidationError, match=rf"{name}\n.*finite number"):
        RecommenderConfig.model_validate(data)
    with pytest.raises(InvalidArgumentError, match=rf"config_json=.*{name}: .*finite"):
        recommender_config(overrides)


# ------------------------------------------------------------------ search space
def test_the_search_space_stays_inside_the_configuration_bounds() -> None:
    """Before: epochs were searched up to twice the base (600 for a base of 300, 1000 for
    500), above retrieval.epochs' bound of 500: those trials failed validation and were lost."""
    base = RecommenderConfig.model_validate({"retrieval": {"epochs": 400, "dim": 1000}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    epochs = []
    for _ in range(40):
        trial = study.ask()
        cfg = apply_params(base, search_space(trial, base))  # raised ValidationError before
        epochs.append(cfg.retrieval.epochs)
        study.tell(trial, 0.0)
    assert max(epochs) > 400  # still searched above the base, up to the bound
    assert max(epochs) <= 500 and min(epochs) >= 200


# ------------------------------------------------------------------ train_dist arguments
@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("s16e_train_dist")
    data = generate(100, 60, 2_500, seed=4)
    write_dataset(data, root / "data")
    few = data.interactions.groupby("user_id").head(2)  # no user has 3 events: no holdout
    write_dataset(type(data)(interactions=few, users=data.users, items=data.items),
                  root / "few")
    (root / "cfg.json").write_text(json.dumps(TINY))
    (root / "typo.json").write_text(json.dumps({"retrieval": {"dims": 16}}))
    (root / "broken.json").write_text('{"retrieval": {')
    return root


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "{root}/nowhere"], "--data {root}/nowhere: {root}/nowhere/interactions.parquet "
                                   "is missing"),
    (["--data", "{root}/data", "--config", "{root}/typo.json"],
     "--config {root}/typo.json: retrieval.dims: Extra inputs are not permitted (got 16)"),
    (["--data", "{root}/data", "--config", "{root}/broken.json"],
     "--config {root}/broken.json: value: Invalid JSON"),
    (["--data", "{root}/data", "--config", "{root}/missing.json"],
     "--config {root}/missing.json: cannot read it: No such file or directory"),
    (["--data", "{root}/data", "--config", "{root}/cfg.json", "--threads", "0"],
     "--threads: must be 1 or more, got 0"),
    (["--data", "{root}/data", "--config", "{root}/cfg.json", "--holdout", "temporal",
      "--eval-users", "0"], "--eval-users: must be 1 or more, got 0"),
    (["--data", "{root}/few", "--config", "{root}/cfg.json", "--holdout", "temporal"],
     "--holdout temporal: held out no test events from {root}/few"),
])
def test_train_dist_refuses_bad_arguments_by_name(root: Path, args: list[str],
                                                  message: str) -> None:
    """Before: tracebacks (DataSourceError, pydantic ValidationError, FileNotFoundError,
    torch's RuntimeError) and, for --eval-users 0 or a holdout with no test events, exit 0
    with a metrics.json whose test NDCG@10 of 0.0 read as a model that scores nothing."""
    out = root / "out"
    cmd = [sys.executable, "-m", "recsys.train_dist", "--out", str(out),
           *(a.format(root=root) for a in args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"error: {message.format(root=root)}" in proc.stderr
    assert not (out / "metrics.json").exists() and not (out / "model").exists()


# ------------------------------------------------------------------ tune step
def test_tune_refuses_a_time_budget_that_runs_no_trial(tmp_path: Path) -> None:
    """Before: timeout_seconds=0 with n_trials=2 (a Kubeflow UI run skips the client's
    check) ran no trial, and the step succeeded with empty params: the base configuration
    went on as if it had been searched."""
    from components.tune import tune

    data = generate(100, 60, 2_500, seed=4)
    split = per_user_temporal_split(data.interactions, test_frac=0.2)

    def art(cls, name: str, frame=None):
        a = cls(name=name, uri=str(tmp_path / name))
        Path(a.path).mkdir(parents=True)
        if frame is not None:
            frame.to_parquet(Path(a.path) / "interactions.parquet", index=False)
        return a

    dataset = art(Dataset, "dataset")
    data.users.to_parquet(Path(dataset.path) / "users.parquet", index=False)
    data.items.to_parquet(Path(dataset.path) / "items.parquet", index=False)
    best = Artifact(name="best_params", uri=str(tmp_path / "best_params"))
    with pytest.raises(InvalidArgumentError,
                       match="timeout_seconds=0: must be 1 or more when n_trials=2"):
        tune(dataset=dataset, train=art(Dataset, "train", split.train),
             val=art(Dataset, "val", split.test), best_params=best, n_trials=2,
             timeout_seconds=0, config_json=json.dumps(TINY))
    assert not Path(best.path).exists()


# ------------------------------------------------------------------ loading a saved model
@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from recsys.recommender import Recommender

    torch.set_num_threads(1)
    data = generate(100, 60, 2_500, seed=4)
    out = tmp_path_factory.mktemp("s16e_saved")
    Recommender(TINY).fit(data.interactions, data.users, data.items, progress=False).save(out)
    return out


@pytest.mark.parametrize(("name", "damage"), [
    ("config.json", "truncate"),
    ("config.json", "unknown setting"),
    ("retrieval.safetensors", "truncate"),
    ("item_embeddings.npy", "truncate"),
    ("segment_popularity.parquet", "truncate"),
])
def test_a_damaged_model_file_is_an_error_naming_it(saved: Path, tmp_path: Path, name: str,
                                                    damage: str) -> None:
    """Before: the readers' own errors, which do not say which file (safetensors'
    SafetensorError "incomplete metadata", numpy's "could only read 464 elements", Arrow's
    "<Buffer>: Parquet magic bytes not found", a bare JSONDecodeError or pydantic error)."""
    import shutil

    from recsys.recommender import Recommender

    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    path = copy / "model" / name
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # a bundle written by a version that had a setting this one does not know
        meta = json.loads(path.read_text())
        meta["config"]["retrieval"]["old_setting"] = 1
        path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"^{path}: not a readable file of a saved "
                                         "recommender") as info:
        Recommender.load(copy)
    if damage != "truncate":
        assert "retrieval.old_setting" in str(info.value)
    Recommender.load(saved)  # the undamaged one still loads


def test_loading_a_directory_without_a_model_names_it(saved: Path) -> None:
    from recsys.recommender import Recommender

    with pytest.raises(FileNotFoundError, match=rf"{saved / 'model'}: no saved recommender"):
        Recommender.load(saved / "model")  # the model/ folder itself, not its parent
