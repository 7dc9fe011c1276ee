"""Feedback is accepted no longer than ``/admin/stats`` can count it (session 23, helper L).

``POST /feedback`` finds a list for ``request_state_ttl_seconds`` and counts the click in the
stats bucket the list was served in, which ``/admin/stats`` keeps for
``stats_retention_seconds``. With a longer TTL, a click on a list whose bucket was dropped was
answered 202, logged and counted in Prometheus (``marquee_router_feedback_total``), and
counted in no ``/admin/stats`` window. Now such a TTL given explicitly stops ``marquee
router`` at start (exit 2, one line naming both settings), and the default TTL is shortened
to the retention: the late click is a 404 naming ``request_id``, as any expired list's.

A real ``marquee router`` on 127.0.0.1 in front of a stand-in model server.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port, stop_process, wait_until
from tests.rollout.rollout_support import _env, spawn, stand_in_model, start_router
from tests.stand_in_http import serving

TOKEN = "s23l-admin-token-not-to-be-printed"


def test_a_ttl_longer_than_the_stats_retention_is_refused_at_start(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "router.log"
    cmd = [sys.executable, "-m", "marquee.cli", "router", "--port", str(port),
           "--host", "127.0.0.1", "--baseline", "1", "--routing-file", "none", "--no-logs"]
    env = _env(tmp_path, "MARQUEE_ROUTER_", upstreams=json.dumps({"1": "http://127.0.0.1:9"}),
               request_state_ttl_seconds=7200, stats_retention_seconds=3600,
               admin_token=TOKEN)
    proc = spawn(cmd, env, log)
    started = False

    def settled() -> bool:
        nonlocal started
        if proc.poll() is not None:
            return True
        started = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2.0).status_code == 200
        return started

    try:
        wait_until(settled, timeout=60, interval=0.2, what="the router exited or started")
    finally:
        stop_process(proc)
    out = log.read_text()
    assert not started, "the router started with request_state_ttl_seconds=7200 > " \
                        "stats_retention_seconds=3600"
    assert proc.returncode == 2, (proc.returncode, out)
    (line,) = out.strip().splitlines()  # one error line, no traceback
    assert line.startswith("error: invalid settings: request_state_ttl_seconds: "), line
    assert "stats_retention_seconds=3600" in line and "(got 7200.0)" in line, line
    assert "set request_state_ttl_seconds to at most 3600" in line, line
    assert TOKEN not in out


def _feedback_total(c: httpx.Client) -> float:
    return sum(float(line.split()[-1]) for line in c.get("/metrics").text.splitlines()
               if line.startswith("marquee_router_feedback_total{") and 'event="click"' in line)


def _click(c: httpx.Client, body: dict) -> httpx.Response:
    return c.post("/feedback", json={"request_id": body["request_id"],
                                     "item_id": body["items"][0], "event": "click"})


def test_a_click_after_its_lists_stats_expired_is_unknown_not_silently_uncounted(
        tmp_path: Path) -> None:
    """Two seconds of /admin/stats and the TTL left at its default (one hour before)."""
    with serving(stand_in_model) as url:
        router = start_router({"1": url}, "1", tmp_path, tmp_path, stats_bucket_seconds=1,
                              stats_retention_seconds=2)
        try:
            with httpx.Client(base_url=router.url, timeout=10.0, trust_env=False) as c:
                old = c.post("/recommend", json={"user_id": 1, "k": 3}).json()
                served = time.time()
                # 3 buckets on, the next list written expires the first list's bucket
                wait_until(lambda: time.time() >= int(served) + 3.2, timeout=10,
                           interval=0.05, what="the clock past the retention")
                new = c.post("/recommend", json={"user_id": 2, "k": 3}).json()
                clicks_before = _feedback_total(c)

                late = _click(c, old)
                variants = c.get("/admin/stats", params={"since": 0}).json()["variants"]
                counted = sum(v["clicks"] for v in variants.values())
                assert late.status_code == 404, (
                    f"a click on a list older than the stats retention was answered "
                    f"{late.status_code} {late.text}, counted in Prometheus "
                    f"{_feedback_total(c) - clicks_before:g} time(s) and in /admin/stats "
                    f"{counted} time(s)")
                assert late.json()["field"] == "request_id", late.text
                assert _feedback_total(c) == clicks_before

                fresh = _click(c, new)  # a list within the retention still counts
                assert fresh.status_code == 202, fresh.text
                variants = c.get("/admin/stats", params={"since": 0}).json()["variants"]
                assert sum(v["clicks"] for v in variants.values()) == 1, variants
        finally:
            router.stop()
