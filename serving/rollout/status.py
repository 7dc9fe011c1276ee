"""The persisted status of a rollout: its phase, step, weights and every decision.

The status is the controller's only memory. Everything the next tick needs is in it, so a
controller that is killed and started again carries on where it was:

* the first decision (its reason starts with ``started``) holds the resolved versions and the registry
  aliases as they were, which promotion and rollback use;
* the current stage (phase + step) started at the first decision that entered it, which
  pause timers and analysis windows count from.

Field names follow the contract's ``status`` block (camelCase in YAML and Kubernetes).
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

__all__ = ["Phase", "Outcome", "Weights", "Decision", "RolloutStatus", "TERMINAL_PHASES",
           "utcnow", "START_REASON"]

START_REASON = "started"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Phase(str, Enum):
    PENDING = "Pending"
    SHADOWING = "Shadowing"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED})


class Outcome(str, Enum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


def _version(value: Any) -> Any:
    """A version the start decision records. The controller writes text; one edited by hand
    may be a bare number (``candidateVersion: 3`` in ``kubectl edit``'s YAML, or in
    ``status.json``), which is that version: as a number it failed every tick of the
    controller (the routing's version is text) and the rollout stood still."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Weights(_Model):
    baseline: int = Field(100, ge=0, le=100)
    candidate: int = Field(0, ge=0, le=100)


class Decision(_Model):
    time: datetime
    phase: Phase          # the phase the rollout is in after this decision
    step: int             # the step it is at after this decision (1-based, 0 = none)
    outcome: Outcome
    reason: str
    statistics: dict[str, Any] = Field(default_factory=dict)

    @field_validator("time")
    @classmethod
    def _aware(cls, t: datetime) -> datetime:
        """A time without an offset (edited by hand) is UTC, as the status commands show it:
        naive, it failed every tick against the controller's aware clock (maxDurationSeconds)
        and made the routing's run depend on the controller's local zone."""
        return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t


class RolloutStatus(_Model):
    phase: Phase = Phase.PENDING
    step: int = 0
    weights: Weights = Weights()
    failed_checks: int = 0
    decisions: list[Decision] = Field(default_factory=list)
    message: str = ""
    # Why the router does not run these weights yet (unreachable, refused), "" once it does:
    # the weights are what the controller decided, this says whether traffic follows them.
    routing_error: str = ""

    # Derived from the decisions --------------------------------------------------------------
    @property
    def started(self) -> Decision | None:
        if self.decisions and self.decisions[0].reason.startswith(START_REASON):
            return self.decisions[0]
        return None

    @property
    def started_at(self) -> datetime | None:
        start = self.started
        return start.time if start else None

    @property
    def run_id(self) -> str | None:
        """Which run of the rollout this is: its start time, in UTC to the microsecond. The
        routing carries it (``RoutingConfig.run``) so that a rollout re-created under its name
        with the same spec gets a routing epoch of its own; it is read from the persisted
        start decision, so a restarted controller sends the same one (same epoch)."""
        start = self.started_at
        if start is None:
            return None
        try:  # (naive times are made UTC when the status is read: Decision._aware)
            start = start.astimezone(timezone.utc)
        except OverflowError:  # edited by hand: its UTC form is outside years 1..9999
            pass  # as written, with its offset: still one value per run
        return start.isoformat(timespec="microseconds")

    @property
    def stage_started_at(self) -> datetime | None:
        """When the rollout entered its current phase and step."""
        since: datetime | None = None
        prev: tuple[Phase, int] | None = None
        for d in self.decisions:
            key = (d.phase, d.step)
            if key != prev:
                since = d.time
            prev = key
        return since

    @property
    def baseline_version(self) -> str | None:
        start = self.started
        return _version(start.statistics.get("baselineVersion")) if start else None

    @property
    def candidate_version(self) -> str | None:
        start = self.started
        return _version(start.statistics.get("candidateVersion")) if start else None

    @property
    def aliases_before(self) -> dict[str, str | None]:
        start = self.started
        return dict(start.statistics.get("aliasesBefore", {})) if start else {}

    @property
    def last_decision(self) -> Decision | None:
        return self.decisions[-1] if self.decisions else None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RolloutStatus:
        return cls.model_validate(data or {})
