"""A shadow mirror counts for the routing its request was served under (session 22, helper L).

The router keeps its stats per routing epoch, and a list answered after a new routing was
applied counts for the routing it was assigned under. Shadow mirrors did not: their results
were recorded under the routing in force when the candidate answered. A mirror still in
flight when the controller moved on (shadow -> canary, a promotion, another rollout) counted
in the next routing's window (its mirrored count, errors, agreement, and the agreement
histograms Prometheus reads), and the shadow it belonged to lost it. Now a mirror's result
goes to the stats bucket its request was served in, and is dropped when that bucket has
expired; the agreement series in ``/metrics`` are left alone when that routing is no longer
in force.

A real ``marquee router`` on 127.0.0.1 (inline mirrors, and the shadow worker process) in
front of two stand-in model servers; the candidate holds its answers until the test releases
them, so the routing can change while the mirrors are in flight.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_until
from tests.rollout.rollout_support import start_router
from tests.stand_in_http import serving

SHADOW = {"strategy": "shadow", "baseline": {"version": "1"}, "candidate": {"version": "2"},
          "shadow_sample_rate": 1.0}
CANARY = {"strategy": "canary", "baseline": {"version": "1"}, "candidate": {"version": "2"},
          "candidate_weight": 10}
ROLLBACK = {"strategy": "single", "baseline": {"version": "1"}}


class Candidate:
    """A model server whose answers wait for :meth:`release`: lists shifted by 3 from the
    baseline's, so 7 of 10 items are shared."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.arrived = 0
        self._lock = threading.Lock()

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        with self._lock:
            self.arrived += 1
        self.released.wait(60)
        return _lists(body, offset=3)


def _lists(body: bytes, offset: int = 0) -> tuple[int, Any]:
    inst = json.loads(body)["instances"][0]
    user, k = inst["user_id"], inst["k"]
    items = [(user * 7 + offset + i) % 500 + 1 for i in range(k)]
    return 200, {"predictions": [{"items": items, "scores": [1.0 / (i + 1) for i in range(k)],
                                  "model_version": "x"}]}


@contextmanager
def _router(tmp: Path, candidate: Candidate, **settings: Any) -> Iterator[httpx.Client]:
    """``marquee router`` on 127.0.0.1: baseline 1 answers at once, candidate 2 when
    released (released on the way out too, so no handler thread is left waiting)."""
    with serving(lambda m, p, b: _lists(b)) as base, serving(candidate.answer) as cand:
        router = start_router({"1": base, "2": cand}, "1", tmp, tmp,
                              shadow_timeout_seconds=60, **settings)
        try:
            with httpx.Client(base_url=router.url, timeout=10.0, trust_env=False) as client:
                yield client
        finally:
            candidate.released.set()
            router.stop()


def _route(c: httpx.Client, routing: dict[str, Any]) -> str:
    r = c.put("/admin/routing", json=routing)
    assert r.status_code == 200, r.text
    return r.json()["epoch"]


def _recommend(c: httpx.Client, users: range) -> None:
    for u in users:
        r = c.post("/recommend", json={"user_id": u, "k": 10})
        assert r.status_code == 200 and r.json()["variant"] == "baseline", r.text


def _shadow_stats(c: httpx.Client) -> dict[str, Any]:
    """The shadow part of the window of the routing in force (everything since 0)."""
    r = c.get("/admin/stats", params={"since": 0})
    assert r.status_code == 200, r.text
    return r.json()["shadow"]


def _metric(c: httpx.Client, series: str) -> float:
    """A series' value in ``/metrics`` (``series``: the name with its labels), 0 if absent."""
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


MIRRORED_OK = 'marquee_router_shadow_requests_total{code="200"}'
TOPK_COUNT = "marquee_router_shadow_topk_overlap_ratio_count"


@pytest.mark.parametrize("mode", ["inline", "worker"])
def test_a_mirror_answered_after_the_next_step_counts_for_the_shadow(
        tmp_path: Path, mode: str) -> None:
    """Five lists served under shadow, their mirrors held by the candidate; the routing moves
    on to a canary step; then the candidate answers. Before: the canary's window held the five
    mirrors (and the shadow's, read again, none); the agreement histograms counted them."""
    candidate = Candidate()
    with _router(tmp_path, candidate, shadow_mode=mode, stats_bucket_seconds=3600) as c:
        shadow = _route(c, SHADOW)
        _recommend(c, range(1, 6))  # answered while the candidate holds every mirror
        wait_until(lambda: candidate.arrived == 5, timeout=30, what="5 mirrors in flight")
        canary = _route(c, CANARY)
        assert canary != shadow
        candidate.released.set()
        wait_until(lambda: _metric(c, MIRRORED_OK) == 5, timeout=30,
                   what="the 5 mirrors answered")

        sh = _shadow_stats(c)  # the canary step's window
        assert sh["mirrored"] == 0 and sh["errors"] == 0, sh
        assert sh["topk_overlap_mean"] is None and sh["coverage_candidate"] is None, sh
        # the agreement Prometheus reads for the routing in force: not the shadow's mirrors
        assert _metric(c, TOPK_COUNT) == 0

        assert _route(c, SHADOW) == shadow  # the shadow's routing again: its own window
        sh = _shadow_stats(c)
        assert sh["mirrored"] == 5 and sh["errors"] == 0, sh
        assert sh["topk_overlap_mean"] == pytest.approx(0.7)
        assert sh["coverage_candidate"] is not None


def test_a_mirror_whose_bucket_has_expired_is_dropped(tmp_path: Path) -> None:
    """A mirror that comes back after the stats bucket of its request expired (two-second
    retention here), the rollout rolled back meanwhile, counts nowhere, and the router goes
    on mirroring. Before: it counted for the routing in force when it came back."""
    candidate = Candidate()
    with _router(tmp_path, candidate, stats_bucket_seconds=1,
                 stats_retention_seconds=2) as c:
        shadow = _route(c, SHADOW)
        _recommend(c, range(1, 2))
        served = time.time()
        wait_until(lambda: candidate.arrived == 1, timeout=30, what="the mirror in flight")
        _route(c, ROLLBACK)
        # the served bucket is older than the retention once the clock is 3 buckets on; the
        # next bucket written (a canary list) expires it
        wait_until(lambda: time.time() >= int(served) + 3.2, timeout=10, interval=0.05,
                   what="the clock past the retention")
        _recommend(c, range(2, 3))
        candidate.released.set()
        wait_until(lambda: _metric(c, MIRRORED_OK) == 1, timeout=30, what="the mirror answered")
        assert _shadow_stats(c)["mirrored"] == 0  # not the rollback's

        assert _route(c, SHADOW) == shadow
        assert _shadow_stats(c)["mirrored"] == 0  # nor the shadow's: its bucket is gone
        _recommend(c, range(3, 4))  # a mirror served now is counted as ever
        wait_until(lambda: _shadow_stats(c)["mirrored"] == 1, timeout=30,
                   what="a new mirror counted")


COVERAGE = 'marquee_router_shadow_coverage_ratio{variant="candidate"}'


def test_the_shadow_gauges_go_when_the_routing_mirrors_nothing(tmp_path: Path) -> None:
    """Coverage and popularity bias describe the routing in force's mirrored lists. After
    shadow → canary they stayed at the shadow's last values for as long as the router ran, as
    if the canary step were still being mirrored."""
    candidate = Candidate()
    candidate.released.set()  # answers at once
    with _router(tmp_path, candidate, stats_bucket_seconds=3600) as c:
        _route(c, SHADOW)
        _recommend(c, range(1, 6))
        wait_until(lambda: _metric(c, MIRRORED_OK) == 5, timeout=30, what="5 mirrors answered")
        assert COVERAGE in c.get("/metrics").text
        _route(c, CANARY)
        assert COVERAGE not in c.get("/metrics").text
