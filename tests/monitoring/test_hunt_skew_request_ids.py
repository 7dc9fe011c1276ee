"""The skew check compares each logged request with its own recomputation, whatever its
request id: ids come from clients (``x-request-id``, the body's ``request_id``) and repeat.

Before, the served rows were joined with the recomputations on ``request_id``: a repeated id
paired every row of that id with every recomputation of it (other requests' users, times and
histories), so a clean serving was reported as skew on every feature (TrainingServingSkew is
critical), ``joined`` exceeded the rows sampled and ``unmatched`` went negative, and the join
grew with the square of the repeats.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from test_skew_check import (  # noqa: F401 - the module's fixture and helpers
    _served_logs,
    _skew_bundle,
    _skew_cli,
    served_window,
    skew,
    world,
)


def _with_request_ids(table: pa.Table, ids: list) -> pa.Table:
    i = table.column_names.index("request_id")
    return table.set_column(i, "request_id", pa.array(ids, pa.string()))


def test_repeated_client_request_ids_are_not_skew_through_the_command(world: dict,
                                                                       tmp_path) -> None:
    """Two hours of clean serving by a client that numbers its requests from 1 each hour:
    exit 0, every row joined once. The same numbering with a real time-zone bug is still
    found, with examples that name the logged request ids."""
    from marquee.store import LocalStore
    from monitoring.drift.scenarios import write_payload_logs

    pytest.importorskip("recsys.features")
    bundle, fn = _skew_bundle(world, tmp_path)
    store = LocalStore(tmp_path / "store")
    start = 1_740_787_200  # 2025-03-01T00:00:00Z
    client_ids = [f"client-{i}" for i in range(3000)]
    for hour in (0, 1):
        write_payload_logs(store, _with_request_ids(
            _served_logs(world, fn, start + hour * 3600), client_ids))

    clean = _skew_cli(tmp_path, bundle, "2025-03-01T02:00:00Z")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    summary = json.loads(clean.stdout)
    assert summary["skewed_features"] == [], summary["skewed_features"]
    assert summary["requests_sampled"] == 6000
    assert summary["joined"] == 6000 and summary["unmatched"] == 0
    assert max(f["mismatch_rate"] for f in summary["features"]) == 0.0

    day = start + 86400
    for hour in (0, 1):
        write_payload_logs(store, _with_request_ids(
            _served_logs(world, fn, day + hour * 3600, shift=-5 * 3600), client_ids))
    buggy = _skew_cli(tmp_path, bundle, "2025-03-02T02:00:00Z")
    assert buggy.returncode == 3, buggy.stdout + buggy.stderr
    summary = json.loads(buggy.stdout)
    assert set(summary["skewed_features"]) == {"hour_of_day", "day_of_week"}
    assert summary["joined"] == 6000 and summary["unmatched"] == 0
    hour_of_day = next(f for f in summary["features"] if f["name"] == "hour_of_day")
    assert hour_of_day["examples"]
    assert all(e["request_id"].startswith("client-") for e in hour_of_day["examples"])
    assert all((e["offline"] - e["served"]) % 24 == 5 for e in hour_of_day["examples"])


def test_rows_without_a_request_id_are_compared_with_their_own_recomputation(
        world: dict) -> None:
    """Missing ids (a null in a hand-made or foreign log) are not one shared key either."""
    clean = served_window(world)
    window = _with_request_ids(clean, [None] * 400 + clean.column("request_id")
                               .to_pylist()[400:])
    s = skew(world, window)
    assert s.skewed_features == [] and s.joined == 3000 and s.unmatched == 0
