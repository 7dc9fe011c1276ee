"""A rollout frozen because its spec was edited into one the controller refuses
(tests/rollout/test_s20f_refused_spec_in_controller.py) can still be aborted: every request
goes back to the baseline and the rollout ends RolledBack. Before, ``marquee rollout abort``
failed on the refused spec (it parsed it to check the rollout exists), and the manager never
read a command for a rollout it could not parse: the on-call engineer's one lever was gone
while the candidate kept its share of traffic."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from serving.rollout.cli import app
from serving.rollout.manager import RolloutManager
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore
from tests.rollout.test_rollout_controller import DictRegistry, ScriptedSource
from tests.rollout.test_s20f_refused_spec_in_controller import (  # noqa: F401 - a fixture
    Backend,
    Router,
    _doc,
    backend,
)


def _frozen(backend: Backend) -> tuple[RolloutManager, Router, list[float]]:  # noqa: F811
    backend.store.create(parse_rollout(_doc("r1")))
    router, registry = Router(), DictRegistry(production="1")
    t = [0.0]
    mgr = RolloutManager(backend.store, ScriptedSource([0]), router, registry,
                         clock=lambda: t[0])
    mgr.run_once()
    assert backend.store.get("r1").status.weights.candidate == 10
    backend.write("r1", _doc("r1", baseline={"version": "2"}))  # refused: the same versions
    t[0] = 7.0
    mgr.run_once()
    assert "frozen" in backend.status("r1").message
    return mgr, router, t


def test_a_frozen_rollout_is_aborted_to_its_baseline(backend: Backend) -> None:  # noqa: F811
    mgr, router, t = _frozen(backend)
    backend.store.request("r1", "abort")
    t[0] = 14.0
    mgr.run_once()
    status = backend.status("r1")
    assert status.phase == Phase.ROLLED_BACK, status
    assert (status.weights.baseline, status.weights.candidate) == (100, 0)
    assert "aborted by user" in status.message and "the same as the baseline" in status.message
    routing = router.applied[-1]
    assert (routing.strategy, routing.baseline.version, routing.candidate) == ("single", "1",
                                                                              None)
    assert backend.store.pending_command("r1") is None
    assert status.decisions[-1].phase == Phase.ROLLED_BACK


def test_rollout_abort_accepts_a_rollout_whose_spec_is_refused(tmp_path: Path) -> None:
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(parse_rollout(_doc("r1")))
    path = tmp_path / "rollouts" / "r1" / "rollout.yaml"
    path.write_text(yaml.safe_dump(_doc("r1", baseline={"version": "2"})))
    runner = CliRunner()
    r = runner.invoke(app, ["abort", "r1"], env={"MARQUEE_HOME": str(tmp_path)})
    assert r.exit_code == 0, r.output
    assert store.pending_command("r1") == "abort"
    # a promote still needs the spec (it names the model whose aliases move): refused, named
    r = runner.invoke(app, ["promote", "r1"], env={"MARQUEE_HOME": str(tmp_path)})
    assert r.exit_code == 1 and "the same as the baseline" in r.output


def test_status_and_history_show_a_rollout_whose_spec_is_refused(tmp_path: Path) -> None:
    """``rollout status r1`` and ``history r1`` only printed the spec error: on call could not
    see the phase, weights, the controller's message or the decisions of the frozen rollout."""
    from serving.rollout.status import RolloutStatus, Weights

    store = FileStatusStore(tmp_path / "rollouts")
    store.create(parse_rollout(_doc("r1")))
    store.save_status("r1", RolloutStatus(phase=Phase.PROGRESSING, step=1,
                                          weights=Weights(baseline=90, candidate=10),
                                          message="frozen at its current weights, spec refused"))
    path = tmp_path / "rollouts" / "r1" / "rollout.yaml"
    path.write_text(yaml.safe_dump(_doc("r1", baseline={"version": "2"})))
    env = {"MARQUEE_HOME": str(tmp_path), "COLUMNS": "200"}
    r = CliRunner().invoke(app, ["status", "r1"], env=env)
    assert r.exit_code == 1  # the spec error is an error all the same
    assert "the same as the baseline" in r.output
    assert "Progressing" in r.output and "candidate 10%" in r.output and "frozen" in r.output
    r = CliRunner().invoke(app, ["status", "r1", "-o", "json"], env=env)
    assert '"phase": "Progressing"' in r.output
    r = CliRunner().invoke(app, ["history", "r1"], env=env)
    assert r.exit_code == 0, r.output
