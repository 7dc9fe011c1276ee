"""A frozen rollout's series follow its status when it is aborted (session 23, helper E).

A running rollout whose spec is edited into one the controller refuses is frozen where it is
(``RolloutManager._refused``, tests/rollout/test_s20f_refused_spec_in_controller.py) and can
still be aborted (tests/rollout/test_s20_frozen_abort.py). The abort saved RolledBack but never
touched the per-rollout gauges: ``/metrics`` went on saying Progressing at the candidate's
weight with its failed checks, so RolloutFailing (``marquee_rollout_failed_checks > 0``) kept
paging about a rollout already rolled back, for as long as the controller ran.

While frozen, the rollout is still in force (the candidate keeps its share of traffic and
nothing will roll it back by itself): its failed checks stay exported, as stored.

The real RolloutManager over a FileStatusStore; the series read from the controller's own
``/metrics`` endpoint on 127.0.0.1 (the fixture and scraper of the session-22 series tests).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from serving.rollout.manager import RolloutManager
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore
from tests.rollout.test_rollout_controller import ScriptedSource
from tests.rollout.test_s22a_rollout_series_per_name import (  # noqa: F401 - fixture
    VERSION,
    AnyVersionRegistry,
    _rollout,
    metrics_url,
    scrape,
)


def _refuse(root: Path, name: str) -> None:
    """Edit the rollout's spec in place into one spec.py refuses (``kubectl edit``): its
    baseline the candidate's version."""
    path = root / name / "rollout.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["baseline"] = {"version": VERSION}
    path.write_text(yaml.safe_dump(doc))


def test_an_aborted_frozen_rollout_stops_failing_on_metrics(tmp_path: Path,
                                                            metrics_url: str) -> None:  # noqa: F811
    store = FileStatusStore(tmp_path)
    store.create(_rollout("s23e-frozen", "recs-frozen", steps=[10, 100], failure_limit=3))
    t = [0.0]
    manager = RolloutManager(store, ScriptedSource([20]), router=None,
                             registry=AnyVersionRegistry(production="1"), clock=lambda: t[0])
    for _ in range(2):  # started, then one failed check
        manager.run_once()
        t[0] += 60
    key = ("s23e-frozen", "recs-frozen")
    assert scrape(metrics_url)["marquee_rollout_failed_checks"] == {key: 1.0}

    _refuse(tmp_path, "s23e-frozen")
    manager.run_once()
    t[0] += 60
    status = store.get_status("s23e-frozen")
    assert status.phase == Phase.PROGRESSING and "frozen" in status.message
    series = scrape(metrics_url)
    # frozen: still in force, its candidate still at 10% with a failed check (alert fires)
    assert series["marquee_rollout_failed_checks"] == {key: 1.0}
    assert series["marquee_rollout_phase"][(*key, "Progressing")] == 1.0
    assert series["marquee_rollout_candidate_weight_ratio"][key] == 0.1

    store.request("s23e-frozen", "abort")  # marquee rollout abort s23e-frozen
    manager.run_once()
    status = store.get_status("s23e-frozen")
    assert status.phase == Phase.ROLLED_BACK and "aborted by user" in status.message
    series = scrape(metrics_url)
    assert series["marquee_rollout_failed_checks"] == {}, (
        "the aborted rollout still fails checks on /metrics: RolloutFailing keeps firing")
    assert series["marquee_rollout_phase"][(*key, "RolledBack")] == 1.0
    assert series["marquee_rollout_phase"][(*key, "Progressing")] == 0.0
    assert series["marquee_rollout_candidate_weight_ratio"][key] == 0.0
    assert series["marquee_rollout_failure_limit"][key] == 3.0  # kept: the spec is unreadable
    # and it stays so on the next passes (the spec still refused, the rollout ended)
    t[0] += 60
    manager.run_once()
    assert scrape(metrics_url)["marquee_rollout_failed_checks"] == {}
