"""The router's admin and stats contracts: a re-registered model server is used, an
interleaving's half-failures are counted once, and a model server URL the router cannot call
is refused when it starts.

The router is the real application (under uvicorn on 127.0.0.1, or Starlette's TestClient
for a restart from its routing file); its model servers are KServe V1 handlers on an httpx
transport, as in the rollout tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port
from tests.rollout.test_replay_and_sources import LiveRouter
from tests.rollout.test_router_app import FakeServers, client_for, ranked


def test_a_version_registered_again_is_called_at_its_new_url(tmp_path: Path) -> None:
    """PUT /admin/upstreams for a version the routing serves (a model server restarted on
    another port, announced again by the retrain trigger) changed GET /admin/upstreams only:
    the routing kept calling the old URL, and re-applying the same routing was a no-op that
    kept it too. Every request failed against the variant until a different routing came."""
    servers = FakeServers()
    servers.offsets["moved.test"] = 0
    with LiveRouter(servers) as r:
        before = httpx.get(f"{r.url}/admin/routing").json()
        got = httpx.put(f"{r.url}/admin/upstreams",
                        json={"version": "1", "url": "http://moved.test"})
        assert got.status_code == 200 and got.json()["1"] == "http://moved.test"
        answer = httpx.post(f"{r.url}/recommend", json={"user_id": 4, "k": 5})
        assert answer.status_code == 200 and answer.json()["items"] == ranked(4, 0, 5)
        after = httpx.get(f"{r.url}/admin/routing").json()
    assert servers.calls == {"moved.test": 1}
    assert after["baseline_url"] == "http://moved.test"
    assert after["epoch"] == before["epoch"]  # the same experiment: assignment and stats kept

    # The routing file remembers the new URL of a version registered at run time: a
    # restarted router calls it (URLs given at start-up, like version 1's here, win).
    routing_file = str(tmp_path / "routing.json")
    servers = FakeServers()
    servers.offsets.update({"first.test": 0, "moved.test": 0})
    with client_for(servers, routing_file=routing_file, exposure_log_enabled=False) as c:
        assert c.put("/admin/upstreams",
                     json={"version": "3", "url": "http://first.test"}).status_code == 200
        assert c.put("/admin/routing", json={
            "strategy": "canary", "baseline": {"version": "1"}, "candidate": {"version": "3"},
            "candidate_weight": 100}).status_code == 200
        assert c.put("/admin/upstreams",
                     json={"version": "3", "url": "http://moved.test"}).status_code == 200
    assert json.loads(Path(routing_file).read_text())["upstreams"]["3"] == "http://moved.test"
    with client_for(servers, routing_file=routing_file, exposure_log_enabled=False) as c:
        answer = c.post("/recommend", json={"user_id": 4, "k": 5})
        assert answer.status_code == 200 and answer.json()["variant"] == "candidate"
    assert servers.calls == {"moved.test": 1}


class HalfFailing(FakeServers):
    """The baseline's model server fails for even users, the candidate's for odd ones."""

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        user = json.loads(request.content)["instances"][0]["user_id"]
        failing = "base.test" if user % 2 == 0 else "cand.test"
        if request.url.host == failing:
            self.calls[request.url.host] += 1
            return httpx.Response(500, json={"error": "injected"})
        return await super().__call__(request)


def test_an_interleaving_half_failure_is_one_request_of_each_side() -> None:
    """When one side of an interleaving failed, the list of the other side was counted as a
    second request of that side in /admin/stats (with the whole wait, the failed side's
    included, as its latency): the rollout's error rate of a variant came out lower than it
    was (here a third instead of half) and the Prometheus source disagreed with the router's
    own stats."""
    servers = HalfFailing()
    with LiveRouter(servers) as r:
        put = httpx.put(f"{r.url}/admin/routing", json={
            "strategy": "interleave", "baseline": {"version": "1"},
            "candidate": {"version": "2"}, "salt": "half"})
        assert put.status_code == 200, put.text
        for user in range(1, 21):
            answer = httpx.post(f"{r.url}/recommend", json={"user_id": user, "k": 5})
            assert answer.status_code == 200
            assert answer.json()["variant"] == ("candidate" if user % 2 == 0 else "baseline")
        stats = httpx.get(f"{r.url}/admin/stats", params={"since": 0}).json()["variants"]
    for variant in ("baseline", "candidate"):
        assert stats[variant]["requests"] == 20, stats
        assert stats[variant]["errors"] == 10
        assert stats[variant]["exposures"] == 10


@pytest.mark.parametrize("flags, env, named", [
    (["--upstream", "1=http://base host:8081"], {}, "upstreams.1"),
    ([], {"MARQUEE_ROUTER_UPSTREAMS": '{"1": "ftp://127.0.0.1:8081"}'}, "upstreams.1"),
    ([], {"MARQUEE_ROUTER_UPSTREAM_URL_TEMPLATE": "predictor-v{version}"},
     "upstream_url_template"),
])
def test_a_model_server_url_the_router_cannot_call_is_refused_at_start(
        tmp_path: Path, flags: list[str], env: dict[str, str], named: str) -> None:
    """`marquee router` started with such a URL (only --upstream's prefix was checked, the
    environment's not at all) and answered every request with a 502 counted against the
    baseline. It is now the invalid setting it is, like one given through PUT /admin/*."""
    cmd = [sys.executable, "-m", "marquee.cli", "router", "--baseline", "1",
           "--port", str(free_port()), "--no-logs", *flags]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_ROUTER_")}
    environ.update(MARQUEE_HOME=str(tmp_path), **env)
    try:
        done = subprocess.run(cmd, env=environ, capture_output=True, text=True, timeout=60,
                              cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail("the router started with a URL it cannot call")
    assert done.returncode == 2, done.stderr
    assert f"error: invalid settings: {named}:" in done.stderr
    assert "Traceback" not in done.stderr
