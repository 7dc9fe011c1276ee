"""Bodies of the router's HTTP API: the product API and the admin API the controller uses.

Product API (clients): ``POST /recommend``, ``POST /feedback``.
Admin API (the rollout controller): ``GET/PUT /admin/routing``, ``GET /admin/stats``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.fields import (
    REQUEST_ID_MAX_LENGTH,
    REQUEST_ID_PATTERN,
    Context,
    Demographics,
    History,
    ItemId,
    TopK,
    UserId,
)

__all__ = [
    "RecommendRequest", "RecommendResponse", "FeedbackRequest", "FeedbackResponse",
    "Upstream", "RoutingConfig", "SavedRouting", "RoutingState", "VariantWindow", "ShadowWindow",
    "InterleaveWindow", "WindowStats", "RoutingStrategy", "Variant", "FeedbackEvent",
    "UpstreamUrl", "ModelVersion",
]

RoutingStrategy = Literal["single", "shadow", "canary", "ab", "interleave"]
Variant = Literal["baseline", "candidate", "interleaved"]
FeedbackEvent = Literal["impression", "click", "watch"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- product API ---------------------------------------------------------------------------
# The fields have the model server's own types and limits (strict: "7", 7.0 and true are not
# the integer 7), so a request the router accepts is one the model server accepts, and a 4xx
# from a model server is that server's fault, not the client's.
class RecommendRequest(_Strict):
    user_id: UserId
    k: TopK = 10
    context: Context | None = None
    history: History | None = None
    demographics: Demographics | None = None  # a user the model has no record of


class RecommendResponse(BaseModel):
    request_id: str
    user_id: int
    items: list[int]
    scores: list[float]
    variant: Variant
    model_version: str
    cold_start: bool = False
    fallback: bool = False


class FeedbackRequest(_Strict):
    request_id: str = Field(min_length=1, max_length=REQUEST_ID_MAX_LENGTH,
                            pattern=REQUEST_ID_PATTERN)
    item_id: ItemId
    event: FeedbackEvent


class FeedbackResponse(BaseModel):
    request_id: str
    accepted: bool
    credited: Literal["baseline", "candidate"] | None = None


# --- admin API -----------------------------------------------------------------------------
# A model server's base URL (``PUT /admin/routing`` and ``PUT /admin/upstreams``).
UpstreamUrl = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$", max_length=512)]


# A model version as the admin API takes it (``PUT /admin/routing``, ``PUT /admin/upstreams``):
# a registry number or a bundle version. It goes into a model server's URL
# (``upstream_url_template``), metric labels and the routing file, so it is one token: with
# any text, '1@host/#' moved the template's traffic to another host and '2 x' was applied,
# then failed every request.
ModelVersion = Annotated[str, Field(min_length=1, max_length=64,
                                    pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class Upstream(_Strict):
    """A model server: a version, and its URL unless the router knows it."""

    version: ModelVersion
    url: UpstreamUrl | None = None


class RoutingConfig(_Strict):
    """What the controller asks the router to do (``PUT /admin/routing``)."""

    strategy: RoutingStrategy = "single"
    baseline: Upstream
    candidate: Upstream | None = None
    candidate_weight: int = Field(0, ge=0, le=100)
    shadow_sample_rate: float = Field(0.0, ge=0.0, le=1.0)
    salt: str = "marquee"
    rollout: str | None = None
    # Which run of ``rollout`` this is (the controller sends its start time). It is part of
    # the routing's epoch: a rollout started again under its name with the same spec (an
    # aborted canary re-created) would otherwise get its first run's epoch, and the lists,
    # stats buckets and late clicks of that run would count as the new run's.
    run: str | None = Field(None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _candidate_needed(self) -> RoutingConfig:
        if self.strategy != "single" and self.candidate is None:
            raise ValueError(f"strategy {self.strategy} needs a candidate")
        return self


class SavedRouting(BaseModel):
    """The routing file: the routing in force and the model server URL of each version in it
    (so that a restart finds upstreams that were registered at run time). A file holding a
    bare :class:`RoutingConfig` (the older format) is read as one without URLs."""

    routing: RoutingConfig
    upstreams: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bare_routing(cls, data: Any) -> Any:
        if isinstance(data, dict) and "routing" not in data:
            return {"routing": data}
        return data


class RoutingState(RoutingConfig):
    """The routing in force, with resolved URLs and the id of this assignment epoch."""

    epoch: str
    baseline_url: str
    candidate_url: str | None = None
    applied_at: float


class VariantWindow(BaseModel):
    requests: int = 0
    errors: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    exposures: int = 0           # recommendation lists served and logged
    clicked_exposures: int = 0   # of those, lists with at least one click
    impressions: int = 0         # feedback events
    clicks: int = 0
    watches: int = 0
    users: int = 0               # users assigned for the first time in the epoch (SRM)
    # Sums over users of n_u², c_u², n_u·c_u (n_u lists shown to user u in the epoch, c_u of
    # them clicked): the A/B test's variance with users, not lists, as the unit.
    exposures_sq: float = 0.0
    clicked_sq: float = 0.0
    exposures_clicked: float = 0.0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def click_through_rate(self) -> float | None:
        return self.clicked_exposures / self.exposures if self.exposures else None


class ShadowWindow(BaseModel):
    mirrored: int = 0
    errors: int = 0
    dropped: int = 0             # mirrors skipped because too many were in flight
    latency_p99_ms: float | None = None
    baseline_latency_p99_ms: float | None = None
    latency_delta_ms_mean: float | None = None
    topk_overlap_mean: float | None = None
    rbo_mean: float | None = None
    kendall_tau_mean: float | None = None
    coverage_baseline: float | None = None
    coverage_candidate: float | None = None
    gini_baseline: float | None = None
    gini_candidate: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.mirrored if self.mirrored else None


class InterleaveWindow(BaseModel):
    impressions: int = 0         # interleaved lists served
    baseline_wins: int = 0
    candidate_wins: int = 0
    ties: int = 0


class WindowStats(BaseModel):
    """Everything the router saw between ``since`` and ``until`` (unix seconds)."""

    since: float
    until: float
    epoch: str | None = None
    variants: dict[str, VariantWindow] = Field(default_factory=dict)
    shadow: ShadowWindow = ShadowWindow()
    interleave: InterleaveWindow = InterleaveWindow()

    def variant(self, name: str) -> VariantWindow:
        return self.variants.get(name) or VariantWindow()
