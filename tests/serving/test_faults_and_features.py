"""Fault injection (for rollout tests) and the online history sources."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from serving_support import V1_PATH, bundle_dir, kserve_app  # noqa: F401
from starlette.testclient import TestClient

from serving.runtime.faults import FaultInjector
from serving.runtime.online import BundleHistory, history_source
from serving.settings import ServingSettings


def test_fault_settings_are_named_and_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not FaultInjector().active
    s = ServingSettings()
    assert (s.fault_error_rate, s.fault_extra_latency_ms) == (0.0, 0.0)
    monkeypatch.setenv("MARQUEE_SERVING_FAULT_ERROR_RATE", "0.25")
    monkeypatch.setenv("MARQUEE_SERVING_FAULT_EXTRA_LATENCY_MS", "40")
    s = ServingSettings()
    assert (s.fault_error_rate, s.fault_extra_latency_ms) == (0.25, 40.0)
    with pytest.raises(ValueError):
        ServingSettings(fault_error_rate=1.5)


def test_injected_errors_and_latency(bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    app, _, payload = kserve_app(bundle_dir, tmp_path / "home", fault_error_rate=1.0,
                                 fault_extra_latency_ms=30.0)
    with TestClient(app) as client:
        started = time.perf_counter()
        r = client.post(V1_PATH, json={"instances": [{"user_id": 1, "request_id": "f-1"}]})
        assert time.perf_counter() - started >= 0.03
        assert r.status_code == 500 and r.json()["code"] == "injected_fault"
        bad = client.post(V1_PATH, json={"instances": [{"user_id": -1}]})
        assert bad.status_code == 400  # validation comes before fault injection
        assert 'code="500"' in client.get("/metrics").text
    payload.close()
    rows = [r for f in (tmp_path / "home" / "store" / "payload-logs").rglob("*.parquet")
            for r in pq.read_table(f).to_pylist()]
    assert [(r["request_id"], r["status"]) for r in rows] == [("f-1", 500)]


def test_history_sources() -> None:
    assert isinstance(history_source(None), BundleHistory)
    assert BundleHistory().history(1) is None


def test_redis_outage_falls_back_to_the_bundle_table() -> None:
    pytest.importorskip("redis")  # optional dependency: not needed unless configured
    source = history_source("redis://127.0.0.1:1/0", timeout_ms=50)
    assert source.history(1) is None


@pytest.mark.parametrize("stored", [[b"12", b"abc"], [b"12", b"-3"], [b"0"],
                                    [str(2**63).encode()]])
def test_a_redis_list_that_is_not_item_ids_falls_back_to_the_bundle_table(
        stored: list[bytes], caplog: pytest.LogCaptureFixture) -> None:
    """A value in the user's Redis list that is no item id raised on the request path (a 500
    on every request of that user); it now falls back like an outage. The client is a
    stand-in: no Redis server runs here."""
    from serving.runtime.online import RedisHistory

    class Lists:  # the stand-in answers lrange from a dict of lists
        def __init__(self, lists: dict[str, list[bytes]]) -> None:
            self.lists = lists

        def lrange(self, key: str, start: int, end: int) -> list[bytes]:
            return self.lists.get(key, [])

    def source(lists: dict[str, list[bytes]]) -> RedisHistory:
        history = RedisHistory.__new__(RedisHistory)  # no redis.Redis: not installed here
        history._client, history._prefix, history._max = Lists(lists), "marquee:history:", 200
        return history

    assert source({"marquee:history:7": stored}).history(7) is None
    assert "not an item id" in caplog.text
    good = source({"marquee:history:7": [b"12", b"31"]})
    assert good.history(7) == [12, 31]
    assert good.history(8) is None
