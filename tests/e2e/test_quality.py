"""Online quality (monitoring/quality.py): NDCG on replayed ground truth agrees with the
offline metric, rolls over a window per version, and click-through per model version is read
from the router's own exposure and feedback logs (written by its EventLog to a local store)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from monitoring.quality import (
    RollingNDCG,
    VersionCTR,
    click_through,
    click_through_by_version,
    ndcg_at_k,
    rolling_ndcg,
)


def test_ndcg_matches_the_offline_metric() -> None:
    from recsys.metrics import per_user_metrics

    rng = np.random.default_rng(0)
    recs, truth, online = [], [], {}
    for user in range(1, 60):
        items = rng.choice(200, size=10, replace=False) + 1
        relevant = set(rng.choice(200, size=int(rng.integers(1, 15)), replace=False) + 1)
        recs += [{"user_id": user, "item_id": int(i), "rank": r + 1} for r, i in enumerate(items)]
        truth += [{"user_id": user, "item_id": int(i)} for i in relevant]
        online[user] = ndcg_at_k(items.tolist(), relevant, 10)
    offline = per_user_metrics(pd.DataFrame(recs), pd.DataFrame(truth), 10)["ndcg"]
    assert np.allclose([online[u] for u in offline.index], offline.to_numpy())


def test_ndcg_edge_cases() -> None:
    assert ndcg_at_k([1, 2, 3], set(), 10) == 0.0
    assert ndcg_at_k([1, 2, 3], {1}, 10) == 1.0
    assert ndcg_at_k([2, 1], {1}, 10) == pytest.approx(1 / np.log2(3))
    assert ndcg_at_k([9] * 10 + [1], {1}, 10) == 0.0  # beyond k


def test_rolling_ndcg_keeps_the_last_window_per_version() -> None:
    r = RollingNDCG(k=10, window=3)
    for _ in range(5):
        r.add("1", [5, 6], {6})
    for _ in range(3):
        r.add("1", [6, 5], {6})
    assert r.value("1") == 1.0  # the three perfect lists pushed the others out
    assert r.add("2", [1], set()) is None and r.value("2") is None  # no ground truth
    r.add("2", [1], {2})
    assert r.summary()["1"] == {"ndcg": 1.0, "lists": 3, "seen": 8}
    assert r.summary()["2"]["ndcg"] == 0.0


def test_click_through_counts_lists_with_a_click_per_version() -> None:
    exposures = pd.DataFrame({"request_id": list("abcdef"),
                              "model_version": ["1", "1", "1", "1", "2", "2"]})
    feedback = pd.DataFrame({"request_id": ["a", "a", "c", "e", "f"],
                             "event": ["click", "click", "impression", "watch", "impression"]})
    ctr = click_through(exposures, feedback)
    assert ctr == {"1": VersionCTR("1", 4, 1), "2": VersionCTR("2", 2, 1)}
    assert ctr["1"].ctr == 0.25
    low, high = ctr["1"].interval()
    assert 0 < low < 0.25 < high < 1
    assert click_through(exposures.iloc[:0], feedback) == {}


def test_click_through_by_version_from_the_routers_logs(tmp_path) -> None:  # noqa: ANN001
    from marquee.store import LocalStore
    from serving.router.exposure import (
        EXPOSURE_PREFIX,
        EXPOSURE_SCHEMA,
        FEEDBACK_PREFIX,
        FEEDBACK_SCHEMA,
        EventLog,
    )

    store = LocalStore(tmp_path / "store")
    exposures = EventLog(store, EXPOSURE_PREFIX, EXPOSURE_SCHEMA, flush_seconds=0.2).start()
    feedback = EventLog(store, FEEDBACK_PREFIX, FEEDBACK_SCHEMA, flush_seconds=0.2).start()
    now = time.time()
    try:
        for i in range(40):
            version = "1" if i < 30 else "2"
            exposures.log({"request_id": f"r{i}", "ts": now, "user_id": i, "variant": "baseline",
                           "model_version": version, "strategy": "canary", "k": 2,
                           "items": [1, 2], "scores": [0.5, 0.4], "teams": None,
                           "latency_ms": 3.0})
            if i % 3 == 0:  # 10 of version 1's lists, 4 of version 2's
                feedback.log({"request_id": f"r{i}", "ts": now, "user_id": i, "item_id": 1,
                              "event": "click", "variant": "baseline",
                              "model_version": version})
    finally:
        exposures.close()
        feedback.close()
    ctr = click_through_by_version(store, since=str(now - 60), until=str(now + 60))
    assert {v: (c.exposures, c.clicked) for v, c in ctr.items()} == {"1": (30, 10), "2": (10, 4)}
    assert click_through_by_version(store, since=str(now - 7200), until=str(now - 3600)) == {}


def test_rolling_ndcg_from_exposure_logs_per_time_bucket() -> None:
    exposures = pd.DataFrame({
        "ts": [0.0, 10.0, 35.0, 40.0, 70.0, 75.0],
        "user_id": [1, 2, 1, 2, 1, 3],
        "model_version": ["1", "1", "1", "2", "2", "2"],
        "items": [[1, 9], [9, 9], [1, 9], [2, 1], [1, 2], [5]],
    })
    truth = {1: [1], 2: [2]}  # user 3 has no ground truth
    out = rolling_ndcg(exposures, truth, bucket_seconds=30, window_buckets=2)
    got = {(r.bucket_start, r.model_version): (round(r.ndcg, 4), r.lists)
           for r in out.itertuples()}
    assert got == {(0.0, "1"): (0.5, 2), (30.0, "1"): (round(2 / 3, 4), 3),
                   (30.0, "2"): (1.0, 1), (60.0, "2"): (1.0, 2)}
