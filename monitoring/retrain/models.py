"""Pydantic records of the retrain trigger: Alertmanager's webhook body and our decisions.

Alertmanager's webhook payload, version 4 (Alertmanager ≥ 0.19, including 0.25):

    {"version": "4", "groupKey": "...", "truncatedAlerts": 0, "status": "firing",
     "receiver": "...", "groupLabels": {...}, "commonLabels": {...},
     "commonAnnotations": {...}, "externalURL": "...",
     "alerts": [{"status": "firing", "labels": {...}, "annotations": {...},
                 "startsAt": "<RFC3339>", "endsAt": "<RFC3339>", "generatorURL": "...",
                 "fingerprint": "<hex>"}]}
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

__all__ = [
    "WebhookAlert",
    "WebhookMessage",
    "ManualRequest",
    "CancelRequest",
    "DecisionKind",
    "Decision",
    "RunStatus",
    "AfterRunMark",
    "RunRecord",
]


class WebhookAlert(BaseModel):
    """One alert of a notification."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1, max_length=128)

    @field_validator("labels")
    @classmethod
    def _has_alertname(cls, v: dict[str, str]) -> dict[str, str]:
        if not v.get("alertname"):
            raise ValueError("labels must contain a non-empty 'alertname'")
        return v

    @field_validator("startsAt")
    @classmethod
    def _in_utc(cls, v: datetime) -> datetime:
        """In UTC, so that one instant is one dedup key: a time without an offset is UTC, not
        this process's zone (a trigger restarted in another zone took a re-send for a new
        alert and started a second run). A time UTC cannot hold (9999-12-31T23:00:00-12:00)
        is refused here, naming it; before, the dedup key overflowed into a 500 that
        Alertmanager retries for ever."""
        if v.tzinfo is None:
            return v.replace(tzinfo=timezone.utc)
        try:
            return v.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError(f"{v.isoformat()} is out of the range of dates in UTC") from None

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]

    @property
    def dedup_key(self) -> str:
        """(fingerprint, startsAt): the same alert instance, however often it is re-sent."""
        return f"{self.fingerprint}|{self.startsAt.astimezone(timezone.utc).isoformat()}"


class WebhookMessage(BaseModel):
    """A notification as Alertmanager's webhook receiver posts it (version 4)."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    groupKey: str
    truncatedAlerts: int = Field(0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[WebhookAlert] = Field(min_length=1)


class ManualRequest(BaseModel):
    """``marquee retrain --reason TEXT`` (and ``POST /retrain``)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500)
    model: str | None = Field(None, min_length=1, max_length=256,
                              description="Registered model; default: settings.model_name")
    # strict: "yes", "1" or 1 do not lift the cooldown; only JSON true does
    force: StrictBool = Field(False, description="Ignore the cooldown (never the one-run limit).")
    requested_by: str | None = Field(None, max_length=100)


class CancelRequest(BaseModel):
    """``marquee retrain --cancel RUN --reason TEXT`` (and ``POST /runs/<run>/cancel``)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500)
    requested_by: str | None = Field(None, max_length=100)


class DecisionKind(str, Enum):
    STARTED = "started"
    DUPLICATE = "duplicate"
    COOLDOWN = "cooldown"
    BUSY = "busy"
    RESOLVED_IGNORED = "resolved-ignored"
    NOT_RETRAIN = "not-retrain"   # a firing alert not labelled retrain="true"
    OTHER_MODEL = "other-model"   # an alert or request for a model this trigger does not train
    UNAUTHORIZED = "unauthorized"
    CANCELED = "canceled"         # on-call stopped the run in flight (it ends failed)
    # after a run succeeded (monitoring.retrain.rollout, source "auto-rollout")
    ROLLOUT_STARTED = "rollout-started"
    ROLLOUT_SKIPPED = "rollout-skipped"
    ROLLOUT_FAILED = "rollout-failed"


class Decision(BaseModel):
    """One line of the decision log (``<home>/retrain/decisions.jsonl``)."""

    time: datetime
    decision: DecisionKind
    source: Literal["webhook", "manual", "auto-rollout"]
    model: str | None = None
    alertname: str | None = None
    fingerprint: str | None = None
    starts_at: datetime | None = None
    group_key: str | None = None
    run_id: str | None = None
    detail: str = ""

    @property
    def started(self) -> bool:
        return self.decision is DecisionKind.STARTED


class RunStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AfterRunMark(BaseModel):
    """A succeeded run whose after-run step (its rollout) is due: saved with the run's end,
    before the step starts, and cleared once the step's decision is in the log. A trigger
    that died in between leaves it, and the next one to start finds it."""

    pid: int
    host: str
    owner: str = Field(description="the trigger process's token (monitoring.retrain.state)")
    since: datetime


class RunRecord(BaseModel):
    """A retraining run started by the trigger (``<home>/retrain/runs/<run_id>.json``)."""

    run_id: str
    model: str
    reason: str
    source: Literal["webhook", "manual"]
    alerts: list[str] = Field(default_factory=list)
    launcher: str = ""
    status: RunStatus = RunStatus.QUEUED
    requested_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    pipeline_run_id: str | None = None
    model_version: str | None = None
    gate_decision: str | None = None
    error: str | None = None
    rollout: str | None = Field(None, description="The rollout started for the new version "
                                "(monitoring.retrain.rollout), when one was.")
    after_run: AfterRunMark | None = Field(None, description="Set while the after-run step "
                                           "of this succeeded run has not been decided yet.")
