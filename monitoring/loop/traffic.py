"""Traffic for the loop: held-out events replayed as requests, and the drift injector.

Normal traffic replays the held-out *events* of the training run's test split: one request per
event, by that user, at that event's time (``context.ts``, so hour and weekday are the
event's), users therefore as often as they are active — the population the training
reference describes. Each user clicks the recommended items that are among their held-out
items (what they really went on to watch), so click-through per model version is real.

The drift injector replays the same way but only the events of users in one segment
(``{"occupation": ["student"]}``, ``{"age_bucket": ["<18", "18-24"]}``, …): a shifted
population, as when a campaign brings in one demographic, which moves the demographics and
the tastes (genre shares) the drift job watches.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from recsys.data.parquet import read_parquet
from serving.replay.engine import open_loop

__all__ = ["Event", "Population", "TrafficReport", "replay_events", "run_replay_events",
           "Replayer"]


@dataclass(frozen=True, slots=True)
class Event:
    user_id: int
    ts: float
    future: frozenset[int]


@dataclass
class TrafficReport:
    requests: int = 0
    errors: int = 0
    clicked: int = 0
    clicks: int = 0
    seconds: float = 0.0
    by_version: Counter[str] = field(default_factory=Counter)
    clicked_by_version: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    responses: list[tuple[int, list[int], frozenset[int], str]] = field(default_factory=list)

    def ctr_by_version(self) -> dict[str, float]:
        return {v: self.clicked_by_version[v] / n for v, n in self.by_version.items() if n}

    def merge(self, other: TrafficReport) -> None:
        for name in ("requests", "errors", "clicked", "clicks", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_version.update(other.by_version)
        self.clicked_by_version.update(other.clicked_by_version)
        self.latencies_ms.extend(other.latencies_ms)
        self.responses.extend(other.responses)

    def summary(self) -> dict[str, object]:
        lat = sorted(self.latencies_ms)
        return {"requests": self.requests, "errors": self.errors, "clicked_lists": self.clicked,
                "seconds": round(self.seconds, 1),
                "p50_ms": round(lat[len(lat) // 2], 1) if lat else None,
                "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 1) if lat else None,
                "ctr_by_version": {k: round(v, 4) for k, v in self.ctr_by_version().items()}}


class Population:
    """Users and their held-out events, from a training run's directory."""

    def __init__(self, users: pd.DataFrame, holdout: pd.DataFrame) -> None:
        self.users = users.reset_index(drop=True)
        self.holdout = holdout.reset_index(drop=True)
        fut = holdout.groupby("user_id")["item_id"].agg(lambda s: frozenset(int(x) for x in s))
        self._future: dict[int, frozenset[int]] = fut.to_dict()

    @classmethod
    def from_run(cls, run_dir: Path | str) -> Population:
        """``<runs>/<pipeline run>/``: the ingested users and the test split's events."""
        run = Path(run_dir)
        users = read_parquet(next(run.glob("ingest/*/users.parquet")))
        holdout = read_parquet(next(run.glob("split/test/interactions.parquet")),
                               columns=["user_id", "item_id", "timestamp"])
        return cls(users, holdout)

    def segment_users(self, where: Mapping[str, Sequence[str]]) -> set[int]:
        mask = np.ones(len(self.users), dtype=bool)
        for column, values in where.items():
            mask &= self.users[column].astype(str).isin([str(v) for v in values]).to_numpy()
        return set(int(u) for u in self.users.loc[mask, "user_id"])

    def segment_problem(self, where: Mapping[str, Sequence[str]]) -> str | None:
        """Why ``where`` picks no held-out events (a column the users lack, or values no user
        with held-out events has), naming the values that are there; None when it picks some."""
        for column in where:
            if column not in self.users.columns or column == "user_id":
                return (f"segment column {column!r} is not a user column (one of "
                        f"{', '.join(c for c in self.users.columns if c != 'user_id')})")
        if self.share(where) > 0:
            return None
        active = self.users[self.users["user_id"].isin(self.holdout["user_id"].unique())]
        present = "; ".join(
            f"{column}: " + ", ".join(sorted(active[column].astype(str).unique())[:20])
            for column in where)
        wanted = ", ".join(f"{k} in {list(v)}" for k, v in where.items())
        return f"no held-out events of users with {wanted} (values present: {present})"

    def events(self, where: Mapping[str, Sequence[str]] | None = None,
               seed: int = 0) -> list[Event]:
        """Held-out events (of the segment ``where``, else everyone's), shuffled."""
        h = self.holdout
        if where:
            h = h[h["user_id"].isin(self.segment_users(where))]
        order = np.random.default_rng(seed).permutation(len(h))
        h = h.iloc[order]
        return [Event(int(u), float(t), self._future.get(int(u), frozenset()))
                for u, t in zip(h["user_id"].to_numpy(), h["timestamp"].to_numpy())]

    def share(self, where: Mapping[str, Sequence[str]]) -> float:
        """Share of held-out events that belong to the segment."""
        return float(self.holdout["user_id"].isin(self.segment_users(where)).mean())


async def replay_events(router_url: str, events: Sequence[Event], *, rate: float,
                        duration: float | None = None, requests: int | None = None,
                        k: int = 10, concurrency: int = 16, seed: int = 0,
                        stop: threading.Event | None = None, keep_lists: bool = False,
                        timeout: float = 10.0,
                        report: TrafficReport | None = None) -> TrafficReport:
    """Open-loop: ``rate`` requests per second (cycling over ``events``), clicks as feedback.

    ``report``: add to this one (read it while the replay runs) instead of a new one."""
    if not events:
        raise ValueError("no events to replay")
    rng = random.Random(seed)
    report = report if report is not None else TrafficReport()
    seconds_before = report.seconds
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=router_url, timeout=timeout, trust_env=False,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(ev: Event) -> None:
            t0 = time.perf_counter()
            try:
                r = await client.post("/recommend", json={
                    "user_id": ev.user_id, "k": k, "context": {"ts": ev.ts}})
            except httpx.HTTPError:
                report.requests += 1
                report.errors += 1
                return
            report.requests += 1
            if r.status_code != 200:
                report.errors += 1
                return
            report.latencies_ms.append((time.perf_counter() - t0) * 1e3)
            body = r.json()
            version = str(body.get("model_version", ""))
            report.by_version[version] += 1
            items = [int(i) for i in body.get("items", [])]
            if keep_lists:
                report.responses.append((ev.user_id, items, ev.future, version))
            hits = [i for i in items if i in ev.future and rng.random() < 0.9]
            if hits:
                report.clicked += 1
                report.clicked_by_version[version] += 1
            for item in hits:
                try:
                    fb = await client.post("/feedback", json={
                        "request_id": body["request_id"], "item_id": item,
                        "event": "click"})
                    report.clicks += fb.status_code == 202
                except httpx.HTTPError:
                    pass

        # at most ``concurrency`` in flight: a slow router gets fewer requests, not a backlog
        await open_loop(lambda i, _t: one(events[i % len(events)]), rate=rate, start=start,
                        requests=requests, duration=duration, stop=stop,
                        concurrency=concurrency)
    report.seconds = seconds_before + time.perf_counter() - start
    return report


def run_replay_events(router_url: str, events: Sequence[Event], **kw: object) -> TrafficReport:
    """:func:`replay_events` from synchronous code."""
    return asyncio.run(replay_events(router_url, events, **kw))  # type: ignore[arg-type]


class Replayer:
    """Traffic in a background thread whose population can be switched while it runs
    (normal → drifted → normal), until :meth:`stop`."""

    def __init__(self, router_url: str, events: Sequence[Event], *, rate: float,
                 k: int = 10, seed: int = 0, keep_lists: bool = False) -> None:
        self.router_url, self.rate, self.k, self.seed = router_url, rate, k, seed
        self.keep_lists = keep_lists
        self._events = list(events)
        self._switch = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.report = TrafficReport()
        self.phases: list[tuple[str, float]] = [("normal", time.time())]
        self._thread = threading.Thread(target=self._run, name="replayer", daemon=True)

    def start(self) -> Replayer:
        self._thread.start()
        return self

    def switch(self, events: Sequence[Event], label: str) -> None:
        """Replay ``events`` from now on."""
        with self._lock:
            self._events = list(events)
            self.phases.append((label, time.time()))
        self._switch.set()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            with self._lock:
                events = self._events
            self._switch.clear()
            stop = _Either(self._stop, self._switch)
            run_replay_events(self.router_url, events, rate=self.rate, duration=3600.0,
                              k=self.k, seed=self.seed + n, stop=stop,  # type: ignore[arg-type]
                              keep_lists=self.keep_lists, report=self.report)
            n += 1

    def stop(self, timeout: float = 30.0) -> TrafficReport:
        self._stop.set()
        self._thread.join(timeout)
        return self.report


class _Either:
    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)
