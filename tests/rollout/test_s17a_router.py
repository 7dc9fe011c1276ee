"""Router behaviour that earlier tests left unpinned (found by hand mutation, session 17)."""

from __future__ import annotations

from collections import Counter

from serving.router.assignment import BUCKETS, assign, bucket
from tests.rollout.test_router_app import FakeServers, client_for, ranked, route


def _user_in_bucket(target: int, salt: str) -> int:
    for user in range(1, 200_000):
        if bucket(user, salt) == target:
            return user
    raise AssertionError(f"no user in bucket {target}")


def test_a_weight_of_w_percent_takes_exactly_w_times_100_buckets() -> None:
    """Weights have 0.01% resolution: weight w puts buckets [0, 100·w) on the candidate."""
    salt = "s17"
    assert BUCKETS == 10_000
    for weight, first_baseline in ((25, 2500), (0.01, 1), (50, 5000)):
        last_candidate = int(round(weight * 100)) - 1
        assert assign(_user_in_bucket(last_candidate, salt), salt, weight) == "candidate"
        assert assign(_user_in_bucket(first_baseline, salt), salt, weight) == "baseline"


def test_interleaving_leads_with_either_model_by_a_coin_flip_per_request() -> None:
    """Team draft breaks the first tie with a coin flip per request: over many requests both
    models put an item at the top (a fixed flip would give one model every first slot)."""
    servers = FakeServers()
    servers.offsets["cand.test"] = 100  # disjoint lists: every item has one team
    firsts: Counter[str] = Counter()
    with client_for(servers) as c:
        route(c, "interleave")
        for u in range(1, 81):
            body = c.post("/recommend", json={"user_id": u, "k": 4}).json()
            assert body["variant"] == "interleaved"
            top = body["items"][0]
            firsts["candidate" if top in ranked(u, 100, 4) else "baseline"] += 1
    assert firsts["candidate"] > 10 and firsts["baseline"] > 10, firsts


def test_an_interleaved_list_with_one_click_per_team_is_a_tie_not_a_win() -> None:
    servers = FakeServers()
    servers.offsets["cand.test"] = 100  # disjoint lists: every item has one team
    with client_for(servers) as c:
        route(c, "interleave")
        for u in range(1, 11):
            body = c.post("/recommend", json={"user_id": u, "k": 4}).json()
            base_item = next(i for i in body["items"] if i in ranked(u, 0, 4))
            cand_item = next(i for i in body["items"] if i in ranked(u, 100, 4))
            for item in (base_item, cand_item):
                r = c.post("/feedback", json={"request_id": body["request_id"],
                                              "item_id": item, "event": "click"})
                assert r.status_code == 202
        il = c.get("/admin/stats", params={"since": 0}).json()["interleave"]
    assert (il["ties"], il["baseline_wins"], il["candidate_wins"]) == (10, 0, 0), il


def test_a_late_click_on_an_earlier_routings_list_leaves_the_new_per_user_sums_alone() -> None:
    """The A/B variance sums restart with each routing: one list and one click per user
    under the new routing give Σc² = Σn·c = clicked lists, whatever came late from the old."""
    with client_for(FakeServers(), stats_bucket_seconds=3600.0) as c:
        route(c, "ab", 50, salt="ab-1")
        old = [c.post("/recommend", json={"user_id": u, "k": 3}).json() for u in range(1, 41)]
        route(c, "ab", 50, salt="ab-2")
        new = [c.post("/recommend", json={"user_id": u, "k": 3}).json() for u in range(1, 41)]
        for o, n in zip(old, new):
            for body in (o, n):  # the old list's click arrives first, then the new one's
                r = c.post("/feedback", json={"request_id": body["request_id"],
                                              "item_id": body["items"][0], "event": "click"})
                assert r.status_code == 202
        variants = c.get("/admin/stats", params={"since": 0}).json()["variants"]
    clicked = sum(v["clicked_exposures"] for v in variants.values())
    assert clicked == 40
    assert sum(v["clicked_sq"] for v in variants.values()) == 40, variants
    assert sum(v["exposures_clicked"] for v in variants.values()) == 40, variants


def test_a_new_routing_counts_its_users_afresh_for_the_sample_ratio_check() -> None:
    """Users are counted once per routing (the SRM's units): after a routing change the
    same users, served again, are the new experiment's users."""
    with client_for(FakeServers(), stats_bucket_seconds=3600.0) as c:
        route(c, "ab", 50, salt="ab-1")
        for u in range(1, 41):
            c.post("/recommend", json={"user_id": u, "k": 3})
        route(c, "ab", 50, salt="ab-2")
        for u in range(1, 41):
            c.post("/recommend", json={"user_id": u, "k": 3})
        variants = c.get("/admin/stats", params={"since": 0}).json()["variants"]
    assert sum(v["users"] for v in variants.values()) == 40, variants
    assert sum(v["exposures"] for v in variants.values()) == 40, variants


def test_re_applying_the_same_routing_keeps_its_experiment_running() -> None:
    """The controller re-applies the routing in force between ticks: that must neither
    restart the epoch nor count the same users again."""
    with client_for(FakeServers(), stats_bucket_seconds=3600.0) as c:
        first = route(c, "ab", 50, salt="ab-1")
        for u in range(1, 21):
            c.post("/recommend", json={"user_id": u, "k": 3})
        again = route(c, "ab", 50, salt="ab-1")
        assert again["epoch"] == first["epoch"]
        assert again["applied_at"] == first["applied_at"]
        for u in range(1, 21):  # the same users come back
            c.post("/recommend", json={"user_id": u, "k": 3})
        variants = c.get("/admin/stats", params={"since": 0}).json()["variants"]
    assert sum(v["users"] for v in variants.values()) == 20, variants
    assert sum(v["exposures"] for v in variants.values()) == 40, variants
