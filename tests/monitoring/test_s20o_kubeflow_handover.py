"""A trigger that shuts down cleanly hands its Kubeflow run over (helper O, session 20).

Before, ``RetrainTrigger.close()`` (SIGTERM: a pod replaced in a rolling update, a node drain)
stopped the launcher's wait, and the run ended FAILED ("the trigger stopped while it was
RUNNING") with its claim released, while the pipeline went on in Kubeflow and registered a
version that nobody followed or rolled out; the next alert could start a second training
beside it. Now the run stays RUNNING, its claim is marked handed over, and the next trigger
follows it: at its start, on its next decision, or (already running) on its idle check.

Real here: the triggers, their shared persisted state, the launcher, the MLflow registry
(SQLite). STAND-IN (no Kubeflow host is reachable from this machine): ``StandInKubeflow`` of
test_s20n_kubeflow_unrecorded_run.py for ``kfp.Client``; a run reports ``states`` and
registers its version when it first reports SUCCEEDED. The two triggers run in this one test
process, as two pods sharing the state volume would.
"""

from __future__ import annotations

import sys
from pathlib import Path

from monitoring.retrain.launcher import CommandLauncher, KubeflowLauncher
from monitoring.retrain.models import DecisionKind, ManualRequest, RunStatus
from monitoring.retrain.state import LEASE_SECONDS, StateStore
from monitoring.retrain.trigger import RetrainTrigger
from tests.conftest import wait_until
from tests.monitoring.test_retrain_cluster import MODEL
from tests.monitoring.test_s20n_kubeflow_unrecorded_run import (  # noqa: F401 - fixtures
    StandInKubeflow,
    finish,
    registry,
    rollouts,
    settings,
)


def trigger(root: Path, settings, kubeflow: StandInKubeflow,  # noqa: ANN001
            lease_seconds: float = LEASE_SECONDS) -> RetrainTrigger:
    launcher = KubeflowLauncher(settings, client=kubeflow, poll_seconds=0.01)
    return RetrainTrigger(StateStore(root), launcher, default_model=MODEL, after_run=rollouts,
                          lease_seconds=lease_seconds)


def running_in_kubeflow(kubeflow: StandInKubeflow, first: RetrainTrigger) -> str:
    """Trigger ``first`` starts a run and follows it in Kubeflow (RUNNING); its run id."""
    decision = first.handle_manual(ManualRequest(reason="drift on genre mix"))
    assert decision.started, decision
    wait_until(lambda: kubeflow.polls.get("kfp-1", 0) >= 2, timeout=30,
               what="the Kubeflow run followed")
    return decision.run_id


def test_a_run_handed_over_at_shutdown_is_followed_by_the_next_trigger(
        tmp_path: Path, settings, registry: None) -> None:  # noqa: ANN001, F811
    root = tmp_path / "retrain"
    store = StateStore(root)
    kubeflow = StandInKubeflow(settings, ["RUNNING"])
    first = trigger(root, settings, kubeflow).start()
    try:
        run_id = running_in_kubeflow(kubeflow, first)
    finally:
        first.close(10)  # SIGTERM: the pod is replaced
    run = store.load_run(run_id)
    assert run.status is RunStatus.RUNNING, run.error
    assert run.pipeline_run_id == "kfp-1" and run.finished_at is None
    flight = store.read().in_flight
    assert flight is not None and flight.run_id == run_id
    assert flight.handed_over is not None
    # the same process here, yet the claim no longer counts as owned: no lease to wait out
    assert not flight.owner_alive()

    kubeflow.states = ["SUCCEEDED"]  # the pipeline ends while no trigger runs
    second = trigger(root, settings, kubeflow).start()
    finish(second)
    run = store.load_run(run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert (run.pipeline_run_id, run.model_version) == ("kfp-1", "2")
    assert kubeflow.created == ["kfp-1"]  # followed, not submitted again
    last = store.decisions()[-1]
    assert (last.decision, last.run_id) == (DecisionKind.ROLLOUT_STARTED, run_id)
    assert store.read().in_flight is None


def test_a_trigger_already_running_picks_up_the_handed_over_run_without_an_alert(
        tmp_path: Path, settings, registry: None) -> None:  # noqa: ANN001, F811
    """Rolling update: the new pod is up before the old one stops. Its idle worker looks for
    a claim left behind every lease / 5 (0.4 s here) and follows the run."""
    root = tmp_path / "retrain"
    store = StateStore(root)
    kubeflow = StandInKubeflow(settings, ["RUNNING"])
    first = trigger(root, settings, kubeflow, lease_seconds=2.0).start()
    second = trigger(root, settings, kubeflow, lease_seconds=2.0).start()
    try:
        try:
            run_id = running_in_kubeflow(kubeflow, first)
        finally:
            first.close(10)
        kubeflow.states = ["SUCCEEDED"]
        wait_until(lambda: store.load_run(run_id).status is not RunStatus.RUNNING,
                   timeout=30, what="the handed-over run ended")
        run = store.load_run(run_id)
        assert run.status is RunStatus.SUCCEEDED, run.error
        wait_until(lambda: store.read().in_flight is None, timeout=30, what="claim released")
    finally:
        finish(second)
    assert run.model_version == "2" and kubeflow.created == ["kfp-1"]
    last = store.decisions()[-1]
    assert (last.decision, last.run_id) == (DecisionKind.ROLLOUT_STARTED, run_id)
    assert [d.decision for d in store.decisions()] == [DecisionKind.STARTED,
                                                       DecisionKind.ROLLOUT_STARTED]


def test_the_next_decision_follows_a_handed_over_run_instead_of_starting_a_second(
        tmp_path: Path, settings, registry: None) -> None:  # noqa: ANN001, F811
    """A trigger already running, whose idle check is not due yet (default lease): the next
    request finds the run handed over, follows it and is refused as busy."""
    root = tmp_path / "retrain"
    store = StateStore(root)
    kubeflow = StandInKubeflow(settings, ["RUNNING"])
    first = trigger(root, settings, kubeflow).start()
    second = trigger(root, settings, kubeflow).start()
    try:
        try:
            run_id = running_in_kubeflow(kubeflow, first)
        finally:
            first.close(10)
        decision = second.handle_manual(ManualRequest(reason="drift again", force=True))
        kubeflow.states = ["SUCCEEDED"]
        assert decision.decision is DecisionKind.BUSY, decision
        assert run_id in decision.detail
    finally:
        finish(second)
    run = store.load_run(run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert kubeflow.created == ["kfp-1"]  # no second training beside it
    assert store.read().in_flight is None


def test_a_local_command_run_still_fails_when_its_trigger_stops(tmp_path: Path) -> None:
    """Its child is stopped with the trigger: nothing goes on to hand over (unchanged)."""
    store = StateStore(tmp_path / "retrain")
    launcher = CommandLauncher([sys.executable, "-c", "import time; time.sleep(60)"])
    trig = RetrainTrigger(store, launcher, default_model=MODEL).start()
    try:
        decision = trig.handle_manual(ManualRequest(reason="drift on genre mix"))
        wait_until(lambda: store.read().in_flight.child_pid is not None,
                   timeout=30, what="the child started")
    finally:
        trig.close(10)
    run = store.load_run(decision.run_id)
    assert run.status is RunStatus.FAILED
    assert "was stopped: the trigger is shutting down" in run.error, run.error
    assert store.read().in_flight is None


def test_a_worker_stuck_in_a_kubeflow_call_still_hands_its_run_over_at_close(
        tmp_path: Path, settings, registry: None) -> None:  # noqa: ANN001, F811
    """``marquee trigger`` closes with a 5 s timeout; a worker inside a Kubeflow call (bounded
    by the API timeout, 60 s) does not return by then, and the process exited with the claim
    unmarked: the next trigger waited out the lease as after a crash. ``close`` marks it."""
    import threading

    class Stuck(StandInKubeflow):  # STAND-IN: a get_run that stops answering
        def __init__(self, *a, **kw) -> None:  # noqa: ANN002, ANN003
            super().__init__(*a, **kw)
            self.release = threading.Event()

        def get_run(self, run_id: str):  # noqa: ANN201
            if self.polls.get(run_id, 0) >= 2:
                self.polls[run_id] += 1
                self.release.wait(30)
            return super().get_run(run_id)

    root = tmp_path / "retrain"
    store = StateStore(root)
    kubeflow = Stuck(settings, ["RUNNING"])
    launcher = KubeflowLauncher(settings, client=kubeflow, poll_seconds=0.01,
                                api_timeout_seconds=30.0)
    first = RetrainTrigger(StateStore(root), launcher, default_model=MODEL,
                           after_run=rollouts).start()
    try:
        run_id = running_in_kubeflow(kubeflow, first)
        wait_until(lambda: kubeflow.polls["kfp-1"] >= 3, timeout=30, what="the stuck call")
        first.close(0.5)
        flight = store.read().in_flight
        assert flight is not None and flight.run_id == run_id
        assert flight.handed_over is not None
        assert store.load_run(run_id).status is RunStatus.RUNNING
    finally:
        kubeflow.release.set()
