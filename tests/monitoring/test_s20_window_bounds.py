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


@pytest.mark.parametrize(("since", "until"), [("100000000h", "now"), ("2h", "1e20"),
                                              ("2h", "inf"), ("-1e20", "now")])
def test_a_time_past_the_calendar_is_bad_input(since: str, until: str) -> None:
    """An OverflowError escaped (a traceback from ``marquee drift check`` and ``skew check``)."""
    with pytest.raises(MonitoringInputError, match=r"a time beyond the years 1\.\.9999"):
        parse_window(since, until, NOW)


def test_drift_check_names_a_window_past_the_calendar(tmp_path) -> None:
    from test_drift_check import _drift_cli, write_bundle

    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    out = _drift_cli(["--bundle", str(bundle), "--store", str(tmp_path / "store"), "--since",
                      "2h", "--until", "1e20", "--evidently", "never"], tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: window '2h' .. '1e20': a time beyond the years 1..9999"]
