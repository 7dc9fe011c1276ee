"""The router under traffic while its routing keeps changing (session 22, helper X).

The router keys what it records by routing epoch: a list counts in the stats bucket (time and
epoch) it was served in, and so do its feedback, its first click, its interleaving winner and
its shadow mirror's result, whenever they arrive. Those are exactly the paths where a request
in flight and a routing change can race. Here a real ``marquee router`` on 127.0.0.1 (inline
mirrors, and the shadow worker process) serves several concurrent clients (``/recommend``
with and without history, ``/feedback`` on their lists, some late, some for unknown ids)
while another client changes the routing every 50-200 ms (single, shadow, canary at several
weights, ab, interleave, with and without a ``run``, re-sending the same routing now and then)
and a third reads ``/admin/stats`` and ``/metrics``.

What must hold whatever the interleaving of events:

- every answer is a 200 (the stand-ins always answer) and well formed, its variant and model
  version one that a routing in force at some point during the request allowed;
- re-sending the routing in force is a no-op (same epoch, same ``applied_at``);
- in every window read: no negative or NaN figure; errors <= requests, clicked lists <= lists
  and <= clicks; users >= 1 where lists were served (outside interleaving, which counts none);
  interleaving wins <= interleaved lists, and interleaved lists only under interleave; shadow
  mirrors (mirrored + dropped) <= lists served under shadow, and none under another strategy;
- Prometheus counters never decrease between two scrapes (no series is retired here: three
  versions, five kept);
- once the traffic has stopped, summed over every routing's window, each list served, each
  feedback event accepted and each clicked list is counted exactly once, under the variant
  that served it; every list served under shadow got its mirror's result (or a drop) in its
  own routing's window; the request and feedback counters in ``/metrics`` match too;
- the router's log has no traceback.

Counting a list, its feedback or its mirror's result under the routing in force when it comes
back (rather than the one it was served under) fails this test within seconds.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.router.schema import RecommendResponse
from tests.conftest import wait_until
from tests.rollout.rollout_support import start_router
from tests.stand_in_http import Answer, serving

pytestmark = [pytest.mark.integration]

CHURN_SECONDS = 7.0
CLIENTS = 4
USERS = 400


def _routings() -> list[dict[str, Any]]:
    """Every routing the churn cycles through; each is PUT once before the traffic starts, so
    the test knows the epoch of each."""
    base = {"baseline": {"version": "1"}, "rollout": "churn"}
    out: list[dict[str, Any]] = []
    for run in (None, "run-a", "run-b"):
        extra = {"run": run} if run else {}
        out += [
            {**base, **extra, "strategy": "single"},
            {**base, **extra, "strategy": "shadow", "candidate": {"version": "2"},
             "shadow_sample_rate": 1.0},
            {**base, **extra, "strategy": "interleave", "candidate": {"version": "2"}},
        ]
        out += [{**base, **extra, "strategy": "canary", "candidate": {"version": "2"},
                 "candidate_weight": w} for w in (0, 10, 50, 100)]
    out += [
        {**base, "strategy": "ab", "candidate": {"version": "3"}, "candidate_weight": 50},
        {**base, "strategy": "shadow", "candidate": {"version": "3"}, "shadow_sample_rate": 1.0},
        {**base, "strategy": "interleave", "candidate": {"version": "3"}, "run": "run-a"},
    ]
    return out


def _allowed(routing: dict[str, Any]) -> set[tuple[str, str]]:
    """The (variant, model version) pairs a routing may answer with (the stand-ins never fail,
    so an interleaving never falls back to one side)."""
    b = routing["baseline"]["version"]
    c = routing.get("candidate", {}).get("version")
    s = routing["strategy"]
    if s in ("single", "shadow"):
        return {("baseline", b)}
    if s == "interleave":
        return {("interleaved", f"{b}+{c}")}
    w = routing["candidate_weight"]
    return ({("baseline", b)} if w < 100 else set()) | ({("candidate", c)} if w > 0 else set())


def _model_server(version: str, seed: int, max_delay: float) -> Answer:
    """A stand-in KServe V1 server for ``version``: k distinct items that depend on the user
    and the version, answered after a random delay up to ``max_delay`` (so that requests and
    mirrors are in flight when the routing changes)."""
    rng = random.Random(seed)
    offset = int(version) * 3

    def answer(method: str, path: str, body: bytes) -> tuple[int, Any]:
        inst = json.loads(body)["instances"][0]
        user, k = inst["user_id"], inst["k"]
        time.sleep(rng.random() * max_delay)
        items = [(user * 7 + offset + i) % 900 + 1 for i in range(k)]
        return 200, {"predictions": [{"items": items, "scores": [1.0 / (i + 1) for i in range(k)],
                                      "model_version": version}]}

    return answer


@contextmanager
def _router(tmp: Path, **settings: Any) -> Iterator[tuple[str, Path]]:
    """``marquee router`` on 127.0.0.1 in front of three stand-in model servers (versions 1,
    2, 3); yields its URL and its log file. One-hour stats buckets: a window since 0 then
    holds everything its routing ever recorded. Timeouts far above the stand-ins' delays: a
    loaded machine must not turn an answer into a 504."""
    with serving(_model_server("1", 1, 0.005)) as v1, \
            serving(_model_server("2", 2, 0.03)) as v2, \
            serving(_model_server("3", 3, 0.03)) as v3:
        router = start_router({"1": v1, "2": v2, "3": v3}, "1", tmp, tmp,
                              **{"stats_bucket_seconds": 3600, "upstream_timeout_seconds": 20,
                                 "shadow_timeout_seconds": 20, **settings})
        try:
            yield router.url, router.log
        finally:
            router.stop()


@dataclass
class Served:
    """A list the router answered, as the client saw it."""

    t0: float
    t1: float
    body: dict[str, Any]
    clicked: bool = False  # a click on one of its items was accepted


@dataclass
class Churn:
    """What the test's threads saw; every problem goes to ``problems`` (asserted at the
    end, so a thread never dies silently)."""

    url: str
    epochs: dict[str, dict[str, Any]]  # epoch -> routing
    puts: list[tuple[float, float, str]] = field(default_factory=list)  # (sent, answered, epoch)
    served: list[Served] = field(default_factory=list)
    feedback: Counter[tuple[str, str]] = field(default_factory=Counter)  # (variant, event)
    unknown: int = 0
    scrapes: int = 0
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def problem(self, text: str) -> None:
        with self.lock:
            if len(self.problems) < 50 and text not in self.problems:
                self.problems.append(text)

    def in_force_during(self, t0: float, t1: float) -> list[str]:
        """Epochs that may have been in force at some moment of [t0, t1]: routing i is in
        force from some time in its PUT's [sent, answered] until some time in the next
        PUT's."""
        with self.lock:
            puts = list(self.puts)
        out = []
        for i, (sent, _, epoch) in enumerate(puts):
            ends = puts[i + 1][1] if i + 1 < len(puts) else math.inf
            if sent <= t1 and ends >= t0:
                out.append(epoch)
        return out


# Threads -------------------------------------------------------------------------------------
def _client(ch: Churn, seed: int) -> None:
    """Lists (with and without history), feedback on them at once and late, and on ids the
    router never gave."""
    rng = random.Random(seed)
    mine: list[Served] = []
    with httpx.Client(base_url=ch.url, timeout=15.0, trust_env=False) as c:
        while not ch.stop.is_set():
            body: dict[str, Any] = {"user_id": rng.randint(1, USERS), "k": rng.randint(1, 12)}
            if rng.random() < 0.5:
                body["history"] = rng.sample(range(1, 900), rng.randint(1, 20))
            t0 = time.monotonic()
            r = c.post("/recommend", json=body)
            t1 = time.monotonic()
            if r.status_code != 200:
                ch.problem(f"/recommend {body}: {r.status_code} {r.text}")
                continue
            s = Served(t0, t1, r.json())
            if not _well_formed(ch, s, body["k"]):
                continue
            with ch.lock:
                ch.served.append(s)
            mine.append(s)
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                _feedback(ch, c, rng, s)
            if mine and rng.random() < 0.3:
                _feedback(ch, c, rng, rng.choice(mine))  # late: likely another routing now
            if rng.random() < 0.05:
                r = c.post("/feedback", json={"request_id": uuid.uuid4().hex, "item_id": 1,
                                              "event": "click"})
                if r.status_code != 404:
                    ch.problem(f"feedback on an unknown id: {r.status_code} {r.text}")
                with ch.lock:
                    ch.unknown += 1


def _well_formed(ch: Churn, s: Served, k: int) -> bool:
    b = s.body
    try:
        RecommendResponse.model_validate(b)
    except ValueError as exc:
        ch.problem(f"malformed answer {b}: {exc}")
        return False
    if len(b["items"]) != k or len(b["scores"]) != k or len(set(b["items"])) != k:
        ch.problem(f"answer for k={k} has {len(b['items'])} items / {len(b['scores'])} "
                   f"scores, or repeats: {b}")
    pair = (b["variant"], b["model_version"])
    epochs = ch.in_force_during(s.t0, s.t1)
    if not any(pair in _allowed(ch.epochs[e]) for e in epochs):
        ch.problem(f"{pair} allowed by none of the routings in force during the request: "
                   f"{[ch.epochs[e] for e in epochs]}")
    return True


def _feedback(ch: Churn, c: httpx.Client, rng: random.Random, s: Served) -> None:
    event = rng.choice(("impression", "click", "click", "watch"))
    items = s.body["items"]
    item = rng.choice(items) if rng.random() < 0.9 else 10**6  # sometimes not in the list
    r = c.post("/feedback", json={"request_id": s.body["request_id"], "item_id": item,
                                  "event": event})
    if r.status_code != 202:
        ch.problem(f"feedback on {s.body['request_id']}: {r.status_code} {r.text}")
        return
    with ch.lock:
        ch.feedback[(s.body["variant"], event)] += 1
        if event == "click" and item in items:
            s.clicked = True


def _admin(ch: Churn, seed: int) -> None:
    """A new routing every 50-200 ms; now and then the one in force again (a no-op)."""
    rng = random.Random(seed)
    routings = list(ch.epochs.values())
    last: dict[str, Any] | None = None
    with httpx.Client(base_url=ch.url, timeout=15.0, trust_env=False) as c:
        while not ch.stop.wait(rng.uniform(0.05, 0.2)):
            again = last is not None and rng.random() < 0.2
            routing = last if again else rng.choice(routings)
            before = c.get("/admin/routing").json() if again else None
            epoch = next(e for e, x in ch.epochs.items() if x is routing)
            with ch.lock:  # in the timeline before it is sent: it may apply at once
                ch.puts.append((time.monotonic(), math.inf, epoch))
                i = len(ch.puts) - 1
            r = c.put("/admin/routing", json=routing)
            with ch.lock:
                ch.puts[i] = (ch.puts[i][0], time.monotonic(), epoch)
            if r.status_code != 200:
                ch.problem(f"PUT /admin/routing {routing}: {r.status_code} {r.text}")
                continue
            state = r.json()
            if state["epoch"] != epoch:
                ch.problem(f"PUT {routing} gave epoch {state['epoch']}, not {epoch}")
            if before is not None and (before["epoch"], before["applied_at"]) != (
                    state["epoch"], state["applied_at"]):
                ch.problem(f"re-sending the routing in force changed it: {before} -> {state}")
            last = routing


def _poller(ch: Churn) -> None:
    with httpx.Client(base_url=ch.url, timeout=15.0, trust_env=False) as c:
        previous: dict[str, float] = {}
        while not ch.stop.wait(0.05):
            r = c.get("/admin/stats", params={"since": 0})
            if r.status_code != 200:
                ch.problem(f"/admin/stats: {r.status_code} {r.text}")
            else:
                window = r.json()
                routing = ch.epochs.get(window["epoch"])
                if routing is None:
                    ch.problem(f"/admin/stats of an epoch never applied: {window}")
                else:
                    for p in _window_problems(window, routing):
                        ch.problem(p)
            m = c.get("/metrics")
            if m.status_code != 200:
                ch.problem(f"/metrics: {m.status_code}")
                continue
            now = _counters(m.text)
            for series, value in previous.items():
                if series not in now:
                    ch.problem(f"{series} vanished from /metrics (was {value})")
                elif now[series] < value:
                    ch.problem(f"{series} decreased: {value} -> {now[series]}")
            previous = now
            with ch.lock:
                ch.scrapes += 1


# Invariants ------------------------------------------------------------------------------------
#: figures of a window that may be negative: a candidate faster than the baseline, a candidate
#: that ranks the shared items the other way round
_SIGNED = frozenset({"latency_delta_ms_mean", "kendall_tau_mean"})


def _bad_numbers(x: Any, path: str = "") -> list[str]:
    """Every non-finite number in a JSON document, and every negative one outside
    :data:`_SIGNED`."""
    if isinstance(x, dict):
        return [p for k, v in x.items() for p in _bad_numbers(v, f"{path}.{k}")
                if k not in _SIGNED or not math.isfinite(v)]
    if isinstance(x, list):
        return [p for i, v in enumerate(x) for p in _bad_numbers(v, f"{path}[{i}]")]
    if isinstance(x, (int, float)) and not isinstance(x, bool) and (
            not math.isfinite(x) or x < 0):
        return [f"{path} = {x}"]
    return []


def _window_problems(w: dict[str, Any], routing: dict[str, Any]) -> list[str]:
    """What must hold in any window of one routing, at any moment."""
    where = f"window of {routing['strategy']} {routing}"
    out = [f"{where}: {p}" for p in _bad_numbers(w)]
    strategy = routing["strategy"]
    variants = w["variants"]
    served_by = {v for v, _ in _allowed(routing)}
    called = served_by | ({"baseline", "candidate"} if strategy == "interleave" else set())
    if not set(variants) <= called:
        out.append(f"{where}: variants {sorted(variants)} beyond {sorted(called)}")
    for name, v in variants.items():
        checks = {
            "errors <= requests": v["errors"] <= v["requests"],
            "clicked lists <= lists": v["clicked_exposures"] <= v["exposures"],
            "clicked lists <= clicks": v["clicked_exposures"] <= v["clicks"],
            "no lists of a variant the routing does not serve":
                v["exposures"] == 0 or name in served_by,
            "users when lists were served":
                strategy == "interleave" or v["exposures"] == 0 or v["users"] >= 1,
            "p50 <= p99": v["latency_p50_ms"] is None or v["latency_p50_ms"]
                <= v["latency_p99_ms"],
        }
        if name != "interleaved":
            checks["lists <= requests"] = v["exposures"] <= v["requests"]
        out += [f"{where}: {name}: not {c}: {v}" for c, ok in checks.items() if not ok]
    il = w["interleave"]
    lists = variants.get("interleaved", {}).get("exposures", 0)
    if il["baseline_wins"] + il["candidate_wins"] + il["ties"] > il["impressions"]:
        out.append(f"{where}: more interleaving wins than interleaved lists: {il}")
    if il["impressions"] != lists:
        out.append(f"{where}: {il['impressions']} interleaved lists, {lists} exposures")
    sh = w["shadow"]
    if strategy == "shadow":
        base = variants.get("baseline", {}).get("exposures", 0)
        if sh["mirrored"] + sh["dropped"] > base or sh["errors"] > sh["mirrored"]:
            out.append(f"{where}: mirrors beyond the {base} lists served: {sh}")
    elif sh["mirrored"] or sh["dropped"] or sh["topk_overlap_mean"] is not None:
        out.append(f"{where}: shadow results under {strategy}: {sh}")
    return out


def _counters(text: str) -> dict[str, float]:
    """The counter-like series of a Prometheus text page: ``*_total``, and the ``_count`` and
    ``_bucket`` of histograms (their ``_sum`` may fall: Kendall's tau is negative at times)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, value = line.rsplit(" ", 1)
        name = series.split("{", 1)[0]
        if name.endswith(("_total", "_count", "_bucket")):
            out[series] = float(value)
    return out


def _metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
    return total


# The test --------------------------------------------------------------------------------------
def _windows_of_every_routing(c: httpx.Client, epochs: dict[str, dict[str, Any]]
                              ) -> dict[str, dict[str, Any]]:
    """Each routing's whole window (put in force again to read it: no traffic by now)."""
    out = {}
    for epoch, routing in epochs.items():
        assert c.put("/admin/routing", json=routing).json()["epoch"] == epoch
        w = c.get("/admin/stats", params={"since": 0}).json()
        assert w["epoch"] == epoch
        out[epoch] = w
    return out


def _shadow_settled(c: httpx.Client, epochs: dict[str, dict[str, Any]]) -> bool:
    """Every list served under shadow has its mirror's result or drop in its window."""
    windows = _windows_of_every_routing(
        c, {e: r for e, r in epochs.items() if r["strategy"] == "shadow"})
    return all(w["shadow"]["mirrored"] + w["shadow"]["dropped"]
               == w["variants"].get("baseline", {}).get("exposures", 0)
               for w in windows.values())


def _check_totals(ch: Churn, c: httpx.Client) -> None:
    """Summed over every routing's window, each list, feedback event and clicked list counts
    exactly once, for the variant that served it; ``/metrics`` agrees."""
    windows = _windows_of_every_routing(c, ch.epochs)
    for epoch, w in windows.items():
        problems = _window_problems(w, ch.epochs[epoch])
        assert not problems, problems
        if ch.epochs[epoch]["strategy"] != "interleave":
            for name, v in w["variants"].items():
                # each user counted goes with a list served (none failed)
                assert v["users"] <= v["exposures"], (ch.epochs[epoch], name, v)
    total: Counter[tuple[str, str]] = Counter()
    wins = 0
    for w in windows.values():
        for name, v in w["variants"].items():
            for f in ("exposures", "clicked_exposures", "impressions", "clicks", "watches",
                      "requests", "errors"):
                total[(name, f)] += v[f]
        il = w["interleave"]
        wins += il["baseline_wins"] + il["candidate_wins"] + il["ties"]
    by_variant = Counter(s.body["variant"] for s in ch.served)
    clicked = Counter(s.body["variant"] for s in ch.served if s.clicked)
    for variant in ("baseline", "candidate", "interleaved"):
        seen = {
            "exposures": by_variant[variant], "clicked_exposures": clicked[variant],
            "impressions": ch.feedback[(variant, "impression")],
            "clicks": ch.feedback[(variant, "click")],
            "watches": ch.feedback[(variant, "watch")], "errors": 0}
        if variant != "interleaved":  # each interleaved list is a call to both sides
            seen["requests"] = by_variant[variant] + by_variant["interleaved"]
        router = {f: total[(variant, f)] for f in seen}
        assert router == seen, f"{variant}: the router counted {router}, the clients saw {seen}"
    assert wins == clicked["interleaved"], (wins, clicked["interleaved"])

    text = c.get("/metrics").text
    counted: Counter[str] = Counter()  # no routing's stats bucket has expired: all of it
    for w in windows.values():
        counted.update({f: w["shadow"][f] for f in ("mirrored", "dropped")})
        counted["users"] += sum(v["users"] for v in w["variants"].values())
    assert {"mirrored": _metric_sum(text, "marquee_router_shadow_requests_total"),
            "dropped": _metric_sum(text, "marquee_router_shadow_dropped_total"),
            "users": _metric_sum(text, "marquee_router_assigned_users_total")} == counted
    assert _metric_sum(text, "marquee_router_requests_total", code="200") == len(ch.served)
    assert _metric_sum(text, "marquee_router_errors_total") == 0
    for (variant, event), n in ch.feedback.items():
        assert _metric_sum(text, "marquee_router_feedback_total", variant=variant,
                           event=event) == n, (variant, event)
    for variant in ("baseline", "candidate", "interleaved"):
        # lists served after their routing was replaced are not in the counters
        assert _metric_sum(text, "marquee_router_exposures_total",
                           variant=variant) <= by_variant[variant]


@pytest.mark.parametrize("mode", ["inline", "worker"])
def test_the_router_keeps_its_books_while_the_routing_churns(tmp_path: Path, mode: str) -> None:
    churn(tmp_path, CHURN_SECONDS, shadow_mode=mode)


def churn(tmp_path: Path, seconds: float, **settings: Any) -> None:
    """Run the churn for ``seconds`` against a router with ``settings`` and check it all."""
    with _router(tmp_path, **settings) as (url, log):
        epochs: dict[str, dict[str, Any]] = {}
        with httpx.Client(base_url=url, timeout=15.0, trust_env=False) as c:
            t = time.monotonic()
            for routing in _routings():
                r = c.put("/admin/routing", json=routing)
                assert r.status_code == 200, r.text
                epochs[r.json()["epoch"]] = routing
            assert len(epochs) == len(_routings()), "two routings share an epoch"
            ch = Churn(url, epochs, puts=[(t, time.monotonic(), r.json()["epoch"])])

            threads = [threading.Thread(target=_client, args=(ch, i)) for i in range(CLIENTS)]
            threads += [threading.Thread(target=_admin, args=(ch, 99)),
                        threading.Thread(target=_poller, args=(ch,))]
            for th in threads:
                th.start()
            try:
                deadline = time.monotonic() + seconds
                wait_until(lambda: time.monotonic() >= deadline or len(ch.problems) >= 50,
                           timeout=seconds + 30, interval=0.2, what="the churn's end")
            finally:
                ch.stop.set()
                for th in threads:
                    th.join(timeout=60)
            assert not ch.problems, "\n".join(ch.problems)
            # enough happened for the invariants to mean something
            assert len(ch.served) > 100 and len(ch.puts) > 10 and ch.scrapes > 10, (
                len(ch.served), len(ch.puts), ch.scrapes)
            assert {s.body["variant"] for s in ch.served} == {
                "baseline", "candidate", "interleaved"}

            wait_until(lambda: _shadow_settled(c, epochs), timeout=30, interval=0.2,
                       what="every mirror's result in its shadow's window")
            _check_totals(ch, c)
    text = log.read_text()
    assert "Traceback" not in text, text[-5000:]
