"""The ``ModelRollout`` spec: what a release owner declares (docs/CONTRACTS.md).

One schema for a local YAML file and the Kubernetes custom resource of the chart. Field
names are the contract's camelCase ones (``intervalSeconds``, ``failureLimit`` …); Python
code uses snake_case attributes. Unknown fields are refused with an error that names them,
so a typo never silently falls back to a default.

A spec means the same here and in the CRD (``kubectl apply``): the models are strict, so a
quoted number (``weight: "25"``), a quoted boolean (``autoPromote: "true"``) or a bare
``candidate: 2`` is refused here as the CRD's JSON types refuse it, and every bound and enum
of the CRD is one here (tests/rollout/test_s20f_spec_matches_crd.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "API_VERSION", "KIND", "Strategy", "MetricName", "VersionRef", "Pause", "CanaryStep",
    "Alias", "ShadowSpec", "ABSpec", "InterleaveSpec", "MetricCheck", "AnalysisSpec", "Limits",
    "RolloutSpec", "Metadata", "ModelRollout", "load_rollout", "parse_rollout",
    "SpecError", "DEFAULT_STEPS",
]

API_VERSION = "marquee.dev/v1alpha1"
KIND = "ModelRollout"

Strategy = Literal["shadow", "canary", "ab", "interleave"]

#: Analysis metrics a rollout can put thresholds on. Each is checked only in the stages
#: that observe it (click-through needs user clicks, so it is not checked on shadow traffic).
MetricName = Literal[
    "errorRate",          # candidate errors / candidate requests
    "latencyP99Ms",       # candidate p99 latency, milliseconds
    "latencyP99Ratio",    # candidate p99 / baseline p99
    "clickThroughRatio",  # candidate CTR / baseline CTR
    "topKOverlap",        # shadow: mean top-k overlap with the baseline's lists
    "rankBiasedOverlap",  # shadow: mean RBO with the baseline's lists
    "kendallTau",         # shadow: mean Kendall tau on the shared items
]

DEFAULT_STEPS: tuple[int, ...] = (10, 25, 50, 100)


class SpecError(ValueError):
    """The rollout file is not a valid ModelRollout; the message names the field."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True, strict=True)


#: The registry aliases a rollout may name: the ones the controller reads and moves (the
#: CRD's enum).
Alias = Literal["production", "candidate", "previous"]


class VersionRef(_Model):
    """A model version, by number or by registry alias (exactly one): ``{version: "2"}`` or
    ``{alias: production}``. The number is a string, as in the CRD (a YAML ``2`` is refused,
    not converted: the CRD refuses it too)."""

    version: str | None = Field(None, pattern=r"^[0-9]+$", max_length=20)
    alias: Alias | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionRef:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of version or alias")
        return self

    def __str__(self) -> str:
        return self.version if self.version is not None else f"@{self.alias}"


class Pause(_Model):
    seconds: float | None = Field(None, ge=0, le=604_800,  # the CRD's bounds (one week)
                                  description="None: until `marquee rollout promote`.")


class CanaryStep(_Model):
    # 0 is refused too (the CRD's minimum is 1), by _check_steps, with the reason
    weight: int | None = Field(None, ge=0, le=100, description="Percent of users on the candidate.")
    pause: Pause | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CanaryStep:
        if (self.weight is None) == (self.pause is None):
            raise ValueError("a step is either {weight: N} or {pause: {...}}")
        return self


class ShadowSpec(_Model):
    sample_rate: float = Field(1.0, gt=0.0, le=1.0)
    min_requests: int = Field(500, ge=1)
    promote_to: Literal["canary", "ab", "interleave", "promote"] = "canary"


class ABSpec(_Model):
    candidate_weight: int = Field(50, ge=1, le=99)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    min_samples_per_variant: int = Field(200, ge=1)
    srm_p_value: float = Field(0.001, gt=0.0, lt=1.0)


class InterleaveSpec(_Model):
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    min_decisions: int = Field(100, ge=1)


class MetricCheck(_Model):
    name: MetricName
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bound(self) -> MetricCheck:
        if self.min is None and self.max is None:
            raise ValueError(f"metric {self.name}: give min or max")
        return self


class AnalysisSpec(_Model):
    failure_limit: int = Field(2, ge=1, description="Failed checks that roll the candidate back.")
    min_requests: int = Field(50, ge=1, description="Candidate requests before checks count.")
    metrics: tuple[MetricCheck, ...] = Field((MetricCheck(name="errorRate", max=0.05),),
                                             max_length=20, strict=False)


class Limits(_Model):
    max_duration_seconds: float = Field(86_400, gt=0)


class RolloutSpec(_Model):
    model_name: str = Field("movie-recommender", min_length=1, max_length=253)
    baseline: VersionRef = VersionRef(alias="production")
    candidate: VersionRef
    strategy: Strategy
    stickiness_salt: str | None = Field(None, max_length=253)
    interval_seconds: float = Field(30.0, gt=0, le=86_400)
    steps: tuple[CanaryStep, ...] = Field((), max_length=100, strict=False)  # a YAML list
    shadow: ShadowSpec = ShadowSpec()
    ab: ABSpec = ABSpec()
    interleave: InterleaveSpec = InterleaveSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    limits: Limits = Limits()
    auto_promote: bool = True

    @model_validator(mode="after")
    def _canary_steps(self) -> RolloutSpec:
        uses_canary = self.strategy == "canary" or (
            self.strategy == "shadow" and self.shadow.promote_to == "canary")
        if uses_canary and not self.steps:
            object.__setattr__(self, "steps",
                               tuple(CanaryStep(weight=w) for w in DEFAULT_STEPS))
        if uses_canary and not any(s.weight for s in self.steps):
            raise ValueError("steps: a canary needs at least one step with weight > 0")
        _check_steps(self.steps, canary=uses_canary)
        if self.baseline == self.candidate:
            raise ValueError(f"candidate: the same as the baseline ({self.candidate}); a "
                             "rollout needs two different versions")
        return self

    def salt(self, rollout_name: str) -> str:
        return self.stickiness_salt or rollout_name


def _check_steps(steps: tuple[CanaryStep, ...], canary: bool) -> None:
    """Refuse canary steps that can never pass: a step is judged by a *Successful* analysis
    of the candidate's own requests (a timed pause too: it ends at the first one once its
    time is up), and at weight 0 the candidate has none, so the rollout would wait until
    ``limits.maxDurationSeconds`` and then fail. A pause without seconds (a gate that only
    ``marquee rollout promote`` opens) needs no analysis and stays allowed. Weight 0 is
    refused whatever the strategy, as the CRD refuses it (steps a strategy does not use
    included: ``kubectl apply`` would refuse the same file)."""
    weight = 0
    for i, step in enumerate(steps):
        if step.weight is not None:
            if step.weight == 0:
                raise ValueError(f"steps[{i}].weight: 0 sends the candidate no traffic, so "
                                 "its analysis can never pass; give a weight of 1 to 100")
            weight = step.weight
        elif canary and step.pause is not None and step.pause.seconds is not None \
                and weight == 0:
            raise ValueError(f"steps[{i}].pause: a timed pause before any weight step can "
                             "never end (it waits for a passing analysis of a candidate "
                             "that gets no traffic); put a weight step first, or pause "
                             "without seconds until `marquee rollout promote`")


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")  # Kubernetes adds uid, resourceVersion …

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    namespace: str | None = None
    annotations: dict[str, str] | None = None


class ModelRollout(_Model):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True)

    api_version: Literal["marquee.dev/v1alpha1"] = API_VERSION
    kind: Literal["ModelRollout"] = KIND
    metadata: Metadata
    spec: RolloutSpec
    status: dict[str, Any] | None = None  # parsed by serving.rollout.status when present

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_yaml(self) -> str:
        body = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        body.pop("status", None)
        return yaml.safe_dump(body, sort_keys=False)


def _format_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        got = err.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{loc}: {err['msg']}{got_s}")
    return f"{source}: invalid ModelRollout: " + "; ".join(lines)


def parse_rollout(data: Any, source: str = "rollout") -> ModelRollout:
    """Validate a ModelRollout document (a dict from YAML or the Kubernetes API)."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping, got {type(data).__name__}")
    try:
        return ModelRollout.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_error(exc, source)) from None


def load_rollout(path: str | Path) -> ModelRollout:
    """Read and validate a ModelRollout YAML file: one document (``---`` separators around it,
    as generated manifests carry, are fine)."""
    path = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file (not UTF-8)") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    if len(docs) > 1:
        raise SpecError(f"{path}: {len(docs)} YAML documents; give one ModelRollout per file")
    return parse_rollout(docs[0] if docs else None, str(path))
