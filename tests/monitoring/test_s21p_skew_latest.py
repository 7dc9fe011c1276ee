"""`marquee skew check` keeps ``latest.json`` beside its reports (session 21, helper P).

The drift check publishes ``monitoring/drift/<model>/<version>/latest.json``; the skew check
published only under a time-stamped prefix, so nothing pointed at the newest verdict. Now it
writes ``monitoring/skew/<model>/<version>/latest.json`` (the summary, with its outputs' URIs)
with the drift check's rule: a summary created after this one is never replaced.
"""

from __future__ import annotations

import json

import pytest
from test_skew_check import _served_logs, _skew_bundle, _skew_cli, world  # noqa: F401

START = 1_740_787_200  # 2025-03-01T00:00:00Z
LATEST = "monitoring/skew/movie-recommender/1/latest.json"


@pytest.fixture(scope="module")
def logged(world: dict, tmp_path_factory) -> dict:  # noqa: F811
    """Two hours served clean, then two hours served with a time-zone bug."""
    from marquee.store import LocalStore
    from monitoring.drift.scenarios import write_payload_logs

    pytest.importorskip("recsys.features")
    tmp_path = tmp_path_factory.mktemp("skew-latest")
    bundle, fn = _skew_bundle(world, tmp_path)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, _served_logs(world, fn, START))
    write_payload_logs(store, _served_logs(world, fn, START + 4 * 3600, shift=-5 * 3600))
    return {"store": store, "tmp_path": tmp_path, "bundle": bundle}


def _check(logged: dict, until: str, expect: int) -> dict:
    out = _skew_cli(logged["tmp_path"], logged["bundle"], until, "--pushgateway", "")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == expect, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_latest_json_names_the_newest_runs_report(logged: dict) -> None:
    store = logged["store"]
    first = _check(logged, "2025-03-01T02:00:00Z", 0)
    assert store.exists(LATEST)
    latest = json.loads(store.get_bytes(LATEST))
    assert latest["outputs"] == first["outputs"]
    assert latest["created"] == first["created"] and latest["skew_detected"] is False
    key = first["outputs"]["summary_json"].split("/store/", 1)[1]
    assert json.loads(store.get_bytes(key)) == latest  # the same summary, as drift writes it

    second = _check(logged, "2025-03-01T06:00:00Z", 3)  # a later check replaces it
    latest = json.loads(store.get_bytes(LATEST))
    assert latest["outputs"] == second["outputs"] != first["outputs"]
    assert latest["skew_detected"] is True and "hour_of_day" in latest["skewed_features"]


def test_an_older_check_published_last_does_not_replace_a_newer_one(logged: dict) -> None:
    """A check created after this one (another job, still running when this one started)
    published first: latest.json keeps pointing at it."""
    store = logged["store"]
    newer = _check(logged, "2025-03-01T06:00:00Z", 3)
    held = json.loads(store.get_bytes(LATEST))
    held["created"] = "2999-01-01T00:00:00Z"  # created after any check run here
    store.put_bytes(LATEST, json.dumps(held).encode())

    older = _check(logged, "2025-03-01T02:00:00Z", 0)
    latest = json.loads(store.get_bytes(LATEST))
    assert latest["outputs"] == newer["outputs"] != older["outputs"]
    assert latest["skew_detected"] is True
    key = older["outputs"]["summary_json"].split("/store/", 1)[1]
    assert store.exists(key)  # its own report is still published under its stamp
