"""Halves the payload sink still holds for their pair when it shuts down are counted.

The sink holds a request's CloudEvent until its response arrives (``ttl_seconds``) and counts
a half whose partner never came as dropped (``reason="unpaired"``), but only when a later
event arrives after its time limit. On SIGTERM the halves it held were lost without a count or
a log line, although the payload logger counts and names the rows it cannot write then."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from marquee.store import open_store
from serving.payload.logger import PayloadLogger
from serving.payload.service import build_sink_service
from serving.payload.sink import REQUEST_TYPE, RESPONSE_TYPE, SINK_PATH
from serving_support import bundle_dir  # noqa: F401 - a fixture


def _dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("marquee_serving_payload_log_dropped_total",
                                     {"reason": reason}) or 0.0


def test_halves_held_at_shutdown_are_counted_as_unpaired_and_named_in_the_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    logger = PayloadLogger(open_store(str(tmp_path / "store")), flush_seconds=60).start()
    before = _dropped("unpaired")
    caplog.set_level(logging.WARNING, logger="serving.payload")
    with TestClient(build_sink_service(logger, ttl_seconds=600)) as client:
        for ce_id in ("held-1", "held-2"):
            r = client.post(SINK_PATH, json={"instances": [{"user_id": 7, "k": 2}]},
                            headers={"Ce-Id": ce_id, "Ce-Type": REQUEST_TYPE})
            assert r.status_code == 202 and r.json() == {"rows": 0}, r.text
        # a complete pair is written, not counted
        client.post(SINK_PATH, json={"instances": [{"user_id": 8, "k": 1}]},
                    headers={"Ce-Id": "paired", "Ce-Type": REQUEST_TYPE})
        r = client.post(SINK_PATH, json={"predictions": [
            {"items": [3], "scores": [0.5], "model_version": "3", "request_id": "ok"}]},
            headers={"Ce-Id": "paired", "Ce-Type": RESPONSE_TYPE})
        assert r.json() == {"rows": 1}
        assert _dropped("unpaired") == before  # still within their time limit
    assert _dropped("unpaired") - before == 2
    lines = [r.getMessage() for r in caplog.records if "unpaired" in r.getMessage()]
    assert any("2 " in line and "shut" in line for line in lines), caplog.text
    assert logger.rows_written == 1


def test_a_kserve_model_servers_own_sink_counts_held_halves_at_shutdown(
        bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """The same on a model server that mounts the sink (``payload_sink_enabled``): the real
    ``marquee serve --runtime kserve`` on 127.0.0.1, stopped with SIGTERM; its log names the
    half it held (the process is gone, so its counter cannot be scraped)."""
    import httpx

    from conftest import free_port, stop_process
    from serving_support import start_server

    home, port, log = tmp_path / "home", free_port(), tmp_path / "server.log"
    proc = start_server("kserve", bundle_dir, home, port, log, payload_sink_enabled=True,
                        payload_sink_token="tok-s23q")
    try:
        r = httpx.post(f"http://127.0.0.1:{port}{SINK_PATH}",
                       json={"instances": [{"user_id": 7, "k": 2}]},
                       headers={"Authorization": "Bearer tok-s23q", "Ce-Id": "held-k",
                                "Ce-Type": REQUEST_TYPE}, timeout=10)
        assert r.status_code == 202 and r.json() == {"rows": 0}, r.text
    finally:
        stop_process(proc)
    said = log.read_text(errors="replace")
    assert "1 unpaired events dropped at shutdown" in said, said[-2000:]
