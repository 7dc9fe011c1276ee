"""A Kubeflow run created late, after its submission went unanswered (helper E, session 22).

When the create call timed out, the trigger looked the run up by its name once; when Kubeflow
listed none at that moment the run failed and its claim was released. A Kubeflow API server
that timed out on a create often persists the run seconds later (the request was queued, not
lost): the trigger failed a run that was training, and a later alert could start a second,
duplicate training beside it. Now the run is looked for every ``poll_seconds`` for
``create_grace_seconds`` (``MARQUEE_RETRAIN_KUBEFLOW_CREATE_GRACE_SECONDS``) before it fails.

Real here: the trigger, its persisted state, the launcher, the MLflow registry (SQLite) the
launcher reads the version from. STAND-IN (no Kubeflow host is reachable from this machine,
and Kubeflow cannot run here): ``LateKubeflow``, built on ``StandInKubeflow`` of
test_s20n_kubeflow_unrecorded_run.py, for ``kfp.Client``. Its create call never answers and
queues the run; the run is persisted, and listed under its name, only once ``persist`` is
called or after ``appear_after`` listings, as an API server working off its queue would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from marquee.settings import Settings
from monitoring.retrain.config import TriggerSettings, make_launcher
from monitoring.retrain.launcher import KubeflowLauncher
from monitoring.retrain.models import DecisionKind, ManualRequest, RunStatus
from monitoring.retrain.state import StateStore
from monitoring.retrain.trigger import RetrainTrigger
from tests.conftest import wait_until
from tests.monitoring.test_retrain_cluster import MODEL, FakeKfpClient
from tests.monitoring.test_s20n_kubeflow_unrecorded_run import (  # noqa: F401 - fixtures
    StandInKubeflow,
    finish,
    registry,
    rollouts,
    settings,
    unrecorded_run,
)

API_TIMEOUT = 1.0  # the create call is abandoned after this long


class LateKubeflow(StandInKubeflow):
    """STAND-IN for ``kfp.Client`` (see the module docstring). ``appear_after``: the queued
    run is persisted by the n-th ``list_runs`` call made after the create call arrived (that
    listing shows it); None: only ``persist`` persists it."""

    def __init__(self, settings: Settings, states: list[str], *,
                 appear_after: int | None = None) -> None:
        super().__init__(settings, states, hang=threading.Event())
        self.appear_after = appear_after
        self.queued: list[str] = []  # display names of runs created but not persisted yet
        self.looks_since_create = 0
        self.lock = threading.Lock()

    def create_run_from_pipeline_func(self, func, arguments, run_name, experiment_name):  # noqa: ANN001, ANN201
        with self.lock:
            self.queued.append(run_name)
        self.answered.set()  # the call arrived (and is abandoned by the trigger)
        self.hang.wait()  # answers only once the test ends

    def persist(self) -> None:
        """Kubeflow works off its queue: the queued runs exist and are listed from now on."""
        with self.lock:
            for name in self.queued:
                run = FakeKfpClient.create_run_from_pipeline_func(self, None, {}, name, "")
                self.names[run.run_id] = name
            self.queued.clear()

    def list_runs(self, **kw):  # noqa: ANN003, ANN201
        with self.lock:
            if self.queued:
                self.looks_since_create += 1
            due = self.appear_after is not None and \
                self.looks_since_create >= self.appear_after
        if due:
            self.persist()
        return super().list_runs(**kw)


@pytest.fixture()
def late() -> Iterator[list[LateKubeflow]]:
    """Releases the create calls the tests' stand-ins keep hanging, once the test ends."""
    made: list[LateKubeflow] = []
    yield made
    for kubeflow in made:
        kubeflow.hang.set()


def stand_in(late: list[LateKubeflow], settings: Settings, states: list[str],
             **kw) -> LateKubeflow:  # noqa: ANN003
    kubeflow = LateKubeflow(settings, states, **kw)
    late.append(kubeflow)
    return kubeflow


def trigger(root: Path, settings: Settings, client: LateKubeflow,
            grace: float) -> RetrainTrigger:
    launcher = KubeflowLauncher(settings, client=client, poll_seconds=0.05,
                                api_timeout_seconds=API_TIMEOUT, create_grace_seconds=grace)
    return RetrainTrigger(StateStore(root), launcher, default_model=MODEL, after_run=rollouts)


def test_a_run_kubeflow_creates_late_is_followed_and_rolled_out(
        tmp_path: Path, settings: Settings, registry: None,
        late: list[LateKubeflow]) -> None:
    """The create call goes unanswered and the run is listed only from the fourth look on.
    Before, the one look found nothing and the run failed while it trained in Kubeflow."""
    kubeflow = stand_in(late, settings, ["RUNNING", "SUCCEEDED"], appear_after=4)
    trig = trigger(tmp_path / "retrain", settings, kubeflow, grace=60.0).start()
    decision = trig.handle_manual(ManualRequest(reason="drift on genre mix"))
    assert decision.started, decision
    finish(trig)
    run = trig.store.load_run(decision.run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert (run.pipeline_run_id, run.model_version) == ("kfp-1", "2")
    assert kubeflow.names["kfp-1"] == f"marquee-training-retrain-{decision.run_id}"
    assert kubeflow.looks_since_create == 4  # looked until it appeared, then followed it
    assert kubeflow.created == ["kfp-1"]  # one training, not a second one beside it
    last = trig.store.decisions()[-1]
    assert (last.decision, last.run_id) == (DecisionKind.ROLLOUT_STARTED, decision.run_id)
    assert trig.store.read().in_flight is None


def test_a_run_that_never_appears_fails_after_the_grace_period_saying_how_long(
        tmp_path: Path, settings: Settings, late: list[LateKubeflow]) -> None:
    kubeflow = stand_in(late, settings, ["SUCCEEDED"])  # the create is lost for good
    trig = trigger(tmp_path / "retrain", settings, kubeflow, grace=1.0).start()
    decision = trig.handle_manual(ManualRequest(reason="drift on genre mix"))
    finish(trig)
    run = trig.store.load_run(decision.run_id)
    assert run.status is RunStatus.FAILED
    name = f"marquee-training-retrain-{decision.run_id}"
    assert f"submitting the run: no answer from http://kubeflow.invalid within 1s; Kubeflow " \
           f"listed no run named {name} in 1s of looking (" in run.error, run.error
    assert "MARQUEE_RETRAIN_KUBEFLOW_CREATE_GRACE_SECONDS" in run.error
    assert kubeflow.looks_since_create > 1  # looked again, not once
    assert kubeflow.created == [] and trig.store.read().in_flight is None


def test_a_trigger_stopped_while_it_looks_hands_the_run_over_and_the_next_one_finds_it(
        tmp_path: Path, settings: Settings, registry: None,
        late: list[LateKubeflow]) -> None:
    """SIGTERM during a 10-minute grace period: ``close`` returns as soon as the worker sees
    the stop (it does not wait out the grace period), the run stays running with its claim
    handed over, and the next trigger looks it up by name (``adopt``) and follows it."""
    root = tmp_path / "retrain"
    store = StateStore(root)
    kubeflow = stand_in(late, settings, ["SUCCEEDED"])
    first = trigger(root, settings, kubeflow, grace=600.0).start()
    decision = first.handle_manual(ManualRequest(reason="drift on genre mix"))
    wait_until(lambda: kubeflow.looks_since_create >= 2, timeout=30,
               what="the trigger looking for the run after its unanswered create")
    run = store.load_run(decision.run_id)
    assert run.status is RunStatus.RUNNING, run.error  # still claimed while it looks
    assert store.read().in_flight.run_id == decision.run_id
    worker = first._worker
    first.close(30)  # the pod is replaced
    assert worker is not None and not worker.is_alive()  # returned, not stuck in the wait
    run = store.load_run(decision.run_id)
    assert run.status is RunStatus.RUNNING and run.pipeline_run_id is None, run.error
    flight = store.read().in_flight
    assert flight is not None and flight.handed_over is not None

    kubeflow.persist()  # Kubeflow creates the queued run while no trigger runs
    second = trigger(root, settings, kubeflow, grace=600.0).start()
    finish(second)
    run = store.load_run(decision.run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert (run.pipeline_run_id, run.model_version) == ("kfp-1", "2")
    assert kubeflow.created == ["kfp-1"]
    assert store.read().in_flight is None


def test_the_grace_period_is_a_trigger_setting(settings: Settings,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_launcher(settings, TriggerSettings(launcher="kubeflow")) \
        .create_grace_seconds == 300.0
    monkeypatch.setenv("MARQUEE_RETRAIN_KUBEFLOW_CREATE_GRACE_SECONDS", "45")
    launcher = make_launcher(settings, TriggerSettings(launcher="kubeflow"))
    assert launcher.create_grace_seconds == 45.0


def test_a_restarted_trigger_waits_the_rest_of_the_grace_period_for_an_unrecorded_run(
        tmp_path: Path, settings: Settings, registry: None,  # noqa: F811
        late: list[LateKubeflow]) -> None:
    """The trigger died just after its create call went unanswered (or handed the run over
    while looking): the restarted one adopts the run, and Kubeflow lists it only from the
    third look. Before, ``adopt`` looked once and failed it ("never submitted") while it
    trained; now it looks until the launch's grace period is over."""
    store = StateStore(tmp_path / "retrain")
    run_id = unrecorded_run(store)  # launched just now
    kubeflow = stand_in(late, settings, ["SUCCEEDED"], appear_after=3)
    kubeflow.queued.append(f"marquee-training-retrain-{run_id}")  # the dead trigger's create
    finish(trigger(store.root, settings, kubeflow, grace=30.0).start())
    run = store.load_run(run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.pipeline_run_id and kubeflow.looks_since_create >= 3
