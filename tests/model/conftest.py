"""Fixtures of the model tests: the planted world and one tiny recommender fitted on it."""

from __future__ import annotations

import pytest
import torch
from tests.model.model_world import TINY, World, make_world

from recsys.config import RecommenderConfig
from recsys.recommender import Recommender


@pytest.fixture(scope="session")
def world() -> World:
    return make_world()


@pytest.fixture(scope="session")
def fitted(world: World) -> Recommender:
    torch.set_num_threads(1)
    return Recommender(RecommenderConfig.model_validate(TINY)).fit(
        world.train, world.users, world.items, progress=False)
