"""The rollout controller's per-rollout gauges stay bounded (session 21, helper J).

``marquee_rollout_phase`` (8 series a rollout), ``_step``, ``_failure_limit`` and
``_candidate_weight_ratio`` were kept for every rollout the controller ever ran: only
``_failed_checks`` went when one ended. Now running rollouts plus the last
``metrics.FINISHED_KEPT`` finished ones are exported (a finished rollout's final phase stays
visible for a while, as Flagger and Argo Rollouts show it); older ones are removed.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serving.rollout import metrics
from serving.rollout.controller import Controller
from serving.rollout.spec import ModelRollout, parse_rollout
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore
from tests.rollout.test_rollout_controller import Clock, DictRegistry, ScriptedSource

BASE = 8100  # candidate versions no other test uses (the registry is process-wide)
GAUGES = ("marquee_rollout_phase", "marquee_rollout_step", "marquee_rollout_failure_limit",
          "marquee_rollout_candidate_weight_ratio", "marquee_rollout_failed_checks")


class AnyVersionRegistry(DictRegistry):
    def has_version(self, version: str) -> bool:
        return True


def scrape() -> dict[str, dict[tuple[str, ...], float]]:
    """gauge -> {(model_version, strategy[, stage]): value} of this test's rollouts, as
    /metrics serves them."""
    out: dict[str, dict[tuple[str, ...], float]] = {g: {} for g in GAUGES}
    for family in text_string_to_metric_families(generate_latest().decode()):
        if family.name not in out:
            continue
        for s in family.samples:
            v = s.labels["model_version"]
            if v.isdigit() and int(v) >= BASE:
                key = (v, s.labels["strategy"], *([s.labels["stage"]] if "stage" in s.labels
                                                   else []))
                out[family.name][key] = s.value
    return out


def test_finished_rollouts_beyond_the_last_few_are_no_longer_exported(tmp_path: Path) -> None:
    metrics.forget_rollouts()
    store = FileStatusStore(tmp_path)
    reg = AnyVersionRegistry(production=str(BASE))
    n = 30
    for i in range(1, n + 1):  # one rollout after another, as over months
        name, candidate = f"r{i}", str(BASE + i)
        store.create(_named(name, candidate))
        errors = [20] if i % 3 == 0 else [0]  # every third one fails and rolls back
        final = Controller(store, name, ScriptedSource(errors), registry=reg,
                           clock=Clock()).run(max_ticks=10)
        assert final.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK), final.message
    # one more, left running at 50%
    store.create(_named("running", str(BASE + 99)))
    running = Controller(store, "running", ScriptedSource([0]), registry=reg, clock=Clock())
    status = running.tick()
    assert status.phase == Phase.PROGRESSING

    series = scrape()
    rollouts = {key[:2] for key in series["marquee_rollout_phase"]}
    kept = getattr(metrics, "FINISHED_KEPT", 10)  # (absent before the bound existed)
    assert len(rollouts) == kept + 1, sorted(rollouts)
    assert len(series["marquee_rollout_phase"]) == (kept + 1) * len(Phase)
    for gauge in ("marquee_rollout_step", "marquee_rollout_failure_limit",
                  "marquee_rollout_candidate_weight_ratio"):
        assert {key[:2] for key in series[gauge]} == rollouts, gauge
    # the last `kept` finished, with their final phase; the older ones gone
    assert rollouts == {(str(BASE + i), "canary") for i in range(n - kept + 1, n + 1)} | {
        (str(BASE + 99), "canary")}
    for i in range(n - kept + 1, n + 1):
        final = "RolledBack" if i % 3 == 0 else "Succeeded"
        assert series["marquee_rollout_phase"][(str(BASE + i), "canary", final)] == 1.0
    # the running one is exported in full, and the RolloutFailing alert's series with it
    run = (str(BASE + 99), "canary")
    assert series["marquee_rollout_phase"][(*run, "Progressing")] == 1.0
    assert series["marquee_rollout_candidate_weight_ratio"][run] == 0.5
    assert series["marquee_rollout_failed_checks"] == {run: 0.0}
    # a long-running rollout is never dropped, however many others end meanwhile
    for i in range(n + 1, n + kept + 5):
        name = f"r{i}"
        store.create(_named(name, str(BASE + i), model="other-model"))
        Controller(store, name, ScriptedSource([0]), registry=reg, clock=Clock()).run(
            max_ticks=10)
    assert scrape()["marquee_rollout_phase"][(*run, "Progressing")] == 1.0
    metrics.forget_rollouts()


def _named(name: str, candidate: str, model: str = "movie-recommender") -> ModelRollout:
    body = {"modelName": model, "baseline": {"alias": "production"},
            "candidate": {"version": candidate}, "strategy": "canary", "intervalSeconds": 0.01,
            "steps": [{"weight": 50}],
            "analysis": {"failureLimit": 2, "minRequests": 50,
                         "metrics": [{"name": "errorRate", "max": 0.05}]}}
    return parse_rollout({"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
                          "metadata": {"name": name}, "spec": body})
