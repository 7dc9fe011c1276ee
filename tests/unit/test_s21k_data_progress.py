"""`marquee data synth` and `marquee data validate` show what they are doing on a terminal
(session 21, K: long work shows progress).

Before, `data validate` on a 20-million-event directory sat 36 s with nothing on the screen,
and `data synth` of 20 million events showed its bar for the events (15 s) and then nothing
for the 15 s more it spent writing and fingerprinting the tables. Now a spinner says which
(on a terminal only); piped, both print exactly the lines they printed before.

The commands run as `python -m marquee.cli` in a subprocess; rich takes ``TTY_COMPATIBLE=1``
as a terminal (its status still writes to the pipe the test reads).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

SYNTH = ["--users", "40", "--items", "30", "--events", "500", "--seed", "7"]
FINGERPRINT = "e3e23707ed3735a2a621ce873d6165e471c1705d703e8f9f07e398fa1b4e0fe2"


def _marquee(home: Path, *args: str, terminal: bool) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MARQUEE_HOME": str(home),
           "OMP_NUM_THREADS": "1"}
    if terminal:
        env |= {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "marquee.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def _synth(tmp_path: Path, out: Path, terminal: bool = False) -> subprocess.CompletedProcess:
    done = _marquee(tmp_path / "home", "data", "synth", "--out", str(out), *SYNTH,
                    terminal=terminal)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


# What the commands printed in a pipe before this change (80 columns, no colour).
TABLE = ["┏━━━━━━━━━━━━━━┳━━━━━━┓",
         "┃ table        ┃ rows ┃",
         "┡━━━━━━━━━━━━━━╇━━━━━━┩",
         "│ interactions │  500 │",
         "│ users        │   40 │",
         "│ items        │   30 │",
         "└──────────────┴──────┘"]


def test_synth_says_it_is_writing_after_the_events_bar(tmp_path: Path) -> None:
    out = tmp_path / "data"
    done = _synth(tmp_path, out, terminal=True)
    assert f"writing 500 interactions to {out}" in done.stdout, done.stdout
    assert "fingerprinting the tables" in done.stdout, done.stdout
    assert "written to: " + str(out) in done.stdout  # the result is still printed
    assert (out / "interactions.parquet").is_file()


def test_validate_says_it_is_reading_and_validating(tmp_path: Path) -> None:
    out = tmp_path / "data"
    _synth(tmp_path, out)
    done = _marquee(tmp_path / "home", "data", "validate", str(out), terminal=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"reading and validating {out}" in done.stdout, done.stdout
    assert "fingerprinting the tables" in done.stdout, done.stdout
    assert "fingerprint: " in done.stdout


def test_piped_output_is_what_it_was(tmp_path: Path) -> None:
    out = tmp_path / "data"
    synth = _synth(tmp_path, out)
    assert synth.stderr == ""
    assert synth.stdout.splitlines() == ["       synthetic       ", *TABLE,
                                         f"fingerprint: {FINGERPRINT}", f"written to: {out}"]
    valid = _marquee(tmp_path / "home", "data", "validate", str(out), terminal=False)
    assert valid.returncode == 0 and valid.stderr == "", valid.stderr
    assert "validating" not in valid.stdout and "fingerprinting" not in valid.stdout
    lines = valid.stdout.splitlines()  # the title (the directory) wraps at 80 columns
    assert lines[-8:] == [*TABLE, f"fingerprint: {FINGERPRINT}"]
    assert "".join(lines[:-8]).replace(" ", "") == f"{out}:valid"
