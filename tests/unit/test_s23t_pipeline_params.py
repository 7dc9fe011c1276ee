"""``--param NAME=VALUE`` values read by the parameter's declared type (session 23).

They were read as JSON when they began with a digit, so Python's number syntax that JSON
refuses (``.2``, ``+5``) was passed on as text and refused as "must be a number", and a String
parameter given digits (``home=2024``) became a number. Each case below stops at the
pipeline's own parameter checks, before any step runs, so the error line shows what the value
was read as.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import _params
from tests.unit.test_cli_errors import marquee


@pytest.mark.parametrize(("params", "line"), [
    (("test_frac=.2", "val_frac=.85"),
     "error: val_frac=0.85: test_frac + val_frac must be below 1 (test_frac is 0.2)"),
    (("n_trials=+2", "val_frac=0"), "error: val_frac=0.0: must be above 0 when n_trials"),
])
def test_numbers_in_pythons_syntax_are_numbers(tmp_path: Path, params: tuple[str, ...],
                                              line: str) -> None:
    args = [a for p in params for a in ("--param", p)]
    out = marquee(tmp_path, "pipeline", "run", "--local", *args)
    assert out.returncode == 1, out.stdout[-1000:]
    assert out.stderr.strip().splitlines()[-1].startswith(line), out.stderr[-500:]
    assert "Executing task" not in out.stdout


def test_each_value_takes_its_parameters_type() -> None:
    got = _params(None, None, None, None, ["home=2024", "seed=7", "gate_tolerance=.05",
                                           "test_frac=1x", "config_json={\"a\": 1}"])
    assert got == {"home": "2024", "seed": 7, "gate_tolerance": 0.05, "test_frac": "1x",
                   "config_json": "{\"a\": 1}"}
