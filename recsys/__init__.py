"""The recommender library: data, features, two-tower retrieval, ranking, re-ranking, metrics.

Pure library: DataFrames, tensors and local files in, the same out. Nothing of the platform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Recommender", "RecommenderConfig"]

if TYPE_CHECKING:
    from recsys.config import RecommenderConfig
    from recsys.recommender import Recommender


def __getattr__(name: str) -> Any:  # lazy: `import recsys.data` must not import torch
    if name == "Recommender":
        from recsys.recommender import Recommender

        return Recommender
    if name == "RecommenderConfig":
        from recsys.config import RecommenderConfig

        return RecommenderConfig
    raise AttributeError(name)
