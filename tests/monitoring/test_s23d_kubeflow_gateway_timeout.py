"""A Kubeflow create that a gateway answered 504 (or a dropped connection) is looked for by name.

The trigger looked for a run whose create call went unanswered (session 22: every
``poll_seconds`` for ``create_grace_seconds``) only when the trigger's own API timeout fired.
Kubeflow's API usually sits behind a gateway (Istio, ingress-nginx, oauth2-proxy) whose own
upstream timeout answers the create ``504 Gateway Timeout`` (kfp raises ``ApiException``
with ``status=504``), or the connection drops after the request was sent (urllib3's
``ProtocolError``): the API server had the request and persists the run seconds later, as
after a timeout. Before, the trigger failed the run at once while it trained in Kubeflow and
released its claim, so the next alert started a second training beside it. Now such an
answer is handled as an unanswered create: the run is looked for, found and followed.

Real here: the trigger behind its HTTP app (``POST /retrain``), its persisted state, the
launcher, the MLflow registry (SQLite). STAND-IN (no Kubeflow is reachable from this
machine): ``GatewayKubeflow``, built on ``LateKubeflow`` of test_s22e_kubeflow_late_run.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kfp_server_api.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from marquee.settings import Settings
from monitoring.retrain.app import create_app
from monitoring.retrain.launcher import KubeflowLauncher
from monitoring.retrain.models import DecisionKind, RunStatus
from monitoring.retrain.state import StateStore
from monitoring.retrain.trigger import RetrainTrigger
from tests.monitoring.test_retrain_cluster import MODEL
from tests.monitoring.test_s20n_kubeflow_unrecorded_run import (  # noqa: F401 - fixtures
    finish,
    registry,
    rollouts,
    settings,
)
from tests.monitoring.test_s22e_kubeflow_late_run import LateKubeflow, late  # noqa: F401

TOKEN = "s23d-token"


class GatewayKubeflow(LateKubeflow):
    """The create reaches the API server, which queues the run; the client gets ``error``
    instead of an answer (the gateway gave up waiting, or the connection dropped)."""

    def __init__(self, settings: Settings, states: list[str],  # noqa: F811
                 error: Exception, **kw) -> None:  # noqa: ANN003
        super().__init__(settings, states, **kw)
        self.error = error

    def create_run_from_pipeline_func(self, func, arguments, run_name, experiment_name):  # noqa: ANN001, ANN201
        with self.lock:
            self.queued.append(run_name)
        raise self.error


def _retrain(trig: RetrainTrigger) -> str:
    with TestClient(create_app(trig, TOKEN)) as http:
        got = http.post("/retrain", json={"reason": "drift on genre mix"},
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert got.status_code == 202, got.text
    return got.json()["run_id"]


def _trigger(root: Path, settings: Settings, kubeflow: LateKubeflow,  # noqa: F811
             grace: float) -> RetrainTrigger:
    launcher = KubeflowLauncher(settings, client=kubeflow, poll_seconds=0.05,
                                api_timeout_seconds=10.0, create_grace_seconds=grace)
    return RetrainTrigger(StateStore(root), launcher, default_model=MODEL,
                          after_run=rollouts).start()


@pytest.mark.parametrize("error", [
    ApiException(status=504, reason="Gateway Timeout"),
    ApiException(status=502, reason="Bad Gateway"),
    ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer")),
], ids=["504", "502", "connection-dropped"])
def test_a_create_the_gateway_gave_up_on_is_followed_not_failed(
        tmp_path: Path, settings: Settings, registry: None,  # noqa: F811
        late: list[LateKubeflow], error: Exception) -> None:  # noqa: F811
    kubeflow = GatewayKubeflow(settings, ["RUNNING", "SUCCEEDED"], error, appear_after=3)
    late.append(kubeflow)
    trig = _trigger(tmp_path / "retrain", settings, kubeflow, grace=60.0)
    run_id = _retrain(trig)
    finish(trig)
    run = trig.store.load_run(run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert (run.pipeline_run_id, run.model_version) == ("kfp-1", "2")
    assert kubeflow.names["kfp-1"] == f"marquee-training-retrain-{run_id}"
    assert kubeflow.looks_since_create == 3  # looked until Kubeflow listed it
    assert kubeflow.created == ["kfp-1"]  # one training
    last = trig.store.decisions()[-1]
    assert (last.decision, last.run_id) == (DecisionKind.ROLLOUT_STARTED, run_id)
    assert trig.store.read().in_flight is None


def test_a_504_whose_run_never_appears_fails_naming_the_answer_and_the_run(
        tmp_path: Path, settings: Settings, late: list[LateKubeflow]) -> None:  # noqa: F811
    kubeflow = GatewayKubeflow(settings, ["SUCCEEDED"],
                               ApiException(status=504, reason="Gateway Timeout"))
    late.append(kubeflow)
    trig = _trigger(tmp_path / "retrain", settings, kubeflow, grace=0.5)
    run_id = _retrain(trig)
    finish(trig)
    run = trig.store.load_run(run_id)
    assert run.status is RunStatus.FAILED
    name = f"marquee-training-retrain-{run_id}"
    assert "submitting the run: ApiException (504) Reason: Gateway Timeout; Kubeflow listed " \
           f"no run named {name} in 0.5s of looking (" in run.error, run.error
    assert "\n" not in run.error
    assert kubeflow.looks_since_create > 1 and kubeflow.created == []


def test_a_create_kubeflow_refused_fails_at_once(
        tmp_path: Path, settings: Settings, late: list[LateKubeflow]) -> None:  # noqa: F811
    """A 400 (or any answer from Kubeflow itself) says the run was not created: no looking."""
    kubeflow = GatewayKubeflow(settings, ["SUCCEEDED"],
                               ApiException(status=400, reason="Bad Request"))
    late.append(kubeflow)
    trig = _trigger(tmp_path / "retrain", settings, kubeflow, grace=60.0)
    run_id = _retrain(trig)
    finish(trig)
    run = trig.store.load_run(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error.startswith("ApiException: (400)"), run.error
    assert kubeflow.looks_since_create == 0
