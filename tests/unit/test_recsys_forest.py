"""The compiled ranker forest gives exactly LightGBM's scores, or declines."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from recsys.models.forest import CompiledForest


def _data(seed: int = 0, n: int = 2000, d: int = 6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] + np.sin(3 * x[:, 1]) - x[:, 2] * x[:, 3] > 0).astype(np.float32)
    return x, y


def _probe(d: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=2.0, size=(500, d)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = 0.0
    x[rng.random(x.shape) < 0.05] = np.nan
    x[rng.random(x.shape) < 0.02] = 1e-38  # LightGBM reads |v| <= 1e-35 as zero
    return x


def _train(params: dict, x: np.ndarray, y: np.ndarray, rounds: int = 40,
           group: np.ndarray | None = None) -> lgb.Booster:
    base = {"verbose": -1, "num_leaves": 15, "min_child_samples": 5, "seed": 0,
            "deterministic": True, "num_threads": 1}
    return lgb.train({**base, **params}, lgb.Dataset(x, y, group=group), num_boost_round=rounds)


@pytest.mark.parametrize("params", [
    {"objective": "lambdarank"},
    {"objective": "rank_xendcg"},
    {"objective": "regression"},
    {"objective": "regression", "zero_as_missing": True},  # missing type Zero
    {"objective": "regression", "use_missing": False},
])
def test_compiled_forest_scores_equal_booster_predict_exactly(params) -> None:
    x, y = _data()
    x_train = x.copy()
    x_train[np.random.default_rng(2).random(x.shape) < 0.1] = np.nan  # missing type NaN
    group = np.full(100, 20) if params["objective"] != "regression" else None
    booster = _train(params, x_train, y, group=group)
    forest = CompiledForest.build(booster)
    assert forest is not None
    # NaN seen in training gives missing type NaN (zero_as_missing: Zero): the general kernel
    assert forest.general == params.get("use_missing", True)
    for probe in (_probe(x.shape[1]), x[:7], x[:1]):
        got = forest.predict(probe)
        assert np.array_equal(got, booster.predict(probe, num_threads=1))


def test_one_leaf_trees_and_the_kernel_choice() -> None:
    x, _ = _data()
    booster = _train({"objective": "regression"}, x, np.ones(len(x), np.float32), rounds=3)
    forest = CompiledForest.build(booster)
    assert forest is not None
    assert np.array_equal(forest.predict(x[:5]), booster.predict(x[:5]))


def test_objectives_with_a_transformed_output_are_declined() -> None:
    x, y = _data()
    assert CompiledForest.build(_train({"objective": "binary"}, x, y)) is None


def test_wrong_width_is_an_error() -> None:
    x, y = _data()
    forest = CompiledForest.build(_train({"objective": "regression"}, x, y))
    with pytest.raises(ValueError, match="features"):
        forest.predict(x[:, :3])


def test_ranker_online_scores_equal_booster_predict() -> None:
    from recsys.config import RankerConfig
    from recsys.models.rank_features import FEATURES
    from recsys.models.ranker import Ranker, RankExamples

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40 * 20, len(FEATURES))).astype(np.float32)
    y = (x[:, 4] > 0.8).astype(np.float32)
    ranker = Ranker(RankerConfig(n_estimators=30, early_stopping_rounds=0, num_leaves=7))
    ranker.fit_examples(RankExamples(x, y, np.full(40, 20)))
    assert ranker.compiled() is not None
    assert np.array_equal(ranker._predict(x[:200], threads=1),
                          ranker.booster.predict(x[:200], num_threads=1).astype(np.float32))
    first = ranker.compiled()
    ranker.fit_examples(RankExamples(x, 1.0 - y, np.full(40, 20)))  # a new booster
    assert ranker.compiled() is not first


def test_values_at_the_float32_neighbours_of_thresholds_split_as_lightgbm() -> None:
    x, y = _data(n=3000)
    booster = _train({"objective": "regression", "use_missing": False}, x, y, rounds=30)
    forest = CompiledForest.build(booster)
    assert forest is not None and not forest.general
    _, _, feature, threshold, *_ = forest._arrays
    rng = np.random.default_rng(4)
    rows = []
    for f, t in zip(feature, threshold, strict=True):
        t32 = np.float32(t)
        for v in (t32, np.nextafter(t32, np.float32(np.inf)),
                  np.nextafter(t32, np.float32(-np.inf))):
            row = rng.normal(size=x.shape[1]).astype(np.float32)
            row[f] = v
            rows.append(row)
    probe = np.stack(rows)
    assert np.array_equal(forest.predict(probe), booster.predict(probe, num_threads=1))
