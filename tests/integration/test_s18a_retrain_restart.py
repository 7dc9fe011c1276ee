"""The retrain trigger restarted over the state a killed trigger left (helper A, session 18).

Each test runs the real ``marquee trigger`` process (command launcher, the stand-in pipeline)
on 127.0.0.1, kills it with SIGKILL while a run is in flight, and starts it again over the
same home.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import pid_alive, wait_until
from tests.monitoring.test_retrain_recovery import TOKEN, _marquee, running_trigger

pytestmark = [pytest.mark.integration]


def _runs(trig) -> list[dict]:  # noqa: ANN001
    resp = httpx.get(f"{trig.url}/runs", headers={"Authorization": f"Bearer {TOKEN}"},
                     timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["runs"]


def _kill_with_a_run_in_flight(tmp_path: Path) -> str:
    with running_trigger(tmp_path, STAND_IN_SECONDS="300") as trig:
        decision = trig.post("5eed0001", "movie-recommender").json()["decisions"][0]
        assert decision["decision"] == "started", decision
        wait_until(lambda: len(trig.stand_in_runs()) == 1, timeout=30, what="child started")
        child = trig.stand_in_runs()[0]["pid"]
        trig.proc.send_signal(signal.SIGKILL)
        trig.proc.wait(10)
        # the child dies with its trigger (parent-death signal): nothing runs the run now
        wait_until(lambda: not pid_alive(child), timeout=15, what="the child gone")
        return decision["run_id"]


def test_a_restarted_trigger_marks_the_dead_run_failed_without_waiting_for_an_alert(
        tmp_path: Path) -> None:
    """Before: the run the killed trigger was running stayed 'running' (in /runs, in
    ``marquee incidents``, in the state's in-flight slot) until the next alert or request
    happened to arrive, however long that took."""
    run_id = _kill_with_a_run_in_flight(tmp_path)
    with running_trigger(tmp_path, STAND_IN_SECONDS="300") as trig:
        [run] = [r for r in _runs(trig) if r["run_id"] == run_id]
        assert run["status"] == "failed", run
        assert "exited during the run" in run["error"], run
        state = json.loads((trig.home / "retrain" / "state.json").read_text())
        assert state["in_flight"] is None, state
        out = _marquee(["incidents"], trig.env)
        assert out.returncode == 0, out.stderr
        assert "running" not in out.stdout, out.stdout


@pytest.mark.parametrize("damage", ["", '{"run_id": "rt-', "\x00" * 64],
                         ids=["empty", "cut-short", "zeros"])
def test_a_damaged_run_record_of_the_dead_run_neither_stops_the_trigger_nor_its_decisions(
        tmp_path: Path, damage: str) -> None:
    """A run record that cannot be read (empty or cut short: the trigger's writes were not
    synced, so a power loss can leave one so) of the run a dead trigger had in flight. Before:
    the restarted trigger answered every alert with a 500 (the record's parse error escaped the
    decision), for good: nothing would start a run again."""
    run_id = _kill_with_a_run_in_flight(tmp_path)
    record = tmp_path / "home" / "retrain" / "runs" / f"{run_id}.json"
    record.write_text(damage)
    with running_trigger(tmp_path, STAND_IN_SECONDS="0.1") as trig:
        resp = trig.post("5eed0002", "movie-recommender")
        assert resp.status_code == 200, resp.text
        assert resp.json()["decisions"][0]["decision"] == "started", resp.text
        assert record.read_text() == damage  # kept as it was, for whoever looks into it
