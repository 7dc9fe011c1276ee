"""A deleted rollout's series go with it (session 23, helper B).

The multi-rollout controller exports per-rollout gauges labelled by the rollout's name
(session 22). A rollout deleted while it ran (``kubectl delete modelrollout X`` to stop a bad
canary; locally its directory removed) was never ticked again, and its series stayed as last
set for as long as the controller ran: Progressing at its weight and, with a failed check,
``marquee_rollout_failed_checks > 0``, so RolloutFailing kept paging about a rollout that no
longer exists. Series were removed only when the name was exported again (re-created) or when
ten newer rollouts had finished.

The real RolloutManager over a FileStatusStore; the series read from the controller's own
``/metrics`` endpoint on 127.0.0.1 (the fixture and scraper of the session-22 series tests).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from serving.rollout.manager import RolloutManager
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore
from tests.rollout.test_rollout_controller import ScriptedSource
from tests.rollout.test_s22a_rollout_series_per_name import (  # noqa: F401 - fixture
    AnyVersionRegistry,
    _rollout,
    metrics_url,
    scrape,
)


def test_a_rollout_deleted_while_failing_leaves_no_series(tmp_path: Path,
                                                          metrics_url: str) -> None:  # noqa: F811
    store = FileStatusStore(tmp_path)
    store.create(_rollout("s23b-gone", "recs-gone", steps=[10, 100], failure_limit=3))
    store.create(_rollout("s23b-kept", "recs-kept", steps=[10, 100], failure_limit=3))
    t = [0.0]
    manager = RolloutManager(store, ScriptedSource([20]), router=None,
                             registry=AnyVersionRegistry(production="1"), clock=lambda: t[0])
    for _ in range(2):  # started, then one failed check each
        manager.run_once()
        t[0] += 60
    assert store.get_status("s23b-gone").failed_checks == 1
    series = scrape(metrics_url)["marquee_rollout_failed_checks"]
    assert series == {("s23b-gone", "recs-gone"): 1.0, ("s23b-kept", "recs-kept"): 1.0}

    shutil.rmtree(tmp_path / "s23b-gone")  # kubectl delete modelrollout s23b-gone
    manager.run_once()
    series = scrape(metrics_url)
    assert set(series["marquee_rollout_failed_checks"]) == {("s23b-kept", "recs-kept")}, (
        "the deleted rollout still fails checks on /metrics: RolloutFailing keeps firing")
    assert {k[0] for name in series for k in series[name]} == {"s23b-kept"}
    assert series["marquee_rollout_phase"][("s23b-kept", "recs-kept", "Progressing")] == 1.0
    assert store.get_status("s23b-kept").phase == Phase.PROGRESSING
