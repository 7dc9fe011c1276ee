"""What the replay reports is what users got: a 200 that is not a recommendation is a failure,
and the time a request waited for a free slot is part of its latency.

The router is the real application under uvicorn on 127.0.0.1 (``LiveRouter``) with the
rollout tests' KServe V1 handlers as its model servers, here slowed down. The one stand-in is
``WrongService``: a server at the URL given as ``--router`` that is not a router (an ingress
login page, another product's API) and answers every POST with a 200 HTML page.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from serving.replay.engine import run_replay
from serving.replay.users import ReplayUser
from tests.conftest import free_port, wait_until
from tests.rollout.test_replay_and_sources import LiveRouter
from tests.rollout.test_router_app import FakeServers, ranked


class SlowServers(FakeServers):
    """Model servers that take 100 ms per answer."""

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.1)
        return await super().__call__(request)


class WrongService:
    """A server on 127.0.0.1 that answers 200 with an HTML page to everything."""

    def __init__(self) -> None:
        async def page(request: object) -> HTMLResponse:
            return HTMLResponse("<html><body>Sign in</body></html>")

        app = Starlette(routes=[Route("/{path:path}", page, methods=["GET", "POST"])])
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> WrongService:
        self.thread.start()
        wait_until(lambda: httpx.get(self.url).status_code == 200, timeout=30,
                   what="stand-in ready")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_a_200_that_is_not_a_recommendation_is_a_failure_with_its_reason() -> None:
    """Before, the outcome was recorded as a success as soon as the status was 200; reading
    the body then raised inside the request's task, where nobody saw it: a replay against the
    wrong URL reported 0 errors and a click-through rate of 0."""
    users = [ReplayUser(u, frozenset(ranked(u, 0, 10))) for u in range(1, 6)]
    with WrongService() as wrong:
        report = run_replay(wrong.url, users, rate=100, requests=5, k=10)
    assert report.errors == 5
    assert report.latency_ms(0.5) is None  # no successful request to take a latency from
    [(reason, count)] = report.error_reasons().items()
    assert count == 5 and reason.startswith("200 not a recommendation: <html>")
    assert report.users_with_errors() == {1, 2, 3, 4, 5}


def test_waiting_for_a_free_slot_counts_in_the_latency() -> None:
    """Ten requests scheduled 10 ms apart, one slot, 100 ms per answer: the last one starts
    about 900 ms after it was due. Before, its latency was counted from when it got the slot
    (about 100 ms, like every other), hiding the queue a slow server causes (coordinated
    omission)."""
    users = [ReplayUser(u, frozenset()) for u in range(1, 11)]
    with LiveRouter(SlowServers()) as r:
        report = run_replay(r.url, users, rate=100, requests=10, k=5, concurrency=1)
    assert report.errors == 0
    by_schedule = [o.latency_ms for o in sorted(report.outcomes, key=lambda o: o.t)]
    # each later request waited for the ones before it: 90 ms more per place in the queue
    assert by_schedule[-1] > by_schedule[0] + 500, by_schedule
    assert report.latency_ms(0.99) > 700, by_schedule
