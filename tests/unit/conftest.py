"""Fixtures shared by the unit tests of the recommender's stages."""

from __future__ import annotations

import pytest

#: A small two-stage model: tiny towers, a 30-tree ranker over 40 candidates, 2 label folds.
TINY = {"retrieval": {"dim": 16, "epochs": 2, "batch_size": 256, "history_len": 20},
        "ranker": {"n_candidates": 40, "n_estimators": 30, "early_stopping_rounds": 0,
                   "num_leaves": 7, "folds": 2}}


@pytest.fixture(scope="session")
def tiny_data():
    """Synthetic events: 250 users × 150 items × 9,000 events (seed 5)."""
    from recsys.data.synth import generate

    return generate(250, 150, 9_000, seed=5)


@pytest.fixture(scope="session")
def tiny_rec(tiny_data):
    """:data:`TINY` fitted on :func:`tiny_data`, once per session; tests must not modify it."""
    import torch

    from recsys.recommender import Recommender

    torch.set_num_threads(1)
    return Recommender(TINY).fit(tiny_data.interactions, tiny_data.users, tiny_data.items,
                                 progress=False)
