"""Configuration of the multi-stage recommender (pydantic, stored in the bundle)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Unknown keys are refused (a typo is an error, not a silently kept default), and so are
# infinities: a bound like ``ge=0`` lets ``Infinity`` (which json.loads accepts) through,
# and e.g. retrieval.weight_decay=inf trains NaN embeddings without an error.
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)

__all__ = ["RetrievalConfig", "RankerConfig", "RerankConfig", "RecommenderConfig"]


class RetrievalConfig(BaseModel):
    """Two-tower retrieval trained with in-batch sampled softmax and logQ correction."""

    model_config = _STRICT

    dim: int = Field(64, ge=4, le=1024, description="Embedding size of both towers.")
    history_len: int = Field(50, ge=1, le=1000, description="Most recent items pooled per user.")
    history_mode: str = Field("causal", pattern="^(causal|set)$", description=(
        "Training history of an example: the user's items before it (causal, next-item "
        "prediction) or a sample of all the user's other items (set, leave-one-out)."))
    separate_history_table: bool = Field(False, description=(
        "History items pooled from their own embedding table instead of the item tower's."))
    history_dropout: float = Field(0.0, ge=0, lt=1, description="Drop history items in training.")
    user_buckets: int = Field(0, ge=0, description=(
        "Hash buckets for user ids (0: 2 × users; else at least 2, bucket 0 is padding)."))
    epochs: int = Field(5, ge=1, le=500)
    batch_size: int = Field(1024, ge=16, le=65536)
    lr: float = Field(3e-3, gt=0, le=1.0)
    weight_decay: float = Field(1e-6, ge=0)
    temperature: float = Field(0.05, gt=0, le=10)
    logq_correction: bool = True
    dropout: float = Field(0.1, ge=0, lt=1)
    id_dropout: float = Field(0.25, ge=0, lt=1, description="Drop the user id embedding, for cold start.")
    item_id_dropout: float = Field(0.0, ge=0, lt=1, description=(
        "Drop the item id embedding in training, so the item tower also learns vectors from "
        "metadata alone (new items get no id vector)."))
    use_user_id: bool = True

    @field_validator("user_buckets")
    @classmethod
    def _buckets_hold_an_id(cls, value: int) -> int:
        if value == 1:
            raise ValueError("must be 0 (automatic) or at least 2: bucket 0 is padding, so "
                             "1 bucket leaves none for user ids")
        return value


class RankerConfig(BaseModel):
    """Second stage: scores retrieval candidates with user, item and cross features."""

    model_config = _STRICT

    enabled: bool = True
    n_candidates: int = Field(200, ge=10, le=5000, description="Retrieval candidates per user.")
    objective: str = Field("rank_xendcg", pattern="^(lambdarank|binary|rank_xendcg)$",
                           description="Pointwise (binary), LambdaMART or listwise (xendcg).")
    n_estimators: int = Field(150, ge=1, le=5000, description=(
        "Most boosting rounds (online cost grows with the trees: ~1 ms for 200 candidates)."))
    learning_rate: float = Field(0.1, gt=0, le=1)
    num_leaves: int = Field(31, ge=2, le=1024)
    min_child_samples: int = Field(20, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    early_stopping_rounds: int = Field(30, ge=0, description="0: train all rounds.")
    valid_frac: float = Field(0.1, ge=0, lt=1, description="Users kept for early stopping.")
    label_mode: str = Field("temporal", pattern="^(temporal|random)$", description=(
        "Which training events become the ranker's labels: each user's last ones "
        "(temporal, as in serving) or a random share (random)."))
    label_frac: float = Field(0.2, gt=0, lt=1, description="Share of each user's events held out.")
    cold_frac: float = Field(0.15, ge=0, lt=1, description=(
        "Share of the ranker's training users cut to fewer than cold_start_events events, "
        "so that it learns to rank for cold users too."))
    max_users: int = Field(50_000, ge=2, description="Users sampled for the ranker's training set.")
    ease_lambda: float = Field(250.0, gt=0, description="Ridge of the EASE item-item feature.")
    ease_time_share: float = Field(1.0, ge=0, le=1, description=(
        "Share of plain co-occurrence in the EASE feature's Gram matrix; the rest counts pairs "
        "of a user's events by how close in time order they are (1: plain EASE)."))
    ease_time_scale: float = Field(5.0, gt=0, le=100, description=(
        "Events apart at which a time-local pair's weight falls to 1/e."))
    session_window: int = Field(10, ge=1, le=100, description=(
        "Events apart within which two items of a user count as session co-occurrence."))
    folds: int = Field(2, ge=1, le=10, description=(
        "Held-out label sets the ranker trains on (rolling back in time, or reseeded)."))
    dense_max_items: int = Field(8000, ge=0, description=(
        "Catalogues up to this size get dense EASE, larger ones sparse top-k cosine."))
    num_threads: int = Field(1, ge=0, description="LightGBM threads offline (0: all cores).")


class RerankConfig(BaseModel):
    """Third stage: business rules, deduplication, genre diversity, freshness."""

    model_config = _STRICT

    diversity: float = Field(0.0, ge=0, le=1, description="MMR weight on genre novelty.")
    freshness: float = Field(0.0, ge=0, le=1, description="Boost for recent release years.")
    exclude_items: list[int] = Field(default_factory=list, description="Unavailable items.")


class RecommenderConfig(BaseModel):
    model_config = _STRICT

    seed: int = Field(42, ge=0, description="Seed of every random draw (numpy needs >= 0).")
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    rerank: RerankConfig = Field(default_factory=RerankConfig)
    cold_start_events: int = Field(5, ge=0, description="Fewer training events: cold user.")
    cold_start: str = Field("popular", pattern="^(popular|model)$", description=(
        "Cold users get recent popularity in their demographic segment (popular) or the "
        "towers and the ranker (model)."))
    popularity_half_life_days: float = Field(30.0, ge=0, description=(
        "Half-life of the time decay of popularity counts (0: plain counts)."))
