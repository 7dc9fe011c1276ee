"""`marquee rollout report NAME -o -` whatever stdout's encoding (helper G, session 23).

The page always holds text outside latin-1 ("baseline … → candidate …", "≥" in thresholds).
Written to a file it is ASCII with character references; written to stdout (``-o -``, the
way to pipe it somewhere) it was printed as it is, so a stdout that is not UTF-8 (a cp1252
Windows console or redirect, a latin-1 locale) ended the command in a UnicodeEncodeError
traceback, with nothing written. Now stdout gets the very page the file gets.

Real entry point: ``python -m marquee.cli`` in a subprocess, rollout created with
``marquee rollout start -f … --detach`` in a MARQUEE_HOME of the test's own.
"""

from __future__ import annotations

import html
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

ROLLOUT = """\
apiVersion: marquee.dev/v1alpha1
kind: ModelRollout
metadata: {name: enc}
spec:
  candidate: {version: "2"}
  strategy: canary
  analysis: {metrics: [{name: clickThroughRatio, min: 0.9}]}
"""


def _marquee(home: Path, *args: str, encoding: str = "utf-8") -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MARQUEE_HOME": str(home),
           "PYTHONIOENCODING": encoding}
    return subprocess.run([sys.executable, "-m", "marquee.cli", *args], env=env, cwd=REPO,
                          capture_output=True, timeout=120)


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_the_page_on_a_non_utf8_stdout_is_the_page_of_the_file(tmp_path: Path,
                                                               encoding: str) -> None:
    spec = tmp_path / "rollout.yaml"
    spec.write_text(ROLLOUT)
    created = _marquee(tmp_path / "home", "rollout", "start", "-f", str(spec), "--detach")
    assert created.returncode == 0, created.stderr
    piped = _marquee(tmp_path / "home", "rollout", "report", "enc", "-o", "-",
                     encoding=encoding)
    assert piped.returncode == 0, piped.stderr.decode(errors="replace")
    assert b"Traceback" not in piped.stderr
    page = piped.stdout.decode("ascii")  # character references, as in the file
    assert "baseline @production &#8594; candidate 2" in page
    assert "baseline @production → candidate 2" in html.unescape(page)
    written = _marquee(tmp_path / "home", "rollout", "report", "enc", "-o",
                       str(tmp_path / "page.html"))
    assert written.returncode == 0, written.stderr
    assert piped.stdout == (tmp_path / "page.html").read_bytes()


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "ascii"])
@pytest.mark.parametrize("command", [("rollout", "status", "enc"), ("rollout", "status"),
                                     ("rollout", "history", "enc")])
def test_tables_on_a_non_utf8_stdout_are_printed_not_a_traceback(tmp_path: Path, encoding: str,
                                                                 command: tuple[str, ...]
                                                                 ) -> None:
    """Session 23: rich printed the status table's "→" as it is, so `marquee rollout status`
    on such a stdout ended in a UnicodeEncodeError traceback, nothing shown. The CLI replaces
    what the stdout cannot encode."""
    spec = tmp_path / "rollout.yaml"
    spec.write_text(ROLLOUT)
    created = _marquee(tmp_path / "home", "rollout", "start", "-f", str(spec), "--detach")
    assert created.returncode == 0, created.stderr
    shown = _marquee(tmp_path / "home", *command, encoding=encoding)
    assert shown.returncode == 0, shown.stderr.decode(errors="replace")
    assert b"Traceback" not in shown.stderr
    assert b"enc" in shown.stdout
