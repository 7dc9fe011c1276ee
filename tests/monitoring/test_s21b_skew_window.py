"""`marquee skew check` with a window past the calendar (bug hunt, session 21, B).

A duration or a unix time too large for a date (``--since 100000000h``, ``--until 1e20``,
``--until inf``) ended in an OverflowError traceback and exit 1; the command documents exit 2
for bad input and says what was wrong in one line.
"""

from __future__ import annotations

import pytest
from test_skew_check import _skew_bundle, world  # noqa: F401 - the module's fixture


@pytest.mark.parametrize(("since", "until"), [("100000000h", "2025-03-01T02:00:00Z"),
                                              ("99999999999999999999d", "now"),
                                              ("2h", "1e20"), ("2h", "inf")])
def test_a_window_past_the_calendar_is_bad_input_not_a_traceback(
        world: dict, tmp_path, since: str, until: str) -> None:  # noqa: F811
    import subprocess
    import sys

    from conftest import REPO

    bundle, _ = _skew_bundle(world, tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "marquee.cli", "skew", "check", "--bundle", str(bundle),
         "--store", str(tmp_path / "store"), "--since", since, "--until", until,
         "--pushgateway", "", "--no-publish"],
        env={"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(tmp_path / "home")},
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: window {since!r} .. {until!r}: a time beyond the years 1..9999"]
