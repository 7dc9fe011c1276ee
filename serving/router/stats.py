"""What the router saw, per variant, in time buckets: the source of ``GET /admin/stats``.

The rollout controller asks for a window (``since`` → now) and gets counts, error rates,
latency percentiles, exposures and clicks per variant, shadow agreement and interleaving
wins — the same numbers Prometheus would give with ``increase(...[window])``. Buckets are
``bucket_seconds`` wide and kept for ``retention_seconds``. Latencies go into log-spaced bins
(5% wide), so a window's p99 is exact to within 5%.

Each bucket also belongs to the routing epoch in force when it was written (``epoch``, set by
the router when a routing is applied), and a window for an epoch reads only that epoch's
buckets. A window's edges are rounded out to whole buckets, so without this the first window
of a new step would count the traffic of the bucket before the switch: users assigned under
the old weights, which looks like a sample-ratio mismatch. For the same reason a list's first click and its
interleaving winner count in the bucket (time and epoch) where the list was served, not where
the feedback arrives: a window never holds more clicked lists than lists. So does a shadow
mirror's result, which may come back after the controller moved on (shadow to canary, a
promotion, another rollout): it belongs to the shadow it was sent for, and the recent mirrored
lists behind shadow coverage and popularity bias are kept per epoch too.

Everything runs on the router's event loop: no locks.
"""

from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from serving.router.schema import InterleaveWindow, ShadowWindow, VariantWindow, WindowStats
from serving.stats import coverage, exposure_gini

__all__ = ["WindowedStats", "LatencyHistogram", "BucketKey"]

#: (time bucket, routing epoch) of what was recorded
BucketKey = tuple[int, str | None]

_LAT_MIN_MS = 0.01
_LAT_LOG_STEP = math.log(1.05)
_LAT_BINS = 400  # 0.01 ms · 1.05^400 ≈ 3 000 s
#: routings whose recent mirrored lists are kept: the one in force and the last other one
#: written (mirrors may still come back for it after a switch)
_SHADOW_LIST_EPOCHS = 2


def _lat_bin(ms: float) -> int:
    if ms <= _LAT_MIN_MS:
        return 0
    return min(_LAT_BINS - 1, int(math.log(ms / _LAT_MIN_MS) / _LAT_LOG_STEP) + 1)


def _bin_value(i: int) -> float:
    """Geometric middle of bin i (ms)."""
    if i == 0:
        return _LAT_MIN_MS
    return _LAT_MIN_MS * math.exp((i - 0.5) * _LAT_LOG_STEP)


class LatencyHistogram:
    __slots__ = ("bins", "count")

    def __init__(self) -> None:
        self.bins: Counter[int] = Counter()
        self.count = 0

    def add(self, ms: float) -> None:
        self.bins[_lat_bin(ms)] += 1
        self.count += 1

    def merge(self, other: LatencyHistogram) -> None:
        self.bins.update(other.bins)
        self.count += other.count

    def quantile(self, q: float) -> float | None:
        if self.count == 0:
            return None
        target = q * self.count
        seen = 0
        for i in sorted(self.bins):
            seen += self.bins[i]
            if seen >= target:
                return _bin_value(i)
        return _bin_value(max(self.bins))


@dataclass
class _Variant:
    requests: int = 0
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    exposures: int = 0
    clicked_exposures: int = 0
    impressions: int = 0
    clicks: int = 0
    watches: int = 0
    users: int = 0
    exposures_sq: int = 0
    clicked_sq: int = 0
    exposures_clicked: int = 0

    def tally(self, delta: tuple[int, int, int]) -> None:
        self.exposures_sq += delta[0]
        self.clicked_sq += delta[1]
        self.exposures_clicked += delta[2]


@dataclass
class _Shadow:
    mirrored: int = 0
    errors: int = 0
    dropped: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    baseline_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    delta_sum: float = 0.0
    delta_n: int = 0
    topk_sum: float = 0.0
    rbo_sum: float = 0.0
    agree_n: int = 0
    tau_sum: float = 0.0
    tau_n: int = 0


@dataclass
class _Bucket:
    variants: dict[str, _Variant] = field(default_factory=dict)
    shadow: _Shadow = field(default_factory=_Shadow)
    interleaved: int = 0
    wins: Counter[str] = field(default_factory=Counter)  # net changes: may be negative

    def v(self, name: str) -> _Variant:
        var = self.variants.get(name)
        if var is None:
            var = self.variants[name] = _Variant()
        return var


class WindowedStats:
    def __init__(self, *, bucket_seconds: float = 1.0, retention_seconds: float = 21_600.0,
                 shadow_window_lists: int = 2000, clock: Callable[[], float] = time.time) -> None:
        self.bucket_seconds = bucket_seconds
        self.retention_seconds = retention_seconds
        self.clock = clock
        self._buckets: dict[tuple[int, str | None], _Bucket] = {}
        self.epoch: str | None = None  # the routing in force; buckets are written under it
        self._oldest = 0
        self.shadow_window_lists = shadow_window_lists
        # per routing epoch, the recent mirrored lists of each side (baseline, candidate)
        self._shadow_lists: OrderedDict[str | None, dict[str, deque[Sequence[int]]]] = (
            OrderedDict())

    # Recording ---------------------------------------------------------------------------------
    def key(self, epoch: str | None = None) -> BucketKey:
        """The bucket what is recorded now goes to: (time bucket, routing epoch). ``epoch``:
        the routing a request was assigned under, which a model server's answer may outlive
        (default: the routing in force)."""
        return (int(self.clock() // self.bucket_seconds),
                self.epoch if epoch is None else epoch)

    def _bucket(self, key: BucketKey | None = None) -> _Bucket:
        key = key or self.key()
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket()
            self._expire(key[0])
        return b

    def _expire(self, now_key: int) -> None:
        limit = now_key - int(self.retention_seconds / self.bucket_seconds)
        if self._oldest >= limit:
            return
        for k in [k for k in self._buckets if k[0] < limit]:
            del self._buckets[k]
        self._oldest = limit

    def request(self, variant: str, latency_ms: float, error: bool,
                epoch: str | None = None) -> None:
        v = self._bucket(self.key(epoch)).v(variant)
        v.requests += 1
        v.errors += error
        if not error:
            v.latency.add(latency_ms)

    def exposure(self, variant: str, tally: tuple[int, int, int] | None = None,
                 epoch: str | None = None) -> BucketKey:
        """A list served; ``tally``: the increments of the per-user sums
        (:meth:`serving.router.seen.UserTallies.exposure`). Returns the bucket it went to:
        what happens to the list later (its first click, the interleaving winner) is
        counted there too."""
        key = self.key(epoch)
        v = self._bucket(key).v(variant)
        v.exposures += 1
        if tally is not None:
            v.tally(tally)
        return key

    def _served_in(self, at: BucketKey | None) -> _Bucket | None:
        """The bucket of a list served earlier (``at``, from :meth:`exposure`), so that a
        click counts for the time and the routing its list was served under, never more
        clicked lists than lists in a window; None once that bucket has expired."""
        return self._bucket() if at is None else self._buckets.get(at)

    def clicked_exposure(self, variant: str, tally: tuple[int, int, int] | None = None,
                         at: BucketKey | None = None) -> None:
        b = self._served_in(at)
        if b is None:
            return
        v = b.v(variant)
        v.clicked_exposures += 1
        if tally is not None:
            v.tally(tally)

    def feedback(self, variant: str, event: str, at: BucketKey | None = None) -> None:
        """A feedback event about a list served in bucket ``at`` (counted there, as its
        clicks are)."""
        b = self._served_in(at)
        if b is None:
            return
        v = b.v(variant)
        if event == "click":
            v.clicks += 1
        elif event == "watch":
            v.watches += 1
        else:
            v.impressions += 1

    def user(self, variant: str) -> None:
        self._bucket().v(variant).users += 1

    def _lists_of(self, epoch: str | None) -> dict[str, deque[Sequence[int]]]:
        """The recent mirrored lists of routing ``epoch``, made on its first mirror (which
        may come back after the next routing was applied). Past :data:`_SHADOW_LIST_EPOCHS`
        routings, the least recently written one's lists go, never those of the routing in
        force."""
        lists = self._shadow_lists.get(epoch)
        if lists is None:
            lists = self._shadow_lists[epoch] = {
                side: deque(maxlen=self.shadow_window_lists) for side in ("baseline", "candidate")}
        self._shadow_lists.move_to_end(epoch)
        if len(self._shadow_lists) > _SHADOW_LIST_EPOCHS:
            old = next(e for e in self._shadow_lists if e != self.epoch)
            del self._shadow_lists[old]
        return lists

    def shadow(self, *, ok: bool, latency_ms: float, baseline_latency_ms: float,
               topk: float | None = None, rbo: float | None = None, tau: float | None = None,
               baseline_items: Sequence[int] = (), candidate_items: Sequence[int] = (),
               at: BucketKey | None = None) -> None:
        """A mirror's result. ``at``: the bucket its request was served in (from
        :meth:`exposure`); it counts there, for that routing, whenever the candidate answered,
        and nowhere once that bucket has expired."""
        b = self._served_in(at)
        if b is None:
            return
        s = b.shadow
        s.mirrored += 1
        if not ok:
            s.errors += 1
            return
        s.latency.add(latency_ms)
        s.baseline_latency.add(baseline_latency_ms)
        s.delta_sum += latency_ms - baseline_latency_ms
        s.delta_n += 1
        if topk is not None and rbo is not None:
            s.topk_sum += topk
            s.rbo_sum += rbo
            s.agree_n += 1
        if tau is not None:
            s.tau_sum += tau
            s.tau_n += 1
        lists = self._lists_of(self.epoch if at is None else at[1])
        lists["baseline"].append(baseline_items)
        lists["candidate"].append(candidate_items)

    def shadow_dropped(self, at: BucketKey | None = None) -> None:
        """A mirror not sent (or not answered: a worker's in-flight cap), counted as
        :meth:`shadow` counts a result."""
        b = self._served_in(at)
        if b is not None:
            b.shadow.dropped += 1

    def interleaved(self, at: BucketKey | None = None) -> None:
        """An interleaved list, counted in the bucket it was served in (``at``, from
        :meth:`exposure`), as its exposure was."""
        b = self._served_in(at)
        if b is not None:
            b.interleaved += 1

    def interleave_outcome(self, old: str | None, new: str | None,
                           at: BucketKey | None = None) -> None:
        """A request's winner changed (``baseline``, ``candidate``, ``tie`` or None); ``at``:
        the bucket its list was served in."""
        b = self._served_in(at)
        if b is None:
            return
        wins = b.wins
        if old is not None:
            wins[old] -= 1
        if new is not None:
            wins[new] += 1

    # Reading ------------------------------------------------------------------------------------
    def _in_window(self, since: float, until: float, epoch: str | None = None
                   ) -> Iterable[_Bucket]:
        """Buckets that overlap [since, until): whole buckets, so the edges are rounded out
        to ``bucket_seconds``; with ``epoch``, only the ones written under that routing."""
        lo = math.floor(since / self.bucket_seconds)
        hi = math.ceil(until / self.bucket_seconds) - 1
        return [b for (k, e), b in self._buckets.items()
                if lo <= k <= hi and (epoch is None or e == epoch)]

    def window(self, since: float, until: float | None = None, epoch: str | None = None
               ) -> WindowStats:
        until = self.clock() if until is None else until
        variants: dict[str, _Variant] = {}
        sh = _Shadow()
        il = InterleaveWindow()
        wins: Counter[str] = Counter()
        for b in self._in_window(since, until, epoch):
            for name, v in b.variants.items():
                acc = variants.setdefault(name, _Variant())
                acc.requests += v.requests
                acc.errors += v.errors
                acc.latency.merge(v.latency)
                acc.exposures += v.exposures
                acc.clicked_exposures += v.clicked_exposures
                acc.impressions += v.impressions
                acc.clicks += v.clicks
                acc.watches += v.watches
                acc.users += v.users
                acc.tally((v.exposures_sq, v.clicked_sq, v.exposures_clicked))
            s = b.shadow
            sh.mirrored += s.mirrored
            sh.errors += s.errors
            sh.dropped += s.dropped
            sh.latency.merge(s.latency)
            sh.baseline_latency.merge(s.baseline_latency)
            sh.delta_sum += s.delta_sum
            sh.delta_n += s.delta_n
            sh.topk_sum += s.topk_sum
            sh.rbo_sum += s.rbo_sum
            sh.agree_n += s.agree_n
            sh.tau_sum += s.tau_sum
            sh.tau_n += s.tau_n
            il.impressions += b.interleaved
            wins.update(b.wins)
        il.baseline_wins = max(0, wins["baseline"])
        il.candidate_wins = max(0, wins["candidate"])
        il.ties = max(0, wins["tie"])
        out = {name: VariantWindow(
            requests=v.requests, errors=v.errors, latency_p50_ms=v.latency.quantile(0.5),
            latency_p99_ms=v.latency.quantile(0.99), exposures=v.exposures,
            clicked_exposures=v.clicked_exposures, impressions=v.impressions, clicks=v.clicks,
            watches=v.watches, users=v.users, exposures_sq=v.exposures_sq,
            clicked_sq=v.clicked_sq, exposures_clicked=v.exposures_clicked)
            for name, v in variants.items()}
        sides = self._shadow_lists.get(self.epoch if epoch is None else epoch, {})
        lists_b, lists_c = sides.get("baseline", ()), sides.get("candidate", ())
        shadow = ShadowWindow(
            mirrored=sh.mirrored, errors=sh.errors, dropped=sh.dropped,
            latency_p99_ms=sh.latency.quantile(0.99),
            baseline_latency_p99_ms=sh.baseline_latency.quantile(0.99),
            latency_delta_ms_mean=sh.delta_sum / sh.delta_n if sh.delta_n else None,
            topk_overlap_mean=sh.topk_sum / sh.agree_n if sh.agree_n else None,
            rbo_mean=sh.rbo_sum / sh.agree_n if sh.agree_n else None,
            kendall_tau_mean=sh.tau_sum / sh.tau_n if sh.tau_n else None,
            coverage_baseline=coverage(lists_b) if lists_b else None,
            coverage_candidate=coverage(lists_c) if lists_c else None,
            gini_baseline=exposure_gini(Counter(i for x in lists_b for i in x)) if lists_b else None,
            gini_candidate=exposure_gini(Counter(i for x in lists_c for i in x)) if lists_c else None,
        )
        return WindowStats(since=since, until=until, epoch=epoch, variants=out, shadow=shadow,
                           interleave=il)

    def shadow_side_summary(self) -> dict[str, tuple[float | None, float | None]]:
        """(coverage, gini) of the routing in force's recent mirrored lists per side, for the
        gauges."""
        out: dict[str, tuple[float | None, float | None]] = {}
        for side, lists in self._shadow_lists.get(self.epoch, {}).items():
            if lists:
                out[side] = (coverage(lists), exposure_gini(Counter(i for x in lists for i in x)))
        return out
