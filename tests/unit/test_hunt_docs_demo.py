"""``marquee demo`` checks its own options before anything runs.

``--segment`` picks the drifted population of step 3 (README, "What `make demo` does"). A bad
one used to be found only after the first training and with the servers up: a misspelt column
ended in a KeyError traceback, a value no user has replayed nothing and left the demo waiting
for an alert until its 15-minute timeout, and a JSON error did not say which option it was.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A home that is a file: should the options not be checked first, the demo fails at once
    # on its first registry call (exit 1, not 2) instead of training for minutes.
    home = tmp_path / "home"
    home.touch()
    env = {**os.environ, "MARQUEE_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"}
    for name in ("MARQUEE_REGISTRY_URI", "MARQUEE_STORE_URI"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "marquee.cli", "demo", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "says"), [
    (["--segment", "{occupation: student}"], "not JSON"),
    (["--segment", '["student"]'], "a JSON object of user columns"),
    (["--segment", '{"occuption": ["student"]}'], "'occuption' is not a user column"),
    (["--segment", '{"occupation": "student"}'], "occupation: a non-empty list of strings"),
    (["--segment", '{"gender": ["X"]}'], "gender: 'X' is not one of M, F, U"),
    (["--config-json", "{bad"], "not JSON"),
    (["--config-json", "[1]"], "a JSON object of RecommenderConfig overrides"),
])
def test_a_bad_option_is_a_usage_error_naming_it_before_anything_runs(
        tmp_path: Path, args: list[str], says: str) -> None:
    out = _demo(tmp_path, *args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"Invalid value for {args[0]}" in out.stderr, out.stderr
    assert says in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert "1/9" not in out.stdout  # refused before the first step


def test_a_segment_without_held_out_events_fails_the_demo_before_any_server_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values that pass the vocabulary check but that no user of the data has (an occupation
    that is free text) are refused once the population is known, naming what is there."""
    from rich.console import Console

    from marquee.registry import Registry
    from marquee.settings import Settings
    from monitoring.loop.demo import DemoOptions, run_demo

    home = tmp_path / "home"
    monkeypatch.setenv("MARQUEE_HOME", str(home))
    settings = Settings()
    run = settings.runs_dir / "run-1"
    (run / "ingest" / "x").mkdir(parents=True)
    (run / "split" / "test").mkdir(parents=True)
    pd.DataFrame({"user_id": [1, 2], "age_bucket": ["18-24", "35-44"], "gender": ["F", "M"],
                  "occupation": ["student", "lawyer"], "region": ["US-1", "US-2"]}
                 ).to_parquet(run / "ingest" / "x" / "users.parquet")
    pd.DataFrame({"user_id": [1, 2], "item_id": [10, 20], "timestamp": [100, 200]}
                 ).to_parquet(run / "split" / "test" / "interactions.parquet")
    registry = Registry(settings.resolved_registry_uri, settings.model_name)
    version = registry.register((tmp_path / "bundle").as_uri(), {"ndcg_at_10": 0.3},
                                tags={"pipeline_run_id": "run-1"})
    registry.set_alias("production", version)

    out = io.StringIO()
    record, report, _ = run_demo(
        settings, DemoOptions(segment={"occupation": ["astronaut"]}, alerting="direct"),
        Console(file=out, width=200))

    assert record.outcome == "failed", out.getvalue()
    failure = next(n for n in record.notes if n.startswith("failed:"))
    assert "--segment" in failure and "occupation in ['astronaut']" in failure, failure
    assert "lawyer, student" in failure, failure  # what the data holds
    assert record.services == []  # refused before the model server and router started
    assert report is not None and report.is_file()
