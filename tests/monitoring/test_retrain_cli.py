"""`marquee retrain` without a running trigger, and `marquee incidents` against a real
Alertmanager (Debian package) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from conftest import REPO, alertmanager_at, free_port, wait_until

STAND_IN = Path(__file__).with_name("stand_in_pipeline.py")
RUNBOOK = "https://github.com/marquee-mlops/marquee/blob/main/monitoring/runbooks/"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update({"MARQUEE_HOME": str(tmp / "home"),
                "MARQUEE_RETRAIN_URL": f"http://127.0.0.1:{free_port()}",  # nobody there
                "MARQUEE_RETRAIN_TOKEN": "t0ken",
                "MARQUEE_RETRAIN_LAUNCHER": "command",
                "MARQUEE_RETRAIN_COMMAND": json.dumps([sys.executable, str(STAND_IN)]),
                "STAND_IN_RUNS_DIR": str(tmp / "stand-in-runs"),
                "COLUMNS": "320", **extra})
    return env


def _marquee(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marquee.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_retrain_without_a_trigger_starts_nothing_unless_local(tmp_path: Path) -> None:
    """A dropped port-forward or a missing token is an error, not a training on this machine
    beside the cluster's; ``--local`` asks for that explicitly."""
    env = _env(tmp_path)
    nobody = _marquee(["retrain", "--reason", "drift after the catalogue import"], env)
    assert nobody.returncode == 1, nobody.stdout + nobody.stderr
    assert f"error: no trigger answers at {env['MARQUEE_RETRAIN_URL']}" in nobody.stderr
    assert "nothing was started" in nobody.stderr and "--local" in nobody.stderr
    no_token = {k: v for k, v in env.items() if k != "MARQUEE_RETRAIN_TOKEN"}
    untokened = _marquee(["retrain", "--reason", "drift after the catalogue import"], no_token)
    assert untokened.returncode == 2, untokened.stdout + untokened.stderr
    assert "MARQUEE_RETRAIN_TOKEN_FILE" in untokened.stderr
    assert "nothing was started" in untokened.stderr
    assert not (tmp_path / "stand-in-runs").exists()
    assert not (tmp_path / "home" / "retrain" / "decisions.jsonl").exists()


def test_retrain_local_decides_and_runs_in_process(tmp_path: Path) -> None:
    env = _env(tmp_path)
    out = _marquee(["retrain", "--local", "--reason", "drift after the catalogue import"], env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "deciding in this process" in out.stdout
    assert "succeeded, version 7, gate candidate" in out.stdout.replace("\n", " ")
    ran = list((tmp_path / "stand-in-runs").glob("*.json"))
    assert len(ran) == 1
    # the cooldown recorded by that run applies to the next request, in a new process
    again = _marquee(["retrain", "--local", "--reason", "once more"], env)
    assert again.returncode == 1 and "cooldown" in again.stdout
    assert len(list((tmp_path / "stand-in-runs").glob("*.json"))) == 1


def test_failed_run_exits_non_zero(tmp_path: Path) -> None:
    out = _marquee(["retrain", "--local", "--reason", "try it"],
                   _env(tmp_path, STAND_IN_FAIL="1"))
    assert out.returncode == 1
    assert "failed" in out.stdout and "planted failure" in out.stdout


@pytest.fixture()
def alertmanager(tmp_path: Path) -> Iterator[str]:
    with alertmanager_at(tmp_path) as url:
        yield url


def test_incidents_lists_firing_alerts_with_runbooks_and_recent_runs(
        tmp_path: Path, alertmanager: str) -> None:
    now = datetime.now(timezone.utc)
    alerts = [
        {"labels": {"alertname": "ModelDataDrift", "severity": "warning", "retrain": "true",
                    "model": "movie-recommender", "model_version": "3"},
         "annotations": {"summary": "Serving data drifted: 25% of features drifted.",
                         "runbook_url": RUNBOOK + "ModelDataDrift.md"},
         "startsAt": (now - timedelta(minutes=12)).isoformat()},
        {"labels": {"alertname": "HighErrorRate", "severity": "critical",
                    "model": "movie-recommender", "variant": "candidate"},
         "annotations": {"summary": "9% of /recommend requests to variant candidate fail.",
                         "runbook_url": RUNBOOK + "HighErrorRate.md"},
         "startsAt": (now - timedelta(minutes=3)).isoformat()},
    ]
    httpx.post(f"{alertmanager}/api/v2/alerts", json=alerts).raise_for_status()
    wait_until(lambda: len(httpx.get(f"{alertmanager}/api/v2/alerts").json()) == 2,
               timeout=10, what="alerts visible")
    env = _env(tmp_path, MARQUEE_ALERTMANAGER_URL=alertmanager)
    assert _marquee(["retrain", "--local", "--reason", "drift on age_bucket"],
                    env).returncode == 0

    out = _marquee(["incidents"], env)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert text.index("HighErrorRate") < text.index("ModelDataDrift")  # critical first
    assert RUNBOOK + "ModelDataDrift.md" in text and RUNBOOK + "HighErrorRate.md" in text
    assert "variant=candidate" in text and "model_version=3" in text
    assert "12m ago" in text
    assert "Recent retraining runs" in text and "succeeded" in text
    assert "drift on age_bucket" in text


def test_incidents_reports_an_unreachable_alertmanager(tmp_path: Path) -> None:
    env = _env(tmp_path, MARQUEE_ALERTMANAGER_URL=f"http://127.0.0.1:{free_port()}")
    out = _marquee(["incidents"], env)
    assert out.returncode == 1
    assert "unavailable" in out.stdout and "Recent retraining runs" in out.stdout
