"""Decisions of the retrain trigger, in process: dedup, cooldown, one run in flight, records.

The launchers here are small real implementations of ``PipelineLauncher`` (one blocks until
released, so a run is reliably in flight); the HTTP service with a real child process is in
test_retrain_webhook.py.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from monitoring.retrain.launcher import LaunchRequest, LaunchResult
from monitoring.retrain.models import DecisionKind, ManualRequest, RunStatus, WebhookMessage
from monitoring.retrain.state import StateStore
from monitoring.retrain.trigger import RetrainTrigger

T0 = datetime(2025, 3, 1, 2, 0, tzinfo=timezone.utc)


def message(*alerts: dict, status: str = "firing") -> WebhookMessage:
    return WebhookMessage.model_validate({
        "version": "4", "groupKey": '{}/{retrain="true"}:{model="movie-recommender"}',
        "truncatedAlerts": 0, "status": status, "receiver": "retrain-trigger",
        "groupLabels": {"model": "movie-recommender"}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts)})


def alert(fp: str = "a1", name: str = "ModelDataDrift", status: str = "firing",
          starts: datetime = T0, model: str = "movie-recommender") -> dict:
    return {"status": status,
            "labels": {"alertname": name, "model": model, "retrain": "true",
                       "severity": "warning", "model_version": "3"},
            "annotations": {"summary": f"{name} summary"},
            "startsAt": starts.isoformat(), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": fp}


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class GateLauncher:
    """Holds every run open until ``release()``; records what it was asked to run."""

    name = "gate"

    def __init__(self, fail: bool = False) -> None:
        self.requests: list[LaunchRequest] = []
        self.entered = threading.Event()
        self._go = threading.Event()
        self.fail = fail

    def release(self) -> None:
        self._go.set()

    def launch(self, request: LaunchRequest) -> LaunchResult:
        self.requests.append(request)
        self.entered.set()
        assert self._go.wait(10), "test never released the run"
        if self.fail:
            raise RuntimeError("planted pipeline failure")
        return LaunchResult(pipeline_run_id="p-1", model_version="8", gate_decision="candidate")


@pytest.fixture()
def clock() -> Clock:
    return Clock()


def make(tmp_path: Path, launcher, clock: Clock, cooldown: float = 3600) -> RetrainTrigger:
    return RetrainTrigger(StateStore(tmp_path / "retrain"), launcher,
                          default_model="movie-recommender", cooldown_seconds=cooldown,
                          clock=clock).start()


def kinds(decisions) -> list[str]:
    return [d.decision.value for d in decisions]


def test_one_notification_with_several_alerts_starts_one_run(tmp_path: Path, clock: Clock) -> None:
    launcher = GateLauncher()
    trig = make(tmp_path, launcher, clock)
    launcher.release()
    got = trig.handle_webhook(message(alert("a1"), alert("b2", "PredictionDrift"),
                                      alert("c3", "ClickThroughDrop", status="resolved")))
    assert kinds(got) == ["started", "duplicate", "resolved-ignored"]
    assert got[1].run_id == got[0].run_id
    assert trig.wait_idle(10)
    run = trig.store.load_run(got[0].run_id)
    assert run.status is RunStatus.SUCCEEDED and run.model_version == "8"
    assert run.alerts == ["ModelDataDrift", "PredictionDrift"]
    assert len(launcher.requests) == 1
    # a re-send of either alert (Alertmanager repeat_interval) is a duplicate of that run
    again = trig.handle_webhook(message(alert("b2", "PredictionDrift")))
    assert kinds(again) == ["duplicate"] and again[0].run_id == got[0].run_id
    trig.close()


def test_busy_while_a_run_is_in_flight_then_cooldown(tmp_path: Path, clock: Clock) -> None:
    launcher = GateLauncher()
    trig = make(tmp_path, launcher, clock, cooldown=600)
    first = trig.handle_webhook(message(alert("a1")))
    assert kinds(first) == ["started"]
    assert launcher.entered.wait(5)
    # another model's alert while the run is in flight: busy (one run at a time overall)
    assert kinds(trig.handle_webhook(message(alert("x9", model="other-model")))) == ["busy"]
    assert trig.handle_manual(ManualRequest(reason="on-call asks")).decision is DecisionKind.BUSY
    launcher.release()
    assert trig.wait_idle(10)
    # finished, but the same model is in cooldown for 600 s
    clock.advance(300)
    cool = trig.handle_webhook(message(alert("a2", starts=T0 + timedelta(minutes=5))))
    assert kinds(cool) == ["cooldown"] and "cooldown until" in cool[0].detail
    # the other model is not in cooldown
    assert kinds(trig.handle_webhook(message(alert("x9", model="other-model")))) == ["started"]
    assert trig.wait_idle(10)
    # after the cooldown the drifting model may retrain again
    clock.advance(301)
    assert kinds(trig.handle_webhook(message(alert("a2", starts=T0 + timedelta(minutes=5))))) \
        == ["started"]
    assert trig.wait_idle(10)
    assert len(launcher.requests) == 3
    trig.close()


def test_manual_request_shares_the_rules_and_force_skips_only_cooldown(tmp_path: Path,
                                                                       clock: Clock) -> None:
    launcher = GateLauncher()
    launcher.release()
    trig = make(tmp_path, launcher, clock)
    assert kinds(trig.handle_webhook(message(alert("a1")))) == ["started"]
    assert trig.wait_idle(10)
    refused = trig.handle_manual(ManualRequest(reason="new data arrived"))
    assert refused.decision is DecisionKind.COOLDOWN
    forced = trig.handle_manual(ManualRequest(reason="new data arrived", force=True,
                                              requested_by="oncall"))
    assert forced.decision is DecisionKind.STARTED and "cooldown skipped" in forced.detail
    assert trig.wait_idle(10)
    run = trig.store.load_run(forced.run_id)
    assert run.source == "manual" and run.reason == "manual by oncall: new data arrived"
    trig.close()


def test_dedup_and_cooldown_survive_a_restart(tmp_path: Path, clock: Clock) -> None:
    launcher = GateLauncher()
    launcher.release()
    trig = make(tmp_path, launcher, clock)
    assert kinds(trig.handle_webhook(message(alert("a1")))) == ["started"]
    assert trig.wait_idle(10)
    trig.close()
    clock.advance(7200)  # past the cooldown: only dedup can refuse now
    restarted = make(tmp_path, launcher, clock)
    assert kinds(restarted.handle_webhook(message(alert("a1")))) == ["duplicate"]
    # the same fingerprint with a new startsAt is a new firing of the alert
    assert kinds(restarted.handle_webhook(
        message(alert("a1", starts=T0 + timedelta(hours=2))))) == ["started"]
    assert restarted.wait_idle(10)
    restarted.close()


def test_failed_run_is_recorded_and_frees_the_slot(tmp_path: Path, clock: Clock) -> None:
    launcher = GateLauncher(fail=True)
    launcher.release()
    trig = make(tmp_path, launcher, clock, cooldown=0)
    first = trig.handle_webhook(message(alert("a1")))
    assert trig.wait_idle(10)
    run = trig.store.load_run(first[0].run_id)
    assert run.status is RunStatus.FAILED and "planted pipeline failure" in run.error
    assert trig.store.read().in_flight is None
    assert kinds(trig.handle_webhook(message(alert("a2")))) == ["started"]
    assert trig.wait_idle(10)
    trig.close()


def test_run_left_in_flight_by_a_dead_process_is_released(tmp_path: Path, clock: Clock) -> None:
    import subprocess
    import sys

    launcher = GateLauncher()
    launcher.release()
    store = StateStore(tmp_path / "retrain")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    with store.transaction() as state:
        import socket

        from monitoring.retrain.state import InFlight
        state.in_flight = InFlight(run_id="rt-dead", model="movie-recommender", since=T0,
                                   pid=int(dead.stdout), host=socket.gethostname())
    trig = make(tmp_path, launcher, clock)
    assert kinds(trig.handle_webhook(message(alert("a1")))) == ["started"]
    assert trig.wait_idle(10)
    trig.close()


def _claim(store: StateStore, *, host: str, pid: int, beat: datetime, owner: str = "x") -> None:
    from monitoring.retrain.models import RunRecord
    from monitoring.retrain.state import InFlight

    store.save_run(RunRecord(run_id="rt-other", model="movie-recommender", reason="drift",
                             source="manual", launcher="gate", status=RunStatus.RUNNING,
                             requested_at=T0, started_at=T0))
    with store.transaction() as state:
        state.in_flight = InFlight(run_id="rt-other", model="movie-recommender", since=T0,
                                   pid=pid, host=host, owner=owner, heartbeat=beat)


@pytest.mark.parametrize("host, pid, beat_age, busy", [
    ("trigger-7f9c-old-pod", 1, 60, True),     # another pod renewed a minute ago: its run
    ("trigger-7f9c-old-pod", 1, 600, False),   # ... ten minutes ago: gone (replaced pod)
    (None, None, 60, False),                   # this host, this pid, another process: a
])                                             # restarted container's pid 1 again
def test_a_run_claimed_by_another_process_is_busy_only_while_its_heartbeat_is_fresh(
        tmp_path: Path, clock: Clock, host: str | None, pid: int | None, beat_age: float,
        busy: bool) -> None:
    import os
    import socket

    launcher = GateLauncher()
    launcher.release()
    store = StateStore(tmp_path / "retrain")
    clock.advance(3600)
    _claim(store, host=host or socket.gethostname(), pid=pid or os.getpid(),
           beat=datetime.fromtimestamp(clock() - beat_age, tz=timezone.utc))
    trig = make(tmp_path, launcher, clock)
    got = trig.handle_webhook(message(alert("a1")))
    assert trig.wait_idle(10)
    trig.close()
    if busy:
        assert kinds(got) == ["busy"] and "rt-other" in got[0].detail
        assert store.load_run("rt-other").status is RunStatus.RUNNING
    else:
        assert kinds(got) == ["started"]
        stale = store.load_run("rt-other")
        assert stale.status is RunStatus.FAILED and "exited during the run" in stale.error


def test_the_owner_renews_its_claim_while_the_run_goes_on(tmp_path: Path) -> None:
    """With a lease of 0.5 s the heartbeat is renewed every 0.1 s: the record of a long run
    never looks stale to a trigger in another pod sharing the volume."""
    import time

    launcher = GateLauncher()
    store = StateStore(tmp_path / "retrain")
    trig = RetrainTrigger(store, launcher, default_model="movie-recommender",
                          lease_seconds=0.5).start()
    try:
        trig.handle_webhook(message(alert("a1")))
        assert launcher.entered.wait(5)
        first = store.read().in_flight
        time.sleep(1.2)  # more than two leases
        later = store.read().in_flight
        assert later is not None and later.run_id == first.run_id
        assert later.heartbeat > first.heartbeat
        assert (datetime.now(timezone.utc) - later.heartbeat).total_seconds() < 0.5
    finally:
        launcher.release()
        assert trig.wait_idle(10)
        trig.close()
    assert store.read().in_flight is None


def test_every_decision_is_persisted_as_json_lines(tmp_path: Path, clock: Clock) -> None:
    launcher = GateLauncher()
    launcher.release()
    trig = make(tmp_path, launcher, clock)
    trig.handle_webhook(message(alert("a1")))
    trig.wait_idle(10)
    trig.handle_webhook(message(alert("a1")))
    trig.handle_webhook(message(alert("b1", status="resolved"), status="resolved"))
    trig.handle_manual(ManualRequest(reason="again please"))
    trig.record_unauthorized("POST /webhook: wrong bearer token")
    lines = (tmp_path / "retrain" / "decisions.jsonl").read_text().splitlines()
    assert [d.decision.value for d in trig.store.decisions()] == [
        "started", "duplicate", "resolved-ignored", "cooldown", "unauthorized"]
    assert len(lines) == 5
    trig.close()


def test_decision_log_rotates_at_its_size_cap_and_reads_across_files(tmp_path: Path) -> None:
    from monitoring.retrain.models import Decision

    store = StateStore(tmp_path / "retrain", max_log_bytes=2_000, keep_logs=2)
    written = [Decision(time=T0 + timedelta(seconds=i), decision=DecisionKind.DUPLICATE,
                        source="webhook", fingerprint=f"fp{i}") for i in range(100)]
    for d in written:
        store.append_decisions([d])
    files = sorted(p.name for p in (tmp_path / "retrain").glob("decisions.jsonl*"))
    assert files == ["decisions.jsonl", "decisions.jsonl.1", "decisions.jsonl.2"]
    assert all(p.stat().st_size <= 2_000 for p in (tmp_path / "retrain").glob("decisions.jsonl*"))
    kept = store.decisions()
    # the newest decisions survive, in order, with no line lost inside what is kept
    assert [d.fingerprint for d in kept] == [d.fingerprint for d in written[-len(kept):]]
    assert 20 < len(kept) < 100
    # a limit reaches back into the rotated files
    assert [d.fingerprint for d in store.decisions(limit=len(kept) - 1)] == [
        d.fingerprint for d in written[-(len(kept) - 1):]]



def test_a_decision_line_cut_short_by_a_crash_is_skipped_not_fatal(tmp_path: Path) -> None:
    from monitoring.retrain.models import Decision

    store = StateStore(tmp_path / "retrain")
    store.append_decisions([Decision(time=T0 + timedelta(seconds=i), decision=DecisionKind.DUPLICATE,
                                     source="webhook", fingerprint=f"fp{i}") for i in range(3)])
    with open(store.decisions_path, "a") as fh:  # the trigger died in the middle of a line
        fh.write('{"time": "2026-11-')
    store.append_decisions([Decision(time=T0, decision=DecisionKind.DUPLICATE,
                                     source="webhook", fingerprint="after")])
    # the cut line is skipped (and kept in the file); the decision after it starts a new line
    assert [d.fingerprint for d in store.decisions()] == ["fp0", "fp1", "fp2", "after"]
    assert '{"time": "2026-11-\n' in store.decisions_path.read_text()

class FullVolume(StateStore):
    """The trigger's state volume, full for the first ``failures`` run writes (ENOSPC)."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def save_run(self, run) -> None:  # noqa: ANN001
        if run.status is RunStatus.RUNNING and self.failures > 0:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        super().save_run(run)


def test_a_state_volume_error_fails_that_run_and_the_worker_goes_on(tmp_path: Path,
                                                                     clock: Clock) -> None:
    launcher = GateLauncher()
    launcher.release()
    store = FullVolume(tmp_path / "retrain", failures=1)
    trig = RetrainTrigger(store, launcher, default_model="movie-recommender",
                          cooldown_seconds=0, clock=clock).start()
    first = trig.handle_manual(ManualRequest(reason="first"))
    assert first.decision is DecisionKind.STARTED
    assert trig.wait_idle(10)
    assert launcher.requests == []  # it failed before launching
    assert store.load_run(first.run_id).status is RunStatus.FAILED
    assert store.read().in_flight is None  # the claim is released, not held for good
    assert trig.worker_alive and not trig.worker_died
    clock.advance(1)
    second = trig.handle_manual(ManualRequest(reason="second"))
    assert second.decision is DecisionKind.STARTED  # not refused as busy
    assert trig.wait_idle(10)
    assert [r.run_id for r in launcher.requests] == [second.run_id]
    assert store.load_run(second.run_id).status is RunStatus.SUCCEEDED
    trig.close(5)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_fails_the_liveness_probe(tmp_path: Path, clock: Clock) -> None:
    from fastapi.testclient import TestClient

    from monitoring.retrain.app import create_app

    class Fatal(BaseException):
        """Nothing in the trigger catches it (as a bug in a thread's own machinery)."""

    class Dies:
        name = "dies"

        def launch(self, request: LaunchRequest) -> LaunchResult:
            raise Fatal("the worker thread ends here")

    trig = make(tmp_path, Dies(), clock)
    with TestClient(create_app(trig, "token")) as http:
        assert http.get("/healthz").status_code == 200
        trig.handle_manual(ManualRequest(reason="retrain now"))
        trig._worker.join(10)  # noqa: SLF001 - wait for the thread to end
        assert trig.worker_died
        got = http.get("/healthz")
        assert got.status_code == 503 and "worker thread has ended" in got.json()["status"]
        assert http.get("/readyz").status_code == 503


def test_an_alert_for_another_model_starts_nothing_when_the_launcher_trains_one(
        tmp_path: Path, clock: Clock) -> None:
    """The pipeline launchers train the configured model whatever the alert names: before,
    alerts labelled model="x" each started a run of movie-recommender, past its cooldown."""
    launcher = GateLauncher()
    launcher.trains_requested_model = False  # as KfpLocalLauncher and KubeflowLauncher
    launcher.release()
    trig = make(tmp_path, launcher, clock)
    assert kinds(trig.handle_webhook(message(alert("a1")))) == ["started"]
    trig.wait_idle(10)
    assert kinds(trig.handle_webhook(message(alert("b1", model="movie-recommender-typo")))) \
        == ["other-model"]
    assert trig.handle_manual(ManualRequest(reason="typo", model="x")).decision.value \
        == "other-model"
    assert len(launcher.requests) == 1
    trig.close()


def test_refused_tokens_are_logged_at_most_once_a_minute(tmp_path: Path, clock: Clock) -> None:
    """Each 401 added a line to the decision log, so requests without a token could rotate
    the real decisions out of it."""
    launcher = GateLauncher()
    trig = make(tmp_path, launcher, clock)
    for _ in range(50):
        trig.record_unauthorized("POST /webhook: wrong bearer token")
    clock.advance(61)
    trig.record_unauthorized("POST /webhook: wrong bearer token")
    logged = [d for d in trig.store.decisions() if d.decision.value == "unauthorized"]
    assert len(logged) == 2 and "and 49 more in the last minute" in logged[-1].detail
    trig.close()


WAIT_IDLE_UNDER_SIGTERM = """
import signal, sys, threading, time
from pathlib import Path
from monitoring.retrain.models import ManualRequest
from monitoring.retrain.state import StateStore
from monitoring.retrain.trigger import RetrainTrigger

class Forever:
    name = "forever"
    def launch(self, request):
        threading.Event().wait()

def stop(signum, frame):
    raise SystemExit(128 + signum)

signal.signal(signal.SIGTERM, stop)  # as marquee.cli.main does
trig = RetrainTrigger(StateStore(Path(sys.argv[1])), Forever(),
                      default_model="movie-recommender").start()
trig.handle_manual(ManualRequest(reason="a run that never ends"))

def deliver_here():  # the kernel may hand a process's SIGTERM to any of its threads
    time.sleep(0.5)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

threading.Thread(target=deliver_here, daemon=True).start()
trig.wait_idle()
print("wait_idle returned", flush=True)
"""


def test_wait_idle_lets_a_sigterm_taken_by_another_thread_stop_the_command(tmp_path: Path) -> None:
    """``marquee retrain`` waits in ``wait_idle`` for its run. A SIGTERM that the kernel gives
    to another thread used to leave the main thread asleep in its lock wait for ever (the
    Python handler only runs in the main thread, once it wakes): the command hung."""
    import subprocess
    import sys

    script = tmp_path / "wait_idle.py"
    script.write_text(WAIT_IDLE_UNDER_SIGTERM)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "retrain")],
                          capture_output=True, text=True, timeout=30,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 143, (proc.stdout, proc.stderr)
    assert "wait_idle returned" not in proc.stdout
