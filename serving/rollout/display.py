"""What the rollout commands and the rollout report show of stored values, which may have been
edited by hand (``kubectl edit --subresource=status``, a local ``status.json``): decision
statistics are free-form JSON, so a figure may be text, a list, or an integer of 400 digits."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

__all__ = ["usable", "utc"]


def usable(x: Any) -> bool:
    """A number that can be formatted and computed with: not a bool, finite, and within float
    range (``math.isfinite`` raises on an int of 400 digits)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def utc(t: datetime, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A decision time in UTC, as the status stores it (a naive time is taken as UTC). One
    whose UTC form falls outside years 1..9999 (an offset on 9999-12-31, edited by hand) is
    shown as written, with its offset, rather than failing the whole command."""
    try:
        t = t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)
    except OverflowError:
        return t.isoformat(sep=" ", timespec="seconds")
    return t.strftime(fmt)
