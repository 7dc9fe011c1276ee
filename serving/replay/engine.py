"""The replay load generator: users at a request rate against the router, with clicks.

Open-loop: requests are due on a fixed schedule (``rate`` per second) whatever the latency, with
at most ``concurrency`` in flight, so a slow candidate does not slow the offered load down. A
request's latency counts from when it was due, so the time it waited for one of the
``concurrency`` slots is in it (no coordinated omission: a stalled server shows as the queue
of late requests it causes, not as one slow answer). The queue is the schedule itself, not a
task per late request: a target slower than the rate gets fewer requests, not a backlog that
outlives ``duration`` (wall-clock seconds) or grows without bound.
Each user's clicks are sent as ``POST /feedback`` right after the response. The report keeps
per-request outcomes (variant, status, latency, clicks, interleaving credit, what went wrong),
which the tests and benchmarks use. Clicks are drawn from a generator seeded by ``(seed, visit
number)``: the same seed gives the same clicks for the same lists, whatever order the answers
come back in.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from serving.replay.users import ClickModel, ReplayUser

__all__ = ["Outcome", "ReplayReport", "replay", "run_replay", "check_router_url"]


@dataclass(slots=True)
class Outcome:
    user_id: int
    t: float                      # seconds since the replay started
    status: int                   # HTTP status, 0 for a transport error
    latency_ms: float             # from the scheduled start (waiting for a slot included)
    variant: str | None = None
    model_version: str | None = None
    clicks: int = 0
    credited: Counter[str] = field(default_factory=Counter)  # interleaving: team → clicks
    error: str | None = None      # why the request failed: "<status> <code>: <message>"
    feedback_errors: int = 0      # clicks the router did not accept (not in ``clicks``)
    feedback_error: str | None = None  # why the last of them was refused

    @property
    def failed(self) -> bool:
        """No recommendation came back: an error status, no answer, or a 200 whose body is
        not a recommendation (e.g. a URL that is not the router's)."""
        return self.status != 200 or self.error is not None


@dataclass
class ReplayReport:
    outcomes: list[Outcome]
    seconds: float

    @property
    def requests(self) -> int:
        return len(self.outcomes)

    @property
    def errors(self) -> int:
        return sum(o.failed for o in self.outcomes)

    def latency_ms(self, q: float, ok_only: bool = True) -> float | None:
        xs = [o.latency_ms for o in self.outcomes if not (o.failed and ok_only)]
        return float(np.quantile(xs, q)) if xs else None

    def by_variant(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for o in self.outcomes:
            d = out.setdefault(o.variant or "none", {"requests": 0, "errors": 0, "clicked": 0})
            d["requests"] += 1
            d["errors"] += o.failed
            d["clicked"] += o.clicks > 0
        for d in out.values():
            ok = d["requests"] - d["errors"]
            d["ctr"] = d["clicked"] / ok if ok else 0.0
        return out

    @property
    def feedback_errors(self) -> int:
        """Clicks sent as feedback that the router refused (so not counted as clicks)."""
        return sum(o.feedback_errors for o in self.outcomes)

    def error_reasons(self, limit: int = 5) -> dict[str, int]:
        """The most common reasons of failed requests and refused feedback, with counts: one
        example message per variant and kind of failure (status and error code)."""
        counts: Counter[tuple[str | None, str]] = Counter()
        example: dict[tuple[str | None, str], str] = {}
        for o in self.outcomes:
            for text, n in ((o.error or str(o.status), int(o.failed)),
                            (f"feedback: {o.feedback_error}", o.feedback_errors)):
                if n:
                    key = (o.variant, text.split(":", 1)[0])
                    counts[key] += n
                    example.setdefault(key, text)
        return {example[key]: n for key, n in counts.most_common(limit)}

    def users_with_errors(self) -> set[int]:
        return {o.user_id for o in self.outcomes if o.failed}

    def summary(self) -> dict[str, object]:
        return {"requests": self.requests, "errors": self.errors, "seconds": round(self.seconds, 2),
                "rate": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": self.latency_ms(0.5), "p99_ms": self.latency_ms(0.99),
                "feedback_errors": self.feedback_errors, "error_reasons": self.error_reasons(),
                "variants": self.by_variant()}


def _failure(r: httpx.Response) -> tuple[str | None, str]:
    """The variant a router's error answer names, and "<status> <code>: <its message>"."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        variant = body.get("variant") if isinstance(body.get("variant"), str) else None
        code = f" {body['code']}" if isinstance(body.get("code"), str) else ""
        return variant, f"{r.status_code}{code}: {str(body.get('error') or body)[:200]}"
    return None, f"{r.status_code}: {r.text[:200]}".rstrip(": ")


def check_router_url(url: str) -> httpx.URL:
    """``url`` as the router's base URL, or a ValueError saying what is wrong with it (its
    password masked): not an ``InvalidURL`` raised by httpx, or an ``OverflowError`` from the
    socket at the first request for a port past 65535, as a traceback."""
    from marquee.errors import redact_uri

    shown = redact_uri(url)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{shown!r} is not a URL: {redact_uri(str(exc))}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{shown!r} is not an http(s)://host[:port] URL")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValueError(f"{shown!r}: port {parsed.port} is not in 1..65535")
    return parsed


_TICK = 0.05  # seconds: how long the pacer waits before it looks at ``stop`` again


async def open_loop(launch: Callable[[int, float], Awaitable[None]], *, rate: float,
                    start: float, requests: int | None = None, duration: float | None = None,
                    stop: Any = None, concurrency: int | None = None) -> None:
    """Start ``launch(i, t)`` at t = i / rate seconds after ``start`` (a perf_counter time),
    whether or not earlier ones have finished (open loop), until ``requests``, or ``duration``
    seconds have passed, or ``stop.is_set()``; then wait for those in flight.

    With ``concurrency``, a launch due while that many are in flight waits for one to end
    (it starts late, its ``t`` unchanged), so a slow target never piles up tasks. Waits are
    cut into slices of :data:`_TICK` seconds so that ``stop`` (set from a signal handler or
    another thread) is seen promptly even at a low rate.

    An exception raised by a launch ends the loop: no more are started, and it is raised
    once the others in flight have ended (not left in a task nobody awaits)."""
    tasks: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    def ended(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            failures.append(exc)

    i = 0
    while not failures and not (stop is not None and stop.is_set()):
        t = i / rate
        now = time.perf_counter() - start
        if (requests is not None and i >= requests) or \
                (duration is not None and max(t, now) >= duration):
            break
        if t > now:
            await asyncio.sleep(min(t - now, _TICK))
            continue
        if concurrency is not None and len(tasks) >= concurrency:
            await asyncio.wait(tasks, timeout=_TICK, return_when=asyncio.FIRST_COMPLETED)
            continue  # the ended ones have left ``tasks`` (``ended``)
        task = asyncio.create_task(launch(i, t))  # type: ignore[arg-type]
        tasks.add(task)
        task.add_done_callback(ended)
        i += 1
    if tasks:
        await asyncio.wait(list(tasks))
    if failures:
        raise failures[0]


async def replay(router_url: str, users: Sequence[ReplayUser], *, rate: float,
                 requests: int | None = None, duration: float | None = None, k: int = 10,
                 position_bias: float = 0.0, relevant_click: float = 1.0,
                 noise_click: float = 0.0, concurrency: int = 16, seed: int = 0,
                 timeout: float = 10.0, stop: Any = None,
                 client: httpx.AsyncClient | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None) -> ReplayReport:
    """Replay ``users`` in order (cycling) at ``rate`` requests per second.

    ``stop``: anything with ``is_set()`` (an asyncio or threading Event) that ends it early.
    ``on_outcome``: called with each request's outcome as soon as its answer (or failure) is
    in, before its clicks are sent (what a progress bar counts).
    Clicks follow :class:`~serving.replay.users.ClickModel` (``position_bias``,
    ``relevant_click``, ``noise_click``).
    """
    if not users:
        raise ValueError("no users to replay")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a finite number > 0, got {rate}")
    if requests is None and duration is None:
        requests = len(users)
    click_model = ClickModel(position_bias, relevant_click, noise_click)
    own = client is None
    client = client or httpx.AsyncClient(
        base_url=check_router_url(router_url), timeout=timeout, trust_env=False,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))
    outcomes: list[Outcome] = []
    start = time.perf_counter()

    async def one(i: int, user: ReplayUser, t: float) -> None:
        t0 = start + t  # when it was due: waiting for a slot is part of the latency
        error = None
        try:
            r = await client.post("/recommend", json={"user_id": user.user_id, "k": k})
            status = r.status_code
        except httpx.HTTPError as exc:
            status, r = 0, None
            error = f"0 {type(exc).__name__}: {exc}".rstrip(": ")  # no answer at all
        out = Outcome(user.user_id, t, status, (time.perf_counter() - t0) * 1000)
        outcomes.append(out)
        if on_outcome is not None:
            on_outcome(out)
        if status != 200 or r is None:
            if r is not None:  # the router names the variant that failed, and why
                out.variant, out.error = _failure(r)
            else:
                out.error = error
            return
        try:
            body = r.json()
            items = [int(x) for x in body["items"]]
            request_id = str(body["request_id"])
        except (ValueError, KeyError, TypeError):  # not the router's answer
            out.error = f"200 not a recommendation: {r.text[:200]}".rstrip(": ")
            return
        out.variant, out.model_version = body.get("variant"), body.get("model_version")
        # one generator per visit: clicks do not depend on the order answers arrive in
        rng = random.Random(f"{seed}:{i}")
        for item in click_model.clicks(items, user.future, rng):
            try:
                fb = await client.post("/feedback", json={
                    "request_id": request_id, "item_id": item, "event": "click"})
            except httpx.HTTPError as exc:
                out.feedback_errors += 1
                out.feedback_error = f"0 {type(exc).__name__}: {exc}".rstrip(": ")
                continue
            if fb.status_code == 202:
                out.clicks += 1
                try:  # the interleaving credit, when the answer says (an empty or
                    # non-JSON 202, e.g. from a proxy, is still an accepted click)
                    team = fb.json().get("credited")
                except (ValueError, AttributeError):
                    team = None
                if isinstance(team, str) and team:
                    out.credited[team] += 1
            else:  # a click the router did not take is not a click in the report
                out.feedback_errors += 1
                out.feedback_error = _failure(fb)[1]

    try:
        await open_loop(lambda i, t: one(i, users[i % len(users)], t), rate=rate, start=start,
                        requests=requests, duration=duration, stop=stop,
                        concurrency=concurrency)
    finally:
        if own:
            await client.aclose()
    outcomes.sort(key=lambda o: o.t)
    return ReplayReport(outcomes, time.perf_counter() - start)


def run_replay(router_url: str, users: Sequence[ReplayUser], **kw: object) -> ReplayReport:
    """:func:`replay` from synchronous code (its own event loop)."""
    return asyncio.run(replay(router_url, users, **kw))  # type: ignore[arg-type]
