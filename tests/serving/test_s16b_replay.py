"""Traffic replay against a real router on 127.0.0.1: reproducible clicks, what failed and why.

The router is the real application under uvicorn (``LiveRouter``); its model servers are the
KServe V1 handlers of the rollout tests (``FakeServers``), here with a random delay so that
answers come back in a different order on every run.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

import httpx
import pandas as pd
from typer.testing import CliRunner

from serving.replay.cli import app
from serving.replay.engine import run_replay
from serving.replay.users import ReplayUser
from tests.rollout.test_replay_and_sources import LiveRouter
from tests.rollout.test_router_app import FakeServers, ranked


class JitteryServers(FakeServers):
    """Model servers whose answers take 0–3 ms at random: concurrent requests finish in a
    different order on each run."""

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(random.random() * 0.003)
        return await super().__call__(request)


def _holdout(tmp_path: Path) -> Path:
    path = tmp_path / "holdout.parquet"
    pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [8, 9, 15, 22],
                  "timestamp": [1, 2, 3, 4]}).to_parquet(path)
    return path


def test_the_same_seed_gives_the_same_clicks_whatever_order_answers_arrive_in() -> None:
    """--seed promises reproducible clicks. One generator shared by concurrent requests gave
    each list the draws of whichever request happened to finish first: two replays with the
    same seed clicked different items on the same lists."""
    users = [ReplayUser(u, frozenset(ranked(u, 0, 10))) for u in range(1, 201)]
    with LiveRouter(JitteryServers()) as r:
        runs = [run_replay(r.url, users, rate=2000, requests=200, k=10, seed=7,
                           relevant_click=0.5, concurrency=16) for _ in range(2)]
    for report in runs:
        assert report.errors == 0
    clicks = [[(o.user_id, o.clicks) for o in sorted(rep.outcomes, key=lambda o: o.t)]
              for rep in runs]
    assert clicks[0] == clicks[1]
    assert 0 < sum(c for _, c in clicks[0]) < 200 * 10  # the 0.5 draws did happen


class RoundRobin(httpx.AsyncBaseTransport):
    """A load balancer without session affinity in front of router replicas: each request,
    /feedback included, goes to the next replica."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = itertools.cycle(ports)
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(port=next(self.ports))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_clicks_the_router_refuses_are_reported_not_dropped() -> None:
    """Feedback that lands on a replica that did not serve the list is a 404 (unknown
    request id). The replay dropped such clicks without a word: the report showed a lower
    click-through rate and no error at all."""
    users = [ReplayUser(u, frozenset(ranked(u, 0, 10)[:2])) for u in range(1, 21)]
    with LiveRouter(FakeServers()) as a, LiveRouter(FakeServers()) as b:
        client = httpx.AsyncClient(base_url=a.url, transport=RoundRobin([a.port, b.port]),
                                   trust_env=False)
        report = run_replay(a.url, users, rate=200, requests=20, k=10, concurrency=1,
                            client=client)
    # each user clicks its two future items: the /recommend and first click of a visit go
    # to different replicas (20 refusals), the second click to the one that served the list
    assert report.errors == 0
    assert sum(o.clicks for o in report.outcomes) == 20
    assert report.feedback_errors == 20
    summary = report.summary()
    assert summary["feedback_errors"] == 20
    [(reason, count)] = summary["error_reasons"].items()  # type: ignore[union-attr]
    assert count == 20 and reason.startswith("feedback: 404 unknown_request: request_id ")


def test_a_replay_where_every_request_fails_says_why(tmp_path: Path) -> None:
    """'all 4 requests failed' named no reason; the router's answer (here: the model server
    behind the baseline fails) is in the router's 502 body."""
    servers = FakeServers()
    servers.fail = {"base.test"}
    with LiveRouter(servers) as r:
        result = CliRunner().invoke(app, ["replay", "--holdout", str(_holdout(tmp_path)),
                                          "--router", r.url, "--rate", "50", "--requests", "4"])
    assert result.exit_code == 1, result.output
    assert "error: all 4 requests" in result.output
    assert "4x 502 upstream_failed: baseline model server answered 500" in result.output


def test_k_over_the_product_api_limit_is_a_usage_error(tmp_path: Path) -> None:
    """--k 501 was sent to the router, which refuses k > 500: every request failed (exit 1,
    no reason given). It is the option's own range, refused before any traffic."""
    servers = FakeServers()
    with LiveRouter(servers) as r:
        result = CliRunner().invoke(app, ["replay", "--holdout", str(_holdout(tmp_path)),
                                          "--router", r.url, "--requests", "2", "--k", "501"])
    assert result.exit_code == 2, result.output
    assert "--k" in result.output
    assert servers.calls == {}


def test_interactions_and_holdout_together_are_a_usage_error(tmp_path: Path) -> None:
    """With both, the held-out file was replayed and --interactions (and --test-frac) ignored
    without a word."""
    holdout = str(_holdout(tmp_path))
    servers = FakeServers()
    with LiveRouter(servers) as r:
        result = CliRunner().invoke(app, ["replay", "--holdout", holdout, "--interactions",
                                          holdout, "--router", r.url, "--requests", "2"])
    assert result.exit_code == 2, result.output
    assert "not both" in result.output
    assert servers.calls == {}
