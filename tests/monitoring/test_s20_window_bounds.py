"""``marquee drift check --since 90`` (the unit forgotten) read 90 as unix seconds: a window
from 1970, listed hour by hour (490,000 listings of the store; minutes locally, hours on S3)
before any answer. A window longer than a year is refused naming the fix."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from monitoring.errors import MonitoringInputError
from monitoring.window import parse_window

NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)


def test_a_bare_number_since_is_refused_before_anything_is_listed() -> None:
    with pytest.raises(MonitoringInputError, match=r"longer than 366 days.*\(90m, 2h, 7d\)"):
        parse_window("90", "now", NOW)


def test_windows_up_to_a_year_are_taken() -> None:
    assert parse_window("30d", "now", NOW).since == datetime(2026, 10, 25, 12,
                                                             tzinfo=timezone.utc)
    assert parse_window("2025-11-24T12:00:00Z", "now", NOW).until == NOW
