"""The retrain trigger after something went wrong under it: a corrupt state file, a trigger
killed with SIGKILL while its command launcher's child was running.

Each test starts its own `marquee trigger` on 127.0.0.1 (command launcher, the stand-in
pipeline of stand_in_pipeline.py) over a home it prepares, polls it until ready and stops it
by pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import REPO, free_port, pid_alive, stop_process, wait_until

pytestmark = [pytest.mark.integration]

TOKEN = "recovery-token"
STAND_IN = Path(__file__).with_name("stand_in_pipeline.py")
CORRUPT = '{"covered": {}, "in_flight": {"run_id": "rt-1", "model": "m'  # cut mid-write


@dataclass
class Trigger:
    url: str
    proc: subprocess.Popen
    home: Path
    runs_dir: Path
    env: dict[str, str]

    def post(self, fp: str, model: str) -> httpx.Response:
        return httpx.post(f"{self.url}/webhook", json=notification(fp, model),
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def stand_in_runs(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.runs_dir.glob("*.json"))]


def _env(tmp: Path, port: int, command: list[str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update({"MARQUEE_HOME": str(tmp / "home"), "MARQUEE_BIND_HOST": "127.0.0.1",
                "MARQUEE_RETRAIN_TOKEN_FILE": str(tmp / "token"),
                "MARQUEE_RETRAIN_PORT": str(port),
                "MARQUEE_RETRAIN_URL": f"http://127.0.0.1:{port}",
                "MARQUEE_RETRAIN_COOLDOWN_SECONDS": "0",
                "MARQUEE_RETRAIN_LAUNCHER": "command",
                "MARQUEE_RETRAIN_COMMAND": json.dumps(command),
                "STAND_IN_RUNS_DIR": str(tmp / "stand-in-runs"), "COLUMNS": "300", **extra})
    return env


@contextmanager
def running_trigger(tmp: Path, command: list[str] | None = None, *, ready: bool = True,
                    **extra: str) -> Iterator[Trigger]:
    """`marquee trigger` as a process; ``ready=False``: wait for /healthz only (a trigger
    that is up but not ready)."""
    (tmp / "token").write_text(TOKEN + "\n")
    port = free_port()
    env = _env(tmp, port, command or [sys.executable, str(STAND_IN)], **extra)
    log = open(tmp / f"trigger-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "marquee.cli", "trigger", "--log-level",
                             "warning"], env=env, cwd=REPO, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        probe = "/readyz" if ready else "/healthz"
        wait_until(lambda: proc.poll() is None
                   and httpx.get(url + probe, timeout=1).status_code == 200,
                   timeout=60, what=f"retrain trigger {probe}")
        yield Trigger(url, proc, tmp / "home", tmp / "stand-in-runs", env)
    finally:
        stop_process(proc)
        log.close()


def notification(fp: str, model: str) -> dict:
    alert = {"status": "firing",
             "labels": {"alertname": "ModelDataDrift", "model": model, "retrain": "true"},
             "annotations": {"summary": "drifted"}, "startsAt": "2025-03-01T02:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fp}
    return {"receiver": "retrain-trigger", "status": "firing", "alerts": [alert],
            "version": "4", "groupKey": f'{{}}:{{model="{model}"}}', "truncatedAlerts": 0}


def _marquee(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marquee.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


# --- 1. a corrupt state.json ---------------------------------------------------------------

def _corrupt_state(tmp: Path, text: str = CORRUPT) -> Path:
    state = tmp / "home" / "retrain" / "state.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(text)
    return state


def test_a_corrupt_state_file_is_named_kept_and_refuses_webhooks_until_repaired(
        tmp_path: Path) -> None:
    state = _corrupt_state(tmp_path)
    with running_trigger(tmp_path, ready=False, STAND_IN_SECONDS="0.1") as trig:
        resp = trig.post("c0ffee01", "model-corrupt")
        assert resp.status_code == 503, resp.text
        body = resp.json()
        assert body["error"] == "StateCorruptError"
        assert str(state) in body["message"] and "not valid" in body["message"]
        # not ready (the reason named), yet alive: a restart would not repair a file
        ready = httpx.get(f"{trig.url}/readyz", timeout=5)
        assert ready.status_code == 503 and str(state) in ready.json()["reason"]
        assert httpx.get(f"{trig.url}/healthz", timeout=5).status_code == 200
        metrics = httpx.get(f"{trig.url}/metrics", timeout=5).text
        assert 'marquee_retrain_webhook_requests_total{code="503"} 1.0' in metrics
        assert state.read_text() == CORRUPT  # nothing stored is overwritten or lost
        assert trig.stand_in_runs() == []
        # `marquee incidents` reading the service names it too
        out = _marquee(["incidents"], trig.env)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert [line for line in out.stderr.splitlines() if line.startswith("error:")] == \
            [f"error: trigger at {trig.url} is not ready: {ready.json()['reason']}"]
        # on-call moves the file aside: decisions resume without a restart
        state.rename(state.with_name("state.json.corrupt-manual"))
        wait_until(lambda: httpx.get(f"{trig.url}/readyz", timeout=1).status_code == 200,
                   timeout=10, what="ready once the state is readable")
        again = trig.post("c0ffee01", "model-corrupt")
        assert again.status_code == 200
        assert again.json()["decisions"][0]["decision"] == "started"


@pytest.mark.parametrize("text", [CORRUPT, "not json at all", '{"in_flight": 3}', ""])
def test_the_state_store_names_a_corrupt_file_and_keeps_it(tmp_path: Path, text: str) -> None:
    from monitoring.retrain.state import StateCorruptError, StateStore

    state = _corrupt_state(tmp_path, text)
    store = StateStore(state.parent)
    with pytest.raises(StateCorruptError, match=f"{state}: .*not valid") as err:
        with store.transaction():
            pass
    assert err.value.status_code == 503
    assert state.read_text() == text


def test_retrain_and_incidents_on_a_corrupt_state_print_one_error_line(tmp_path: Path) -> None:
    state = _corrupt_state(tmp_path)
    (tmp_path / "token").write_text(TOKEN)
    env = _env(tmp_path, free_port(), [sys.executable, str(STAND_IN)])  # no trigger there
    for args in (["retrain", "--local", "--reason", "fresh data landed"], ["incidents"]):
        out = _marquee(args, env)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr, out.stderr
        errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and str(state) in errors[0], out.stderr
    assert state.read_text() == CORRUPT
    assert not (tmp_path / "stand-in-runs").exists()


# --- 2. the command launcher's child when the trigger is killed ------------------------------

def test_sigkill_of_the_trigger_takes_its_pipeline_child_with_it(tmp_path: Path) -> None:
    with running_trigger(tmp_path, STAND_IN_SECONDS="300") as trig:
        assert trig.post("dead0001", "model-orphan").json()["decisions"][0]["decision"] \
            == "started"
        wait_until(lambda: len(trig.stand_in_runs()) == 1, timeout=30, what="child started")
        child = trig.stand_in_runs()[0]["pid"]
        assert pid_alive(child)
        trig.proc.send_signal(signal.SIGKILL)
        trig.proc.wait(10)
        try:
            wait_until(lambda: not pid_alive(child), timeout=15, what="the child gone")
        finally:
            if pid_alive(child):
                os.kill(child, signal.SIGKILL)


def test_a_restarted_trigger_starts_no_second_run_while_the_orphan_lives(
        tmp_path: Path) -> None:
    """A shell's own children outlive it (only the direct child gets the parent-death
    signal): the restarted trigger sees the recorded child's process group alive and refuses
    a second run for as long as it lives."""
    pid_file = tmp_path / "grandchild.pid"
    command = ["sh", "-c", f'{sys.executable} {STAND_IN} & echo $! > {pid_file}; wait']
    grandchild = None
    try:
        with running_trigger(tmp_path, command, STAND_IN_SECONDS="300") as trig:
            trig.post("dead0002", "model-orphan")
            wait_until(lambda: len(trig.stand_in_runs()) == 1, timeout=30,
                       what="grandchild started")
            grandchild = trig.stand_in_runs()[0]["pid"]
            trig.proc.send_signal(signal.SIGKILL)
            trig.proc.wait(10)
        assert pid_alive(grandchild)
        with running_trigger(tmp_path, command, STAND_IN_SECONDS="300") as again:
            resp = again.post("dead0003", "model-orphan")
            decision = resp.json()["decisions"][0]
            assert decision["decision"] == "busy", decision
            assert "still running" in decision["detail"]
            assert len(again.stand_in_runs()) == 1  # no second pipeline
            os.kill(grandchild, signal.SIGKILL)
            wait_until(lambda: not pid_alive(grandchild), timeout=10, what="orphan gone")
            after = again.post("dead0004", "model-orphan").json()["decisions"][0]
            assert after["decision"] == "started", after
    finally:
        if grandchild is not None and pid_alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)
