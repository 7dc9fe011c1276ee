"""A retrain trigger killed during a succeeded run's after-run step (the candidate's shadow
rollout), restarted over the same home (helper F, session 18).

Before: the run was saved succeeded, then the trigger died inside the step; the restarted
trigger did nothing about it. The version stayed registered and never rolled out, and neither
the decision log nor ``/runs`` said why: on-call saw a succeeded run and no rollout. Now the
run is saved with a mark that the step's logged decision clears, and a restarted trigger runs
the step again, its decision saying so.

The real ``marquee trigger`` process (command launcher, the stand-in pipeline, which reports
version 7 with gate decision ``candidate``) on 127.0.0.1; the router URL of its automatic
rollout is a socket of the test that accepts the step's first call (``GET /admin/routing``)
and does not answer it, which holds the step at a known point for the SIGKILL. Closing the
connection then fails the step (router unreachable), as a real router that is down would.
"""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_until
from tests.monitoring.test_retrain_recovery import TOKEN, running_trigger

pytestmark = [pytest.mark.integration]


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(60)
    return sock


def _runs_and_decisions(url: str) -> dict:
    resp = httpx.get(f"{url}/runs", params={"limit": 500},
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _after_run_decisions(url: str, run_id: str) -> list[dict]:
    return [d for d in _runs_and_decisions(url)["decisions"]
            if d["source"] == "auto-rollout" and d["run_id"] == run_id]


def test_a_trigger_killed_during_the_after_run_step_has_it_run_again_on_restart(
        tmp_path: Path) -> None:
    router = _listening()
    extra = {"STAND_IN_SECONDS": "0.1", "MARQUEE_RETRAIN_AUTO_ROLLOUT": "shadow",
             "MARQUEE_RETRAIN_ROUTER_URL": f"http://127.0.0.1:{router.getsockname()[1]}"}
    try:
        with running_trigger(tmp_path, **extra) as trig:
            decision = trig.post("af7e0001", "movie-recommender").json()["decisions"][0]
            assert decision["decision"] == "started", decision
            run_id = decision["run_id"]
            held, _ = router.accept()  # the step asks the router: it is under way
            trig.proc.send_signal(signal.SIGKILL)
            trig.proc.wait(10)
            held.close()
            record = trig.home / "retrain" / "runs" / f"{run_id}.json"
            run = json.loads(record.read_text())
            assert run["status"] == "succeeded" and run["model_version"] == "7", run
            decisions = [json.loads(line) for line in
                         (trig.home / "retrain" / "decisions.jsonl").read_text().splitlines()]
            assert not [d for d in decisions if d["source"] == "auto-rollout"], \
                "the step ended before the kill: the test did not hold it"

        with running_trigger(tmp_path, **extra) as again:
            # the restarted trigger runs the step again: it asks the router once more
            held, _ = router.accept()
            held.close()  # and finds it down
            wait_until(lambda: _after_run_decisions(again.url, run_id), timeout=60,
                       what="the after-run decision of the run")
            [after] = _after_run_decisions(again.url, run_id)
            assert after["decision"] == "rollout-failed", after
            assert "after a restart" in after["detail"], after
            assert "exited" in after["detail"] and "unreachable" in after["detail"], after
            [run] = [r for r in _runs_and_decisions(again.url)["runs"]
                     if r["run_id"] == run_id]
            assert run["status"] == "succeeded" and run["after_run"] is None, run
    finally:
        router.close()
