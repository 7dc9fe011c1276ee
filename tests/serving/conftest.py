"""Serving fixtures: one real bundle (tiny synthetic data, real Recommender), built once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

N_USERS, N_ITEMS, N_EVENTS = 300, 400, 15_000


def build_bundle(root: Path, version: str = "1", seed: int = 1) -> Path:
    """Train the real recommender on tiny synthetic data and write a finalized bundle."""
    from marquee.bundle import finalize_bundle
    from recsys import Recommender
    from recsys.data.synth import generate

    ds = generate(N_USERS, N_ITEMS, N_EVENTS, seed=seed)
    config = {"seed": seed, "retrieval": {"epochs": 1, "dim": 16, "batch_size": 1024},
              "ranker": {"enabled": False}}
    rec = Recommender(config)
    rec.fit(ds.interactions, ds.users, ds.items)
    bundle = root / f"bundle-{version}"
    rec.save(bundle)
    finalize_bundle(bundle, "movie-recommender", version, training_config=config,
                    data_fingerprint=ds.fingerprint(), metrics={"ndcg_at_10": 0.0},
                    code_revision="test")
    return bundle


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("serving-bundle"))
