"""Configuration of the multi-stage recommender (pydantic, stored in the bundle)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RetrievalConfig", "RankerConfig", "RerankConfig", "RecommenderConfig"]


class RetrievalConfig(BaseModel):
    """Two-tower retrieval trained with in-batch sampled softmax and logQ correction."""

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(64, ge=4, le=1024, description="Embedding size of both towers.")
    history_len: int = Field(50, ge=1, le=1000, description="Most recent items pooled per user.")
    user_buckets: int = Field(0, ge=0, description="Hash buckets for user ids (0: 2 × users).")
    epochs: int = Field(20, ge=1, le=500)
    batch_size: int = Field(512, ge=16, le=65536)
    lr: float = Field(3e-3, gt=0, le=1.0)
    weight_decay: float = Field(1e-6, ge=0)
    temperature: float = Field(0.05, gt=0, le=10)
    logq_correction: bool = True
    dropout: float = Field(0.1, ge=0, lt=1)
    id_dropout: float = Field(0.25, ge=0, lt=1, description="Drop the user id embedding, for cold start.")
    use_user_id: bool = True


class RankerConfig(BaseModel):
    """Second stage: scores retrieval candidates with user, item and cross features."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    n_candidates: int = Field(200, ge=10, le=5000)
    objective: str = Field("lambdarank", pattern="^(lambdarank|binary|rank_xendcg)$")
    n_estimators: int = Field(300, ge=1, le=5000)
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2, le=1024)
    min_child_samples: int = Field(20, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)


class RerankConfig(BaseModel):
    """Third stage: business rules, deduplication, genre diversity, freshness."""

    model_config = ConfigDict(extra="forbid")

    diversity: float = Field(0.0, ge=0, le=1, description="MMR weight on genre novelty.")
    freshness: float = Field(0.0, ge=0, le=1, description="Boost for recent release years.")
    exclude_items: list[int] = Field(default_factory=list, description="Unavailable items.")


class RecommenderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    rerank: RerankConfig = Field(default_factory=RerankConfig)
    cold_start_events: int = Field(5, ge=0, description="Fewer training events: cold user.")
