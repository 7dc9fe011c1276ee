"""The memory of served lists that /feedback needs (session 20, helper M).

The router remembers ``request_state_max`` lists (200,000 by default, ``router.requestStateMax``)
within the chart's memory limit (512 MiB, of which the process itself takes ~90 MiB). The bound
is a count of lists, so what one list costs decides whether the router is OOM-killed under
steady traffic: measured through the HTTP API on interleaved lists of k=100.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import yaml

from serving.router.settings import RouterSettings
from tests.rollout.test_router_app import FakeServers, client_for, ranked, route

_VALUES = Path(__file__).resolve().parents[2] / "helm" / "marquee" / "values.yaml"
_PROCESS_BYTES = 100 * 2**20  # the router process before it remembers any list (~90 MiB)


def _memory_limit_bytes() -> int:
    limit = yaml.safe_load(_VALUES.read_text())["router"]["resources"]["limits"]["memory"]
    assert limit.endswith("Mi"), limit
    return int(limit[:-2]) * 2**20


def test_the_default_number_of_remembered_lists_of_k_100_fits_the_memory_limit() -> None:
    """Before: 7.7 KB per interleaved list of 100 items (a tuple of int objects, a dict
    item → team name, a set), 1.5 GB for the default 200,000 lists; now about 1.5 KB."""
    servers = FakeServers()
    servers.offsets["cand.test"] = 250  # disjoint lists: 100 items from each side
    n, k = 800, 100
    with client_for(servers, request_state_max=n) as c:
        route(c, "interleave")
        for u in range(1, 51):  # warm up: buckets, metric children, connection pools
            c.post("/recommend", json={"user_id": u, "k": k})
        router = c.app.state.router
        router._requests.clear()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            first = c.post("/recommend", json={"user_id": 1, "k": k}).json()
            for u in range(2, n + 1):
                c.post("/recommend", json={"user_id": u, "k": k})
            gc.collect()
            per_list = (tracemalloc.get_traced_memory()[0] - before) / n
        finally:
            tracemalloc.stop()
        assert len(router._requests) == n
        count = RouterSettings.model_fields["request_state_max"].default
        need = per_list * count
        assert need < _memory_limit_bytes() - _PROCESS_BYTES, (
            f"{per_list:.0f} bytes per remembered list of k={k}: {need / 2**20:.0f} MiB for "
            f"{count} lists")
        # what is remembered still attributes: a click on a candidate item is the candidate's
        item = next(i for i in first["items"] if i in ranked(1, 250, k))
        r = c.post("/feedback", json={"request_id": first["request_id"], "item_id": item,
                                      "event": "click"})
        assert r.status_code == 202 and r.json()["credited"] == "candidate"


def test_lists_of_large_k_are_bounded_by_the_memory_setting_not_only_by_their_count() -> None:
    """The bound was a count alone: 200,000 lists of k=500 (~5 KB each) are ~1 GB, twice the
    chart's limit, for a client that always asks for k=500. ``request_state_mib`` bounds their
    estimated size too; measured here, what is kept stays within it."""
    servers = FakeServers()
    k, mib = 500, 2
    with client_for(servers, request_state_mib=mib) as c:
        route(c, "single")
        for u in range(1, 21):  # warm up, as above
            c.post("/recommend", json={"user_id": u, "k": k})
        router = c.app.state.router
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            served = []  # (request id, first item): the answers themselves would be traced
            for u in range(1, 1001):
                body = c.post("/recommend", json={"user_id": u, "k": k}).json()
                served.append((body["request_id"], body["items"][0]))
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        kept = len(router._requests)
        assert 100 < kept < 1000, kept  # some lists dropped for memory, not for the count
        assert grown < 1.5 * mib * 2**20, f"{grown / 2**20:.1f} MiB kept for a {mib} MiB bound"
        oldest, newest = served[0], served[-1]
        for (request_id, item), status in ((oldest, 404), (newest, 202)):
            r = c.post("/feedback", json={"request_id": request_id, "item_id": item,
                                          "event": "click"})
            assert r.status_code == status, r.text
