"""`marquee trigger` when its decision log cannot be written (a full or failing volume, a
path taken by something else): a run it has committed to still runs and releases its claim.

Before, the decisions were appended before the started run was handed to the worker; when
the append failed, the run had already been committed in ``state.json`` (the in-flight claim,
the model's cooldown, the alert covered) but was never queued. It stayed ``queued`` for good,
and the claim of this live process was never released: every later alert and on-call
request was refused as ``busy`` until someone restarted the trigger, even after the log was
writable again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import REPO, wait_until
from test_retrain_webhook import TOKEN, Trigger, notification, running_trigger

pytestmark = [pytest.mark.integration]


@pytest.fixture()
def trigger(tmp_path: Path) -> Iterator[Trigger]:
    with running_trigger(tmp_path, 0, 0.2) as t:
        yield t


def test_a_run_started_while_the_decision_log_fails_still_runs_and_frees_the_slot(
        trigger: Trigger) -> None:
    log_path = trigger.home / "retrain" / "decisions.jsonl"
    log_path.mkdir(parents=True)  # appending to it fails (IsADirectoryError)

    failed = trigger.post(notification("c0ffee01", model="movie-recommender"))
    assert failed.status_code == 500  # Alertmanager retries the notification

    # the run the trigger committed to goes ahead, and ends, although it was not logged
    wait_until(lambda: trigger.runs() and trigger.runs()[0]["status"] in ("succeeded",
                                                                          "failed"),
               timeout=30, what="the committed run finished")
    (run,) = trigger.runs()
    assert run["status"] == "succeeded", run
    assert len(trigger.stand_in_runs()) == 1
    state = json.loads((trigger.home / "retrain" / "state.json").read_text())
    assert state["in_flight"] is None  # the claim is released

    shutil.rmtree(log_path)  # the volume is repaired
    again = trigger.post(notification("c0ffee01", model="movie-recommender"))
    assert again.status_code == 200, again.text
    assert again.json()["decisions"][0]["decision"] == "duplicate"  # the retry: covered
    fresh = trigger.post(notification("c0ffee02", model="movie-recommender",
                                      starts="2025-03-01T05:00:00Z"))
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["decisions"][0]["decision"] == "started", fresh.json()


def test_incidents_with_a_token_the_trigger_refuses_says_so_and_exits_1(
        trigger: Trigger, tmp_path: Path) -> None:
    """The on-call machine reaches the trigger but holds an old token (the Secret was
    rotated). Before, `marquee incidents` fell back to this machine's empty state without a
    word and exited 0: "none yet" under "Recent retraining runs", while the trigger had
    started one."""
    started = trigger.post(notification("c0ffee03", model="movie-recommender"))
    assert started.json()["decisions"][0]["decision"] == "started"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update({"MARQUEE_HOME": str(tmp_path / "oncall-home"), "COLUMNS": "320",
                "MARQUEE_RETRAIN_URL": trigger.url, "MARQUEE_RETRAIN_TOKEN": "old-token"})
    out = subprocess.run([sys.executable, "-m", "marquee.cli", "incidents"], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"error: trigger at {trigger.url} answered 401: wrong bearer token" in out.stderr
    assert "this machine's" in out.stderr
    # with the right token it lists the trigger's run
    env["MARQUEE_RETRAIN_TOKEN"] = TOKEN
    ok = subprocess.run([sys.executable, "-m", "marquee.cli", "incidents"], env=env,
                        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert trigger.runs()[0]["run_id"] in ok.stdout
    assert f"Runs and decisions: from the trigger at {trigger.url}\n" in ok.stdout


def test_incidents_says_whose_runs_it_shows_when_no_trigger_answers(tmp_path: Path) -> None:
    """The port-forward to the trigger dropped: the runs shown are this machine's (the same
    command serves a local setup, so it still exits 0), and a line above the table says so and
    why. Before, "none yet" under "Recent retraining runs" read as "no run started"."""
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update({"MARQUEE_HOME": str(tmp_path / "oncall-home"), "COLUMNS": "320",
                "MARQUEE_RETRAIN_URL": url, "MARQUEE_RETRAIN_TOKEN": TOKEN})
    out = subprocess.run([sys.executable, "-m", "marquee.cli", "incidents"], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (f"Runs and decisions: this machine's, in {tmp_path / 'oncall-home' / 'retrain'}: "
            f"no trigger answers at {url}\n") in out.stdout, out.stdout
