"""The drift check's result: the JSON summary written next to the HTML report."""

from __future__ import annotations

import math
from datetime import datetime

from pydantic import BaseModel, Field, field_validator

__all__ = ["Histogram", "FeatureResult", "PredictionResult", "EmbeddingResult", "WindowInfo",
           "DriftSummary", "P_VALUE_METHODS", "drift_ratio", "worst_first"]

#: Evidently stat tests whose score is a p-value: drift when the score is *below* the
#: threshold (every other method, distances such as wasserstein, jensenshannon, psi, kl_div,
#: hellinger, ed: drift when the score is at or above it).
P_VALUE_METHODS = frozenset({"anderson", "chisquare", "cramer_von_mises", "es", "fisher_exact",
                             "g_test", "ks", "mannw", "empirical_mmd", "t_test", "TVD", "z"})


def drift_ratio(method: str, score: float | None, threshold: float) -> float | None:
    """How far ``score`` has gone towards drift, in multiples of the threshold, whatever the
    method's direction: ``score / threshold`` for distances, ``threshold / score`` for
    p-values (1 at the threshold, above 1 past it; inf for a zero p-value or a zero
    threshold). None for no score (a test that returned NaN)."""
    if score is None or math.isnan(score):
        return None
    num, den = (threshold, score) if method in P_VALUE_METHODS else (score, threshold)
    if den <= 0:
        return math.inf if num > 0 else 1.0
    return num / den


def worst_first(drifted: bool, method: str, score: float | None, threshold: float
                ) -> tuple[bool, float]:
    """Sort key: drifted first, then by how far each has gone towards its threshold
    (:func:`drift_ratio`); a missing score last."""
    ratio = drift_ratio(method, score, threshold)
    return (not drifted, -(ratio if ratio is not None else -math.inf))


class Histogram(BaseModel):
    """Shares per bin (numbers: left edges as labels) or per category, for the report."""

    labels: list[str]
    reference: list[float]
    current: list[float]


class FeatureResult(BaseModel):
    name: str
    kind: str
    method: str
    threshold: float
    score: float
    drifted: bool
    rows_reference: int
    rows_current: int
    exact: bool = Field(description="False when the score comes from a sample of the window")
    histogram: Histogram | None = None
    skipped: str | None = Field(None, description="Why the feature got no verdict (fewer "
                                "values in the window than min_rows): no score, left out of "
                                "the drift share")

    @field_validator("score", mode="before")
    @classmethod
    def _nan_from_null(cls, v: object) -> object:
        return math.nan if v is None else v  # a NaN score is written to JSON as null


class EmbeddingResult(BaseModel):
    """One drift score of the window against the reference (``skipped`` says why none)."""

    method: str
    threshold: float
    score: float | None = None
    drifted: bool = False
    rows_reference: int = 0
    rows_current: int = 0
    skipped: str | None = None


class PredictionResult(EmbeddingResult):
    name: str  # score | item_popularity | genre_mix


class WindowInfo(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    source: str
    files: int
    rows: int = Field(description="Rows judged: the checked version's, with logged features")
    rows_without_features: int = Field(0, description="Rows of the checked version left out "
                                       "because every f_* column is null (KServe's logger "
                                       "sink logs no features)")
    model_versions: dict[str, int] = Field(default_factory=dict)


class DriftSummary(BaseModel):
    created: datetime
    model_name: str
    model_version: str
    reference: str
    reference_rows: int
    window: WindowInfo
    drift_share: float
    drift_share_threshold: float
    dataset_drift: bool
    drifted_features: list[str]
    features: list[FeatureResult]
    prediction: list[PredictionResult] = Field(default_factory=list)
    embedding: EmbeddingResult | None = None
    drift_detected: bool = Field(description="dataset drift, prediction drift or embedding "
                                 "drift: what makes `marquee drift check` exit 3")
    timings_seconds: dict[str, float] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    push_error: str | None = Field(None, description="Why the gauges did not reach the "
                                   "Pushgateway (the alerts do not see this verdict; exit 1)")
