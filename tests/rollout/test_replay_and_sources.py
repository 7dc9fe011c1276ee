"""Traffic replay (users, clicks, the engine, the CLI) and the Prometheus analysis source.

The router here is the real application served by uvicorn on 127.0.0.1; its model servers
are ``httpx.MockTransport`` handlers (the real ones are in test_rollout_e2e.py). Prometheus
is the real binary when installed.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import uvicorn
from typer.testing import CliRunner

from serving.replay.engine import run_replay
from serving.replay.users import ReplayUser, clicks_for, users_from_holdout
from serving.router.app import create_app
from serving.router.settings import RouterSettings
from serving.rollout.sources import PrometheusSource, RouterAdmin, SourceError, resolve_all
from tests.conftest import free_port, require_binary, stop_process, wait_until
from tests.rollout.test_router_app import UPSTREAMS, FakeServers, ranked


def test_users_from_holdout_and_clicks() -> None:
    holdout = pd.DataFrame({"user_id": [2, 2, 1, 3], "item_id": [10, 11, 12, 13],
                            "timestamp": [50, 60, 10, 40]})
    users = users_from_holdout(holdout)
    assert [u.user_id for u in users] == [1, 3, 2]  # by first held-out event
    assert users[2].future == frozenset({10, 11})
    shuffled = users_from_holdout(holdout, order="random", seed=1)
    assert sorted(u.user_id for u in shuffled) == [1, 2, 3]
    rng = random.Random(0)
    assert clicks_for([5, 10, 7, 11], frozenset({10, 11}), rng) == [10, 11]
    # With position bias, lower positions are examined less often.
    top = sum(bool(clicks_for([10, 0, 0, 0, 0, 0, 0, 0, 0, 0], frozenset({10}), rng, 1.0))
              for _ in range(2000))
    low = sum(bool(clicks_for([0] * 9 + [10], frozenset({10}), rng, 1.0)) for _ in range(2000))
    assert top == 2000 and 120 < low < 290  # 1/10 of 2000


class LiveRouter:
    """The router app under uvicorn in a thread, on 127.0.0.1."""

    def __init__(self, servers: FakeServers, **settings: object) -> None:
        self.port = free_port()
        app = create_app(RouterSettings(upstreams=UPSTREAMS, baseline_version="1",
                                        exposure_log_enabled=False, **settings),
                         transport=httpx.MockTransport(servers))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveRouter:
        self.thread.start()
        wait_until(lambda: httpx.get(f"{self.url}/readyz").status_code == 200, timeout=30,
                   what="router ready")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_replay_engine_clicks_future_items_and_reports_per_variant() -> None:
    users = [ReplayUser(u, frozenset(ranked(u, 0, 10)[:2])) for u in range(1, 41)]
    servers = FakeServers()
    servers.offsets["cand.test"] = 100  # the candidate recommends nothing users want
    with LiveRouter(servers) as r:
        RouterAdmin(r.url).apply(__import__("serving.router.schema", fromlist=["x"]).RoutingConfig(
            strategy="interleave", baseline={"version": "1"}, candidate={"version": "2"}))
        report = run_replay(r.url, users, rate=200, requests=80, k=10, seed=1)
    assert report.requests == 80 and report.errors == 0
    assert {o.variant for o in report.outcomes} == {"interleaved"}
    # Every user clicks the baseline's top-2 items (if interleaved into the list), all
    # credited to the baseline team.
    assert all(o.credited.get("candidate", 0) == 0 for o in report.outcomes)
    assert sum(o.credited.get("baseline", 0) for o in report.outcomes) > 80
    assert report.summary()["variants"]["interleaved"]["ctr"] == 1.0
    times = [o.t for o in report.outcomes]
    assert times[-1] == pytest.approx(79 / 200)  # open loop: scheduled at the rate


def test_traffic_replay_cli(tmp_path: Path) -> None:
    from serving.replay.cli import app

    holdout = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [8, 9, 15, 22],
                            "timestamp": [1, 2, 3, 4], "rating": 4.0, "event": "rating"})
    path = tmp_path / "holdout.parquet"
    holdout.to_parquet(path)
    with LiveRouter(FakeServers()) as r:
        result = CliRunner().invoke(app, ["replay", "--holdout", str(path), "--router", r.url,
                                          "--rate", "50", "--requests", "9", "-o", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["requests"] == 9 and summary["errors"] == 0
    assert summary["variants"]["baseline"]["requests"] == 9
    # User 1's future (8, 9) is in its list (items 8..17 for offset 0), so it clicks.
    assert summary["variants"]["baseline"]["clicked"] >= 3


@pytest.fixture()
def prometheus(tmp_path: Path) -> Iterator[tuple[str, LiveRouter]]:
    binary = require_binary("prometheus")
    servers = FakeServers()
    router = LiveRouter(servers).__enter__()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: router
    static_configs: [{{targets: ["127.0.0.1:{router.port}"]}}]
""")
    proc = subprocess.Popen([binary, f"--config.file={config}",
                             f"--web.listen-address=127.0.0.1:{port}",
                             f"--storage.tsdb.path={tmp_path / 'data'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        def target_up() -> bool:
            r = httpx.get(f"{url}/api/v1/query", params={"query": "up"})
            res = r.json()["data"]["result"] if r.status_code == 200 else []
            return bool(res) and res[0]["value"][1] == "1"
        wait_until(target_up, timeout=60, interval=0.3, what="prometheus scraping the router")
        router.servers = servers  # type: ignore[attr-defined]
        yield url, router
    finally:
        stop_process(proc)
        router.__exit__()


def test_routing_is_applied_to_every_router_replica() -> None:
    """Behind a load-balanced Service one PUT reaches one replica; with ``replicas_url`` (the
    headless Service in the chart) the controller applies routing to each address."""
    from serving.router.schema import RoutingConfig

    canary = RoutingConfig(strategy="canary", baseline={"version": "1"},
                           candidate={"version": "2"}, candidate_weight=25, salt="fan-out")
    with LiveRouter(FakeServers()) as a, LiveRouter(FakeServers()) as b:
        replicas = {"router-replicas.test": [("127.0.0.1", a.port), ("127.0.0.1", b.port)]}
        admin = RouterAdmin(a.url, replicas_url="http://router-replicas.test:8090",
                            resolve=lambda host, port: replicas[host])
        admin.apply(canary)
        for r in (a, b):
            got = httpx.get(f"{r.url}/admin/routing").json()
            assert got["strategy"] == "canary" and got["candidate_weight"] == 25
        # A replica that cannot be reached is named; the others still get the routing.
        dead = free_port()
        replicas["router-replicas.test"].insert(0, ("127.0.0.1", dead))
        with pytest.raises(SourceError, match=f"127.0.0.1:{dead}"):
            admin.apply(canary.model_copy(update={"candidate_weight": 50}))
        for r in (a, b):
            assert httpx.get(f"{r.url}/admin/routing").json()["candidate_weight"] == 50
        admin.close()
    # The default resolver returns every address of the name (here the loopback's, from
    # /etc/hosts: no query leaves the machine).
    assert ("127.0.0.1", 8090) in resolve_all("localhost", 8090)


def test_prometheus_source_agrees_with_the_routers_own_stats(
        prometheus: tuple[str, LiveRouter]) -> None:
    url, router = prometheus
    from serving.router.schema import RoutingConfig

    admin = RouterAdmin(router.url)
    admin.apply(RoutingConfig(strategy="canary", baseline={"version": "1"},
                              candidate={"version": "2"}, candidate_weight=50, salt="prom"))
    router.servers.fail = {"cand.test"}  # type: ignore[attr-defined]
    # Steady traffic across the whole window: increase() assumes a constant rate inside it.
    start = time.time()
    users = [ReplayUser(u, frozenset(ranked(u, 0, 10)[:1])) for u in range(1, 2001)]
    run_replay(router.url, users, rate=100, duration=7.5, seed=2)
    since, until = float(int(start) + 2), float(int(start) + 6)  # whole 1 s stats buckets
    wait_until(lambda: time.time() > until + 2.5, timeout=10, what="two more scrapes")
    own = admin.stats(since, until)
    prom = PrometheusSource(url).window(since, until)
    # increase() extrapolates 1 s scrapes to the window's edges, and scrapes jitter on a
    # loaded machine: counts agree roughly, the ratios the analysis uses agree closely.
    for variant in ("baseline", "candidate"):
        a, b = own.variant(variant), prom.variant(variant)
        assert a.requests > 50
        assert abs(a.requests - b.requests) <= 0.4 * a.requests, (variant, a, b)
        assert abs(a.users - b.users) <= 0.4 * a.users
    share = {s: w.variant("candidate").requests / (w.variant("candidate").requests
                                                    + w.variant("baseline").requests)
             for s, w in (("own", own), ("prom", prom))}
    assert abs(share["own"] - share["prom"]) < 0.1, share
    assert prom.variant("candidate").error_rate == pytest.approx(1.0, abs=0.1)
    assert own.variant("candidate").error_rate == 1.0
    assert prom.variant("baseline").errors == 0
    assert prom.variant("baseline").clicked_exposures > 0
    # the per-user sums of the A/B variance reach the analysis through Prometheus too
    b_own, b_prom = own.variant("baseline"), prom.variant("baseline")
    assert b_own.exposures_sq >= b_own.exposures > 0 and b_prom.exposures_sq > 0
    assert b_prom.exposures_clicked > 0
    assert prom.variant("baseline").latency_p99_ms is not None
    admin.close()


def test_prometheus_error_rate_of_an_interleaving_side_counts_every_call(
        prometheus: tuple[str, LiveRouter]) -> None:
    """Under interleave, requests_total{variant=candidate} counts only the lists the candidate
    served alone (the baseline failed), while errors_total counts every failed candidate call:
    once the baseline had failed a few times, the candidate's error rate from Prometheus was
    errors / those few lists, far above 1. It is now errors / every call of that side."""
    url, router = prometheus
    from serving.router.schema import RoutingConfig

    admin = RouterAdmin(router.url)
    admin.apply(RoutingConfig(strategy="interleave", baseline={"version": "1"},
                              candidate={"version": "2"}, salt="prom-il"))
    start = time.time()
    users = [ReplayUser(u, frozenset(ranked(u, 0, 10)[:1])) for u in range(1, 2001)]
    router.servers.fail = {"cand.test"}  # type: ignore[attr-defined]
    run_replay(router.url, users, rate=100, duration=4, seed=3)
    router.servers.fail = {"base.test"}  # type: ignore[attr-defined]  # the candidate answers alone
    run_replay(router.url, users, rate=100, duration=3, seed=4)
    router.servers.fail = set()  # type: ignore[attr-defined]
    until = float(int(time.time()) + 2)  # the scrapes after the last failures are inside
    wait_until(lambda: time.time() > until + 2.5, timeout=10, what="two more scrapes")
    own = admin.stats(float(int(start)), until).variant("candidate")
    cand = PrometheusSource(url).window(float(int(start)), until).variant("candidate")
    assert own.errors > 100 and own.exposures > 50
    assert 0 < own.error_rate < 1
    # a share of the candidate's calls, as the router's own count says (increase()
    # extrapolates to the window's edges: roughly), not a multiple of its lists
    assert cand.exposures > 0 and cand.errors > 100
    assert abs(cand.error_rate - own.error_rate) < 0.15, (cand, own)
    admin.close()
