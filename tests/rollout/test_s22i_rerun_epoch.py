"""A rollout run again under its name gets a routing epoch of its own (session 22, helper I).

The router keys its stats buckets, remembered lists and per-user sums by the routing's epoch,
a hash of the routing. The controller's routing named the rollout but not the run, so a
rollout re-created with the same spec (an aborted canary started again: ``kubectl delete`` and
``apply``, or a local rollout directory removed) got its first run's epoch, even with the
abort's ``single`` routing in between: the first run's lists were in the second run's
``/admin/stats`` window, and clicks arriving late on them counted for the second run in the
Prometheus counters and per-user sums. The controller now sends the run (its start time,
from the persisted status) and the epoch includes it; re-sending one run's routing is still
a no-op.

A real ``marquee router`` on 127.0.0.1 with stand-in model servers; the controller is the
real one (file store, the router's admin API), with an in-memory registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from serving.rollout.controller import Controller
from serving.rollout.sources import RouterAdmin, RouterStatsSource
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore
from tests.rollout.rollout_support import start_router
from tests.rollout.test_rollout_controller import DictRegistry
from tests.stand_in_http import serving

CLICKED = "marquee_router_clicked_exposures_total"


def _model_server(method: str, path: str, body: bytes) -> tuple[int, Any]:
    """A KServe V1 answer: k items that depend on the user."""
    inst = json.loads(body)["instances"][0]
    user, k = inst["user_id"], inst["k"]
    items = [(user * 7 + i) % 500 + 1 for i in range(k)]
    return 200, {"predictions": [{"user_id": user, "items": items, "scores": [1.0] * k,
                                  "model_version": "x", "request_id": "x",
                                  "cold_start": False, "fallback": False}]}


@contextmanager
def _router(tmp: Path, routing_file: Path) -> Iterator[httpx.Client]:
    """``marquee router`` on 127.0.0.1 in front of two stand-in model servers (versions 1 and
    2). One-hour stats buckets: a window then reads every bucket of its epoch, so a bucket
    of another run under the same epoch shows whatever the clock."""
    with serving(_model_server) as base, serving(_model_server) as cand:
        router = start_router({"1": base, "2": cand}, "1", tmp, tmp, routing_file,
                              stats_bucket_seconds=3600)
        try:
            with httpx.Client(base_url=router.url, timeout=10.0, trust_env=False) as client:
                yield client
        finally:
            router.stop()


def _counter(c: httpx.Client, name: str, variant: str) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{") and f'variant="{variant}"' in line:
            return float(line.split()[-1])
    return 0.0


def _canary(store: FileStatusStore) -> None:
    """Create rollout ``rc``: the same spec for both runs (candidate 2 at 50%)."""
    store.create(parse_rollout({
        "apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
        "metadata": {"name": "rc"},
        "spec": {"baseline": {"alias": "production"}, "candidate": {"version": "2"},
                 "strategy": "canary", "intervalSeconds": 60, "steps": [{"weight": 50}],
                 "analysis": {"minRequests": 100000,
                              "metrics": [{"name": "errorRate", "max": 0.05}]}}}))


def _controller(store: FileStatusStore, c: httpx.Client, reg: DictRegistry) -> Controller:
    admin = RouterAdmin(str(c.base_url))
    return Controller(store, "rc", RouterStatsSource(admin), router=admin, registry=reg)


def _serve(c: httpx.Client, users: range) -> list[dict[str, Any]]:
    lists = [c.post("/recommend", json={"user_id": u, "k": 3}) for u in users]
    assert all(r.status_code == 200 for r in lists), [r.text for r in lists]
    return [r.json() for r in lists]


def test_a_rollout_run_again_with_the_same_spec_gets_its_own_epoch(tmp_path: Path) -> None:
    """Run 1 of ``rc`` serves 40 lists and is aborted (``single`` in between); ``rc`` is
    created again with the same spec. Before: run 2 had run 1's epoch, its first window
    held run 1's 40 lists and 40 users, and 40 late clicks on them raised run 2's
    clicked-lists counter by 40."""
    reg = DictRegistry(production="1")
    with _router(tmp_path, tmp_path / "routing.json") as c:
        first = FileStatusStore(tmp_path / "run1")
        _canary(first)
        assert _controller(first, c, reg).tick().phase == Phase.PROGRESSING
        run1 = c.get("/admin/routing").json()
        assert run1["strategy"] == "canary"
        served = _serve(c, range(1, 41))
        first.request("rc", "abort")
        assert _controller(first, c, reg).tick().phase == Phase.ROLLED_BACK
        assert c.get("/admin/routing").json()["strategy"] == "single"

        # the same rollout created again (kubectl delete + apply: a new object, new status)
        second = FileStatusStore(tmp_path / "run2")
        _canary(second)
        assert _controller(second, c, reg).tick().phase == Phase.PROGRESSING
        run2 = c.get("/admin/routing").json()
        assert run2["strategy"] == "canary"
        assert run2["epoch"] != run1["epoch"], "run 2 got run 1's routing epoch"
        window = c.get("/admin/stats", params={"since": 0}).json()
        assert window["epoch"] == run2["epoch"]
        assert window["variants"] == {}, f"run 1's lists in run 2's window: {window}"

        # clicks arriving late on run 1's lists do not count for run 2
        before = {v: _counter(c, CLICKED, v) for v in ("baseline", "candidate")}
        for body in served:
            r = c.post("/feedback", json={"request_id": body["request_id"],
                                          "item_id": body["items"][0], "event": "click"})
            assert r.status_code == 202, r.text
        after = {v: _counter(c, CLICKED, v) for v in before}
        assert after == before, f"run 1's late clicks counted for run 2: {before} -> {after}"
        assert c.get("/admin/stats", params={"since": 0}).json()["variants"] == {}

        # run 2's own traffic counts, and a restarted controller re-sends the same routing:
        # the same epoch, nothing reset
        mine = _serve(c, range(101, 121))
        assert _controller(second, c, reg).tick().phase == Phase.PROGRESSING
        again = c.get("/admin/routing").json()
        assert (again["epoch"], again["applied_at"]) == (run2["epoch"], run2["applied_at"])
        variants = c.get("/admin/stats", params={"since": 0}).json()["variants"]
        assert sum(v["exposures"] for v in variants.values()) == len(mine) == 20, variants


def test_a_routing_file_without_a_run_still_loads(tmp_path: Path) -> None:
    """A routing file written before routings named their run (bare, older format) is put
    in force at start-up, as it was."""
    routing_file = tmp_path / "routing.json"
    routing_file.write_text(json.dumps({
        "strategy": "canary", "baseline": {"version": "1"}, "candidate": {"version": "2"},
        "candidate_weight": 100, "salt": "old", "rollout": "old"}))
    with _router(tmp_path, routing_file) as c:
        routing = c.get("/admin/routing").json()
        assert (routing["strategy"], routing["rollout"], routing.get("run")) == (
            "canary", "old", None)
        assert {b["variant"] for b in _serve(c, range(1, 6))} == {"candidate"}
