"""Each rollout has its own per-rollout series (session 22, helper A).

The controller's per-rollout gauges (``marquee_rollout_phase``, ``_failed_checks``,
``_failure_limit``, ``_step``, ``_candidate_weight_ratio``) were labelled only by the
candidate's model version and the strategy: two rollouts of different models whose candidates
are both version N and both canaries wrote one set of series, so the last tick of either one
won, and RolloutFailing and the dashboard showed a mix of the two. They are now labelled by the
rollout's name and model too (Flagger labels its canary metrics by name and namespace).

Two rollouts driven through the real controller, the series read from the controller's own
``/metrics`` endpoint on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.rollout import metrics
from serving.rollout.controller import Controller
from serving.rollout.manager import serve_health
from serving.rollout.spec import ModelRollout, parse_rollout
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore
from tests.conftest import wait_until
from tests.rollout.test_rollout_controller import Clock, DictRegistry, ScriptedSource

VERSION = "8400"  # both candidates; a version no other test uses (the registry is process-wide)
PER_ROLLOUT = ("marquee_rollout_phase", "marquee_rollout_step", "marquee_rollout_failure_limit",
               "marquee_rollout_candidate_weight_ratio", "marquee_rollout_failed_checks")


class AnyVersionRegistry(DictRegistry):
    def has_version(self, version: str) -> bool:
        return True


@pytest.fixture
def metrics_url() -> Iterator[str]:
    """The controller's /healthz, /readyz and /metrics server on a free port of 127.0.0.1."""
    metrics.forget_rollouts()
    server = serve_health("127.0.0.1", 0, ready=lambda: True)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    wait_until(lambda: httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200,
               timeout=10, interval=0.05, what="controller metrics server ready")
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        metrics.forget_rollouts()


def scrape(url: str) -> dict[str, dict[tuple[str, ...], float]]:
    """gauge -> {(rollout, model[, stage]): value} of this test's candidate version."""
    out: dict[str, dict[tuple[str, ...], float]] = {g: {} for g in PER_ROLLOUT}
    text = httpx.get(f"{url}/metrics", timeout=5.0).raise_for_status().text
    for family in text_string_to_metric_families(text):
        if family.name not in out:
            continue
        for s in family.samples:
            if s.labels.get("model_version") != VERSION:
                continue
            assert s.labels["strategy"] == "canary", s
            key = (s.labels.get("rollout", "?"), s.labels.get("model", "?"),
                   *([s.labels["stage"]] if "stage" in s.labels else []))
            out[family.name][key] = s.value
    return out


def _rollout(name: str, model: str, steps: list[int], failure_limit: int,
             version: str = VERSION) -> ModelRollout:
    body = {"modelName": model, "baseline": {"alias": "production"},
            "candidate": {"version": version}, "strategy": "canary", "intervalSeconds": 1,
            "steps": [{"weight": w} for w in steps],
            "analysis": {"failureLimit": failure_limit, "minRequests": 50,
                         "metrics": [{"name": "errorRate", "max": 0.05}]}}
    return parse_rollout({"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
                          "metadata": {"name": name}, "spec": body})


def test_two_rollouts_of_one_version_and_strategy_have_their_own_series(
        tmp_path: Path, metrics_url: str) -> None:
    store = FileStatusStore(tmp_path)
    store.create(_rollout("shop-a", "recs-a", steps=[10, 50, 100], failure_limit=2))
    store.create(_rollout("shop-b", "recs-b", steps=[50, 100], failure_limit=3))
    # a: its candidate fails every check; b: healthy. Each model has its own registry.
    a = Controller(store, "shop-a", ScriptedSource([20]), registry=AnyVersionRegistry(
        production="1"), clock=Clock())
    b = Controller(store, "shop-b", ScriptedSource([0]), registry=AnyVersionRegistry(
        production="7"), clock=Clock())
    a.tick()  # started: 10%
    b.tick()  # started: 50%
    assert a.tick().failed_checks == 1  # a: one failed check, still at 10%
    series = scrape(metrics_url)
    a_, b_ = ("shop-a", "recs-a"), ("shop-b", "recs-b")
    assert series["marquee_rollout_failed_checks"] == {a_: 1.0, b_: 0.0}
    assert series["marquee_rollout_failure_limit"] == {a_: 2.0, b_: 3.0}
    assert series["marquee_rollout_candidate_weight_ratio"] == {a_: pytest.approx(0.10),
                                                                b_: pytest.approx(0.50)}
    assert series["marquee_rollout_step"] == {a_: 1.0, b_: 1.0}
    assert series["marquee_rollout_phase"][(*a_, "Progressing")] == 1.0
    assert series["marquee_rollout_phase"][(*b_, "Progressing")] == 1.0
    assert len(series["marquee_rollout_phase"]) == 2 * len(Phase)

    # a rolls back at its limit: its failed-checks series goes (RolloutFailing resolves for
    # a), b's stays and b keeps its own phase, step and weight
    assert a.tick().phase == Phase.ROLLED_BACK
    assert b.tick().step == 2
    series = scrape(metrics_url)
    assert series["marquee_rollout_failed_checks"] == {b_: 0.0}
    assert series["marquee_rollout_phase"][(*a_, "RolledBack")] == 1.0
    assert series["marquee_rollout_phase"][(*a_, "Progressing")] == 0.0
    assert series["marquee_rollout_phase"][(*b_, "Progressing")] == 1.0
    assert series["marquee_rollout_phase"][(*b_, "RolledBack")] == 0.0
    assert series["marquee_rollout_candidate_weight_ratio"][b_] == pytest.approx(1.0)
    assert series["marquee_rollout_candidate_weight_ratio"][a_] == 0.0
    assert series["marquee_rollout_step"][b_] == 2.0


def test_a_rollout_recreated_with_another_candidate_leaves_no_phantom_series(
        tmp_path: Path, metrics_url: str) -> None:
    """A running rollout deleted and applied again under its name with another candidate (a
    `kubectl delete` and `apply` mid-canary): the series of the old candidate went on saying
    Progressing at 10% beside the new one's for as long as the controller ran."""
    import shutil

    store = FileStatusStore(tmp_path)
    store.create(_rollout("shop", "recs", steps=[10, 100], failure_limit=2))
    first = Controller(store, "shop", ScriptedSource([0]),
                       registry=AnyVersionRegistry(production="1"), clock=Clock())
    assert first.tick().phase == Phase.PROGRESSING
    shutil.rmtree(tmp_path / "shop")
    store.create(_rollout("shop", "recs", steps=[10, 100], failure_limit=2, version="8401"))
    second = Controller(store, "shop", ScriptedSource([0]),
                        registry=AnyVersionRegistry(production="1"), clock=Clock())
    assert second.tick().candidate_version == "8401"

    text = httpx.get(f"{metrics_url}/metrics", timeout=5.0).raise_for_status().text
    versions = {s.labels["model_version"] for f in text_string_to_metric_families(text)
                if f.name in PER_ROLLOUT for s in f.samples if s.labels.get("rollout") == "shop"}
    assert versions == {"8401"}
