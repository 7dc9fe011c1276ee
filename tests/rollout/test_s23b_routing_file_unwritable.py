"""A routing the router cannot save is still put in force whole (session 23, helper B).

``Router.apply`` set the new routing, then saved it to the routing file, then moved the stats,
the per-user sums and the variant series over to it. When the save failed (the routing file's
volume full or read-only, the path taken by a directory) the PUT answered 500 with the new
routing already serving traffic but the rest of the router still on the old one; the
controller's retry of the same routing was then a no-op (same epoch), so for the whole step
the lists served were not the routing's: no exposures in Prometheus, no per-user sums, its
users counted in the old routing's window. The routing file is a local convenience (the
controller re-applies routing), so a failed save is logged and the routing applied whole.

A real ``marquee router`` on 127.0.0.1 in front of stand-in model servers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx

from tests.rollout.rollout_support import stand_in_model, start_router
from tests.stand_in_http import serving

CANARY = {"strategy": "canary", "baseline": {"version": "1"}, "candidate": {"version": "2"},
          "candidate_weight": 50, "salt": "s23b", "rollout": "rc", "run": "run-1"}


def _exposures(c: httpx.Client) -> float:
    total = 0.0
    for line in c.get("/metrics").text.splitlines():
        if line.startswith("marquee_router_exposures_total{"):
            total += float(line.split()[-1])
    return total


def _put(c: httpx.Client) -> int | str:
    """PUT the canary: the status code, or how the connection failed."""
    try:
        return c.put("/admin/routing", json=CANARY).status_code
    except httpx.TransportError as exc:
        return f"{type(exc).__name__}: {exc}"


def test_a_routing_whose_file_cannot_be_written_is_in_force_whole(tmp_path: Path) -> None:
    routing_file = tmp_path / "routing.json"
    with serving(stand_in_model) as base, serving(stand_in_model) as cand:
        router = start_router({"1": base, "2": cand}, "1", tmp_path, tmp_path, routing_file,
                              stats_bucket_seconds=3600)
        try:
            with httpx.Client(base_url=router.url, timeout=10.0, trust_env=False) as c:
                # the file's place taken by a non-empty directory: no write can replace it
                routing_file.unlink(missing_ok=True)
                routing_file.mkdir()
                (routing_file / "keep").write_text("x")

                assert _put(c) == 200, "the routing was refused for its file"
                again = c.put("/admin/routing", json=CANARY)  # the controller's next tick
                assert again.status_code == 200, again.text
                epoch = c.get("/admin/routing").json()["epoch"]
                assert again.json()["epoch"] == epoch

                before = _exposures(c)
                served = [c.post("/recommend", json={"user_id": u, "k": 3}) for u in
                          range(1, 41)]
                assert all(r.status_code == 200 for r in served), served[0].text
                assert {r.json()["variant"] for r in served} == {"baseline", "candidate"}

                window = c.get("/admin/stats", params={"since": 0}).json()
                assert window["epoch"] == epoch
                variants = window["variants"]
                assert sum(v["exposures"] for v in variants.values()) == 40, variants
                assert sum(v["users"] for v in variants.values()) == 40, (
                    f"the canary's users were counted under the old routing: {variants}")
                assert sum(v["exposures_sq"] for v in variants.values()) == 40, (
                    f"no per-user sums for the canary's lists: {variants}")
                assert _exposures(c) - before == 40, "lists not counted in Prometheus"

                # the file writable again: the controller's next re-send saves the routing
                shutil.rmtree(routing_file)
                assert c.put("/admin/routing", json=CANARY).json()["epoch"] == epoch
                saved = json.loads(routing_file.read_text())["routing"]
                assert (saved["strategy"], saved["run"]) == ("canary", "run-1")
            assert "routing in force but not saved to" in router.log.read_text()
        finally:
            router.stop()
