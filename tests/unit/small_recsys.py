"""A tiny recommender world for the recsys harness tests: a few seconds to fit on one core."""

from __future__ import annotations

import pytest
import torch

from recsys.data.synth import generate

SMALL = {"retrieval": {"dim": 8, "epochs": 1, "batch_size": 256, "history_len": 10},
         "ranker": {"n_candidates": 10, "n_estimators": 5, "early_stopping_rounds": 0,
                    "num_leaves": 3, "folds": 1}}


@pytest.fixture(scope="module")
def data():
    """120 users × 60 items × 3,000 events (synthetic, seed 5)."""
    torch.set_num_threads(1)
    return generate(120, 60, 3000, seed=5)
