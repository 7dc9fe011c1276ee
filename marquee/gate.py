"""The promotion gate: a new version becomes a candidate only if it is not worse than
production on the same test split, beyond a tolerance. The first version becomes production."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from marquee.errors import InvalidArgumentError

__all__ = ["GateDecision", "decide", "check_tolerance", "resolve_tolerance"]

Decision = Literal["promoted-first", "candidate", "rejected"]


class GateDecision(BaseModel):
    decision: Decision
    metric: str = "ndcg_at_10"
    candidate_score: float
    production_score: float | None = None
    production_version: int | None = None
    tolerance: float
    reason: str

    def tags(self) -> dict[str, str]:
        tags = {"gate.decision": self.decision, "gate.metric": self.metric,
                "gate.candidate_ndcg_at_10": f"{self.candidate_score:.6f}",
                "gate.tolerance": str(self.tolerance), "gate.reason": self.reason}
        if self.production_score is not None:
            tags["gate.production_ndcg_at_10"] = f"{self.production_score:.6f}"
            tags["gate.production_version"] = str(self.production_version)
        return tags


def check_tolerance(value: float) -> float:
    """``value`` when it is a usable tolerance, from 0 to 1.

    Above 1 the accepted floor ``production × (1 − tolerance)`` falls below zero and every
    model would pass: refused, as is NaN (which would reject every model in silence)."""
    if not 0.0 <= value <= 1.0:  # also False for NaN
        raise InvalidArgumentError(
            "gate_tolerance", value, "must be from 0 to 1 (0.02: a model up to 2% worse than "
            "production on NDCG@10 passes), or negative for the configured "
            "MARQUEE_GATE_TOLERANCE; above 1 every model would pass the gate")
    return value


def resolve_tolerance(given: float, configured: float) -> float:
    """The gate's tolerance: ``given`` (the pipeline's ``gate_tolerance``) when it is 0 or
    more, ``configured`` (``MARQUEE_GATE_TOLERANCE``) when it is negative; checked."""
    return check_tolerance(configured if given < 0 else given)


def decide(candidate: float, production: float | None, tolerance: float,
           production_version: int | None = None) -> GateDecision:
    """Relative tolerance: accept when ``candidate >= production * (1 - tolerance)``."""
    check_tolerance(tolerance)
    if production is None:
        return GateDecision(decision="promoted-first", candidate_score=candidate,
                            tolerance=tolerance, reason="no production version yet")
    floor = production * (1.0 - tolerance)
    ok = candidate >= floor
    verb = "≥" if ok else "<"
    # the tolerance as given, not to a whole percent (0.005 read "0%", 0.015 "2%")
    shown = f"{tolerance * 100:g}%"
    return GateDecision(
        decision="candidate" if ok else "rejected", candidate_score=candidate,
        production_score=production, production_version=production_version,
        tolerance=tolerance,
        reason=f"ndcg@10 {candidate:.4f} {verb} {floor:.4f} "
               f"(production v{production_version} {production:.4f} − {shown})")
