"""Feedback that arrives after the routing changed (session 20, helper M).

The rollout controller reads a stage's window from the router's ``/admin/stats`` or, in
production, from Prometheus, which windows the router's counters by time alone. A list served
under an earlier routing (the previous rollout, the previous step) must not count for the
routing in force in either source: its ``candidate`` may be another model.
"""

from __future__ import annotations

import asyncio
import threading
import time

from tests.rollout.test_router_app import FakeServers, client_for, ranked, route


def _counter(c, name: str, variant: str) -> float:  # noqa: ANN001
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{") and f'variant="{variant}"' in line:
            return float(line.split()[-1])
    return 0.0


def test_late_clicks_on_the_previous_rollouts_lists_do_not_count_for_the_new_one() -> None:
    """40 lists served under rollout r1 and clicked once r2 is in force: before, Prometheus
    saw 40 clicked lists (15 baseline, 25 candidate) and 0 lists in r2's first window, and
    r2's interleaving candidate 20 wins earned by r1's candidate."""
    servers = FakeServers()
    servers.offsets["cand.test"] = 100  # disjoint lists: every item has one team
    with client_for(servers, stats_bucket_seconds=3600.0) as c:
        route(c, "ab", 50, salt="s-1", rollout="r1")
        served = [c.post("/recommend", json={"user_id": u, "k": 3}).json()
                  for u in range(1, 41)]
        route(c, "ab", 50, salt="s-2", rollout="r2")
        before = {v: _counter(c, "marquee_router_clicked_exposures_total", v)
                  for v in ("baseline", "candidate")}
        for body in served:
            r = c.post("/feedback", json={"request_id": body["request_id"],
                                          "item_id": body["items"][0], "event": "click"})
            assert r.status_code == 202
        after = {v: _counter(c, "marquee_router_clicked_exposures_total", v) for v in before}
        assert after == before, f"late clicks of r1 counted for r2: {before} -> {after}"
        variants = c.get("/admin/stats", params={"since": 0}).json()["variants"]
        assert all(v["clicks"] == 0 and v["clicked_exposures"] == 0
                   for v in variants.values()), variants
        # a list of r2 still counts
        body = c.post("/recommend", json={"user_id": 7, "k": 3}).json()
        c.post("/feedback", json={"request_id": body["request_id"],
                                  "item_id": body["items"][0], "event": "click"})
        v = body["variant"]
        assert _counter(c, "marquee_router_clicked_exposures_total", v) == after[v] + 1

        route(c, "interleave", salt="i-1", rollout="r3")
        served = [c.post("/recommend", json={"user_id": u, "k": 4}).json()
                  for u in range(1, 21)]
        route(c, "interleave", salt="i-2", rollout="r4")
        wins = _counter(c, "marquee_router_interleave_wins_total", "candidate")
        for u, body in zip(range(1, 21), served):
            item = next(i for i in body["items"] if i in ranked(u, 100, 4))
            c.post("/feedback", json={"request_id": body["request_id"], "item_id": item,
                                      "event": "click"})
        late = _counter(c, "marquee_router_interleave_wins_total", "candidate") - wins
        assert late == 0, f"r4's candidate credited with {late} wins of r3's lists"
        assert c.get("/admin/stats", params={"since": 0}).json()["interleave"][
            "candidate_wins"] == 0


def _held_recommend(c, servers: FakeServers, user_id: int) -> tuple[threading.Thread, dict]:  # noqa: ANN001
    """Start a /recommend whose candidate call waits on ``servers.hold``; return once the
    call has reached the candidate (polled)."""
    servers.hold = c.portal.call(_new_event)
    calls = servers.calls["cand.test"]
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault(
        "r", c.post("/recommend", json={"user_id": user_id, "k": 3})))
    t.start()
    deadline = time.monotonic() + 10
    while servers.calls["cand.test"] == calls:
        assert time.monotonic() < deadline, "the held request never reached the candidate"
        time.sleep(0.005)
    return t, out


async def _new_event() -> asyncio.Event:
    return asyncio.Event()


def test_a_request_in_flight_when_the_routing_changes_counts_for_the_routing_it_was_served_under(
) -> None:
    """A request assigned under rollout r1 whose model server answers after r2 is in force
    (up to the upstream timeout later): before, its error, latency and list counted in r2's
    window, as r2's candidate's, for a user r2 never counted."""
    servers = FakeServers()
    with client_for(servers, stats_bucket_seconds=3600.0) as c:
        r1 = {"strategy": "canary", "baseline": {"version": "1"},
              "candidate": {"version": "2"}, "candidate_weight": 100, "rollout": "r1"}
        assert c.put("/admin/routing", json=r1).status_code == 200
        held = [_held_recommend(c, servers, 5)]
        route(c, "canary", 100, rollout="r2")
        servers.fail = {"cand.test"}  # the old candidate fails the request it holds
        c.portal.call(servers.hold.set)
        held[0][0].join()
        assert held[0][1]["r"].status_code == 502
        servers.fail = set()
        held.append(_held_recommend(c, servers, 6))
        route(c, "canary", 100, rollout="r3")
        exposures = _counter(c, "marquee_router_exposures_total", "candidate")
        c.portal.call(servers.hold.set)
        held[1][0].join()
        assert held[1][1]["r"].status_code == 200
        # as its clicks will not, its list does not count for r3 in Prometheus either
        assert _counter(c, "marquee_router_exposures_total", "candidate") == exposures
        variants = c.get("/admin/stats", params={"since": 0}).json()["variants"]
        assert variants == {}, f"r3's window holds requests served under r1/r2: {variants}"
        # the same routing again is the same epoch: r1's window holds its failed request
        assert c.put("/admin/routing", json=r1).status_code == 200
        cand = c.get("/admin/stats", params={"since": 0}).json()["variants"]["candidate"]
        assert (cand["requests"], cand["errors"], cand["users"]) == (1, 1, 1), cand


def test_feedback_after_the_time_to_live_is_refused_on_an_idle_router_too() -> None:
    """Lists were dropped past ``requestStateTtlSeconds`` only when a later list was
    remembered: on a quiet router a click hours later was still a 202 and counted."""
    servers = FakeServers()
    with client_for(servers, request_state_ttl_seconds=0.5) as c:
        body = c.post("/recommend", json={"user_id": 1, "k": 3}).json()
        click = {"request_id": body["request_id"], "item_id": body["items"][0],
                 "event": "click"}
        time.sleep(0.8)  # past the time to live, with no request in between
        r = c.post("/feedback", json=click)
        assert r.status_code == 404 and r.json()["field"] == "request_id", r.text
