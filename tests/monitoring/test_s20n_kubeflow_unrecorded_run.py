"""A Kubeflow run the retrain trigger submitted but did not record (helper N, session 20).

The trigger records the Kubeflow run's id (``on_submitted``) only after Kubeflow answered the
create call. A trigger that died in between, or whose create call went unanswered, left a
run record without ``pipeline_run_id``: the restarted trigger marked the run failed while the
pipeline went on in Kubeflow and registered a version that nobody followed or rolled out.
Now the run is submitted under a name made from the trigger's run id, and found by it.

Real here: the trigger, its persisted state, the launcher, the MLflow registry (SQLite) the
launcher reads the version from. STAND-IN (no Kubeflow host is reachable from this machine):
``StandInKubeflow`` stands in for ``kfp.Client``; it keeps the runs it created with their
names, answers ``list_runs`` with the display-name filter as the Kubeflow API applies it,
and "runs" the pipeline by registering a version when a run first reports SUCCEEDED. A
trigger's crash is simulated as in the other restart tests: the state it left, with its
in-flight claim held by a pid that no longer exists.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from marquee.registry import Registry
from marquee.settings import Settings
from monitoring.retrain.launcher import KubeflowLauncher
from monitoring.retrain.models import Decision, DecisionKind, ManualRequest, RunRecord, RunStatus
from monitoring.retrain.state import InFlight, StateStore
from monitoring.retrain.trigger import RetrainTrigger
from tests.monitoring.test_retrain_cluster import MODEL, FakeKfpClient

class StandInKubeflow(FakeKfpClient):
    """STAND-IN for ``kfp.Client`` (see the module docstring). ``hang``: a create call
    registers its run, then does not answer until the event is set (a trigger that dies, or
    an API that stops answering, after Kubeflow created the run). ``unreachable``: every
    ``list_runs`` fails as a connection error."""

    def __init__(self, settings: Settings, states: list[str], *,
                 hang: threading.Event | None = None, unreachable: bool = False) -> None:
        super().__init__(settings, states)
        self.hang = hang
        self.unreachable = unreachable
        self.names: dict[str, str] = {}  # Kubeflow run id -> display name
        self.filters: list[dict] = []
        self.answered = threading.Event()  # a create call has created its run

    def create_run_from_pipeline_func(self, func, arguments, run_name, experiment_name):  # noqa: ANN001, ANN201
        run = super().create_run_from_pipeline_func(func, arguments, run_name, experiment_name)
        self.names[run.run_id] = run_name
        self.answered.set()
        if self.hang is not None:
            self.hang.wait()
        return run

    def list_runs(self, page_token: str = "", page_size: int = 10, sort_by: str = "",
                  experiment_id: str | None = None, namespace: str | None = None,
                  filter: str | None = None) -> SimpleNamespace:  # noqa: A002 - kfp's name
        self.filters.append(json.loads(filter or "{}"))
        if self.unreachable:
            raise ConnectionError("kubeflow.invalid: connection refused")
        wanted = {p["stringValue"] for p in self.filters[-1].get("predicates", [])
                  if p["key"] == "display_name" and p["operation"] == "EQUALS"}
        runs = [SimpleNamespace(run_id=rid, display_name=name, created_at=None)
                for rid, name in self.names.items() if not wanted or name in wanted]
        return SimpleNamespace(runs=runs[:page_size] or None, total_size=len(runs),
                               next_page_token="")


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", kubeflow_host="http://kubeflow.invalid")


@pytest.fixture()
def registry(settings: Settings) -> None:
    """Version 1, registered before the test: the registry's first use takes seconds, and
    the run's registration then stays within the launcher's API timeout."""
    Registry(settings.resolved_registry_uri, MODEL).register(
        "file:///bundles/first", {"ndcg_at_10": 0.25}, {"gate.decision": "promoted-first"})


def rollouts(run: RunRecord) -> Decision:
    """The after-run step, played: what the shadow rollout would start for this version."""
    return Decision(time=run.finished_at, decision=DecisionKind.ROLLOUT_STARTED,
                    source="auto-rollout", model=run.model, run_id=run.run_id,
                    detail=f"version {run.model_version} into a shadow rollout")


def trigger(root: Path, settings: Settings, client: StandInKubeflow, **kw) -> RetrainTrigger:  # noqa: ANN003
    launcher = KubeflowLauncher(settings, client=client, poll_seconds=0.01, **kw)
    return RetrainTrigger(StateStore(root), launcher, default_model=MODEL, after_run=rollouts)


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def crashed(store: StateStore) -> None:
    """The trigger that holds the in-flight claim is gone (its pid no longer exists)."""
    with store.transaction() as state:
        flight = state.in_flight
        state.in_flight = InFlight(run_id=flight.run_id, model=flight.model, since=flight.since,
                                   pid=dead_pid(), host=socket.gethostname())


def unrecorded_run(store: StateStore) -> str:
    """A run whose trigger died after marking it running, before it recorded a Kubeflow id."""
    since = datetime.now(timezone.utc)
    run = RunRecord(run_id="rt-20261124T090000Z-0a1b2c", model=MODEL, reason="drift",
                    source="manual", launcher="kubeflow", status=RunStatus.RUNNING,
                    requested_at=since, started_at=since)
    store.save_run(run)
    with store.transaction() as state:
        state.in_flight = InFlight(run_id=run.run_id, model=MODEL, since=since,
                                   pid=dead_pid(), host=socket.gethostname())
    return run.run_id


def finish(trig: RetrainTrigger) -> None:
    try:
        assert trig.wait_idle(60)
    finally:
        trig.close()


def test_a_restarted_trigger_finds_the_run_its_predecessor_created_and_did_not_record(
        tmp_path: Path, settings: Settings, registry: None) -> None:
    """Trigger A's create call reached Kubeflow, and A "died" before it recorded the run's id:
    its state is copied at that moment and its claim given a dead pid. Trigger B, started
    over that state, finds the run by its name, records it, follows it to its end and rolls
    its version out; before, B marked the run failed ("owner process … exited")."""
    released = threading.Event()
    kubeflow = StandInKubeflow(settings, ["RUNNING", "SUCCEEDED"], hang=released)
    first = trigger(tmp_path / "a", settings, kubeflow).start()
    try:
        decision = first.handle_manual(ManualRequest(reason="drift on genre mix"))
        assert decision.started
        assert kubeflow.answered.wait(30)
        shutil.copytree(tmp_path / "a", tmp_path / "b")  # what the dead trigger left
    finally:
        first.close(0)  # A stops; its create call never answers (released at the end)
    store = StateStore(tmp_path / "b")
    assert store.load_run(decision.run_id).pipeline_run_id is None
    crashed(store)

    second = trigger(tmp_path / "b", settings, kubeflow).start()
    try:
        finish(second)
    finally:
        released.set()
    run = store.load_run(decision.run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert (run.pipeline_run_id, run.model_version) == ("kfp-1", "2")
    assert kubeflow.created == ["kfp-1"]  # followed, not submitted a second time
    name = kubeflow.names["kfp-1"]
    assert name == f"marquee-training-retrain-{decision.run_id}" and len(name) <= 63
    assert kubeflow.filters[-1] == {"predicates": [
        {"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    last = store.decisions()[-1]
    assert (last.decision, last.run_id) == (DecisionKind.ROLLOUT_STARTED, decision.run_id)
    assert store.read().in_flight is None


def test_a_run_kubeflow_never_created_fails_saying_so(tmp_path: Path,
                                                      settings: Settings) -> None:
    store = StateStore(tmp_path / "retrain")
    run_id = unrecorded_run(store)
    kubeflow = StandInKubeflow(settings, ["SUCCEEDED"])
    # launched just now: looked for during the rest of a 0.3 s grace period (not 5 min)
    finish(trigger(store.root, settings, kubeflow, create_grace_seconds=0.3).start())
    run = store.load_run(run_id)
    assert run.status is RunStatus.FAILED
    assert f"Kubeflow has no run named marquee-training-retrain-{run_id}" in run.error, run.error
    assert kubeflow.created == [] and store.read().in_flight is None


def test_a_lookup_that_cannot_reach_kubeflow_names_the_run_to_look_for(
        tmp_path: Path, settings: Settings) -> None:
    store = StateStore(tmp_path / "retrain")
    run_id = unrecorded_run(store)
    kubeflow = StandInKubeflow(settings, ["SUCCEEDED"], unreachable=True)
    finish(trigger(store.root, settings, kubeflow, max_poll_errors=3).start())
    run = store.load_run(run_id)
    assert run.status is RunStatus.FAILED
    assert len(kubeflow.filters) == 3  # tried max_poll_errors times, as reading a run's state
    assert "could not be listed 3 times in a row: kubeflow.invalid: connection refused" in \
        run.error, run.error
    assert f"may exist all the same: look for run marquee-training-retrain-{run_id}" in \
        run.error, run.error


def test_a_create_call_that_timed_out_is_found_by_name_and_followed(
        tmp_path: Path, settings: Settings, registry: None) -> None:
    """Kubeflow created the run but did not answer within ``api_timeout_seconds``; before,
    the run failed ("whether Kubeflow created it is unknown") and its version was never
    rolled out."""
    released = threading.Event()
    kubeflow = StandInKubeflow(settings, ["RUNNING", "SUCCEEDED"], hang=released)
    trig = trigger(tmp_path / "retrain", settings, kubeflow, api_timeout_seconds=1.0).start()
    try:
        decision = trig.handle_manual(ManualRequest(reason="drift on genre mix"))
        finish(trig)
    finally:
        released.set()
    run = trig.store.load_run(decision.run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert (run.pipeline_run_id, run.model_version) == ("kfp-1", "2")
    assert kubeflow.created == ["kfp-1"]
    assert trig.store.decisions()[-1].decision is DecisionKind.ROLLOUT_STARTED


def test_a_create_call_that_timed_out_and_created_nothing_names_the_run_to_look_for(
        tmp_path: Path, settings: Settings) -> None:
    class Silent(StandInKubeflow):
        def create_run_from_pipeline_func(self, func, arguments, run_name, experiment_name):  # noqa: ANN001, ANN201
            self.hang.wait()  # never answers, creates nothing (yet)

    released = threading.Event()
    kubeflow = Silent(settings, ["SUCCEEDED"], hang=released)
    # looked for 0.2 s, not the default 5 min (test_s22e_kubeflow_late_run.py covers that wait)
    trig = trigger(tmp_path / "retrain", settings, kubeflow, api_timeout_seconds=1.0,
                   create_grace_seconds=0.2).start()
    try:
        decision = trig.handle_manual(ManualRequest(reason="drift on genre mix"))
        finish(trig)
    finally:
        released.set()
    run = trig.store.load_run(decision.run_id)
    assert run.status is RunStatus.FAILED
    assert "submitting the run: no answer from http://kubeflow.invalid within 1s" in run.error
    assert f"no run named marquee-training-retrain-{decision.run_id}" in run.error, run.error
