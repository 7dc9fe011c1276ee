"""The router's behaviour, without HTTP: assignment, strategies, feedback attribution.

``Router.recommend`` picks the variant (sticky by user), calls the model server(s), returns
the list, and records the exposure; shadow mirrors go to ``serving.router.shadow`` (tasks on
this event loop, or a worker process) and can neither delay nor fail the user's request;
interleaving calls both model servers at once and merges their lists by team draft (one
that fails leaves the other's list; both failing is a 504 when both timed out, else a 502).
``Router.feedback`` credits clicks to the variant (or, for interleaved lists, to the team)
that showed the item.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import sys
import time
import uuid
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marquee.durable import write_text_atomic
from serving.router import metrics
from serving.router.assignment import assign
from serving.router.errors import (
    NotConfigured,
    UnknownRequest,
    UnknownVersion,
    UpstreamFailed,
    UpstreamTimeout,
)
from serving.router.exposure import EventLog
from serving.router.schema import (
    FeedbackRequest,
    FeedbackResponse,
    RecommendRequest,
    RoutingConfig,
    RoutingState,
    SavedRouting,
)
from serving.router.seen import SeenUsers, UserTallies
from serving.router.settings import RouterSettings
from serving.router.shadow import SHADOW_CODES, ShadowOutcome, make_mirror
from serving.router.stats import BucketKey, WindowedStats
from serving.router.upstream import Prediction, UpstreamClient
from serving.stats import team_draft

__all__ = ["Router", "RequestState"]

log = logging.getLogger("marquee.router")

_TEAM_VARIANT = {"a": "baseline", "b": "candidate"}
_TEAMS = ("baseline", "candidate")  # RequestState.teams: 0, 1


@dataclass(slots=True)
class RequestState:
    """What feedback needs of one served list. The router keeps ``request_state_max`` of
    them (200,000 by default) in a memory limit of 512 MiB, so one list costs 8 bytes an item
    and a few hundred bytes besides: a tuple of int objects, a dict of teams and a set took
    7.7 KB for an interleaved list of 100 items (1.5 GB for the default count)."""

    user_id: int
    variant: str
    model_version: str
    items: array[int]  # item ids (int64), in the order shown
    ts: float
    teams: bytes | None = None  # interleaving: per position, the team (index in _TEAMS)
    at: BucketKey | None = None  # the stats bucket the list was counted in: its clicks go there
    clicked: int = 0  # bit i set: the item at position i was clicked
    winner: str | None = None

    def position(self, item_id: int) -> int | None:
        try:
            return self.items.index(item_id)
        except ValueError:
            return None


_STATE_OVERHEAD = 640  # bytes of a RequestState besides its items: the object, its key, …


def _state_bytes(state: RequestState) -> int:
    """A remembered list's size in memory, estimated: 8 bytes an item, 1 a team, overhead."""
    return _STATE_OVERHEAD + 9 * len(state.items)


class Router:
    def __init__(self, settings: RouterSettings, upstream: UpstreamClient, *,
                 stats: WindowedStats | None = None, exposures: EventLog | None = None,
                 feedback_log: EventLog | None = None, routing_file: str | None = None,
                 inline_shadow: bool = False) -> None:
        """``routing_file``: keep the last applied routing there and start from it after a
        restart (a local convenience; in Kubernetes the controller re-applies routing).
        ``inline_shadow``: mirror on this event loop whatever ``settings.shadow_mode`` says
        (an upstream the shadow worker cannot reach, such as a test transport)."""
        self.settings = settings
        self.routing_file = routing_file
        self.upstream = upstream
        self.stats = stats or WindowedStats(
            bucket_seconds=settings.stats_bucket_seconds,
            retention_seconds=settings.stats_retention_seconds,
            shadow_window_lists=settings.shadow_window_lists)
        self.exposures = exposures
        self.feedback_log = feedback_log
        self.routing: RoutingState | None = None
        self._requests: OrderedDict[str, RequestState] = OrderedDict()
        self._state_bytes = 0  # their estimated size (_state_bytes)
        self._seen_users = SeenUsers()
        self._tallies: dict[str, UserTallies] = {}
        self._sum_metrics: dict[str, tuple[Any, ...]] = {}
        self.mirror = make_mirror(settings, upstream, self.shadow_outcome,
                                  inline=inline_shadow)
        self._ctr: dict[str, list[int]] = {}
        self._served_metrics: dict[tuple[str, str], tuple[Any, ...]] = {}
        # ``model_version`` labels of the routing in force, of earlier routings (oldest
        # first), and of the routings requests still being answered were assigned under
        # (epoch -> [requests, labels]): see :meth:`_retire_labels`.
        self._labels: frozenset[str] = frozenset()
        self._retired: OrderedDict[str, None] = OrderedDict()
        self._in_flight: dict[str, list[Any]] = {}
        self._unsaved = False  # the routing in force could not be written to routing_file
        saved = self._load_routing()
        if saved is not None:
            try:
                self.apply(saved, persist=False)
            except UnknownVersion as exc:
                log.error("ignoring the saved routing in %s: %s", routing_file, exc.message)
                saved = None
        if saved is None and settings.baseline_version:
            self.apply(RoutingConfig(baseline={"version": settings.baseline_version}),
                       persist=False)
        if settings.fault_assignment_candidate_weight is not None:
            log.warning("FAULT INJECTION: candidate weight forced to %s%% whatever is declared",
                        settings.fault_assignment_candidate_weight)

    # Routing -----------------------------------------------------------------------------------
    def _url(self, version: str, given: str | None, field_name: str) -> str:
        if given:
            return given
        url = self.settings.upstreams.get(version)
        if url:
            return url
        if self.settings.upstream_url_template:
            return self.settings.upstream_url_template.format(version=version)
        raise UnknownVersion(f"no model server URL known for version {version!r}",
                             field=field_name)

    def _load_routing(self) -> RoutingConfig | None:
        """The saved routing; the model server URLs saved with it (registered at run time
        through ``PUT /admin/upstreams``) are known again before it is applied. A file of
        the older format holds the routing alone."""
        path = self.routing_file
        if not path:
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                saved = SavedRouting.model_validate_json(fh.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("ignoring unreadable routing file %s: %s", path, exc)
            return None
        for version, url in saved.upstreams.items():
            self.settings.upstreams.setdefault(version, url)
        return saved.routing

    def _save_routing(self, config: RoutingConfig, base_url: str, cand_url: str | None) -> None:
        """Keep ``config`` in the routing file. Called once the routing is in force whole: a
        write that fails (the volume full or read-only) is logged, not raised, as the file is
        a convenience for restarts. Raised, it left a routing serving traffic with the stats
        and series still on the one before, and the controller's retry of the same routing
        was a no-op (same epoch)."""
        path = self.routing_file
        if not path:
            return
        urls = {config.baseline.version: base_url}
        if config.candidate is not None and cand_url:
            urls[config.candidate.version] = cand_url
        try:
            write_text_atomic(path, SavedRouting(routing=config,
                                                 upstreams=urls).model_dump_json())
        except OSError as exc:
            self._unsaved = True  # tried again when the same routing is sent again
            log.error("routing in force but not saved to %s (a restart would start from the "
                      "one saved before): %s", path, exc)
        else:
            self._unsaved = False

    def apply(self, config: RoutingConfig, persist: bool = True) -> RoutingState:
        """Put a routing configuration in force (idempotent for an unchanged one). Its epoch
        is a hash of the whole configuration, the rollout's ``run`` included: the controller
        re-sends one run's routing every tick (the same epoch, a no-op), while a rollout run
        again under its name with the same spec is another run, so another epoch, and the
        lists and clicks of the first run never count for it."""
        base_url = self._url(config.baseline.version, config.baseline.url, "baseline.version")
        cand_url = (self._url(config.candidate.version, config.candidate.url, "candidate.version")
                    if config.candidate else None)
        epoch = hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:12]
        if self.routing is not None and self.routing.epoch == epoch:
            if persist and self._unsaved:  # its save failed: the controller re-sent it
                self._save_routing(config, base_url, cand_url)
            if (self.routing.baseline_url, self.routing.candidate_url) != (base_url, cand_url):
                # the same experiment (same epoch, assignment and stats) at a version's new
                # model server URL, e.g. one registered again through PUT /admin/upstreams
                self.routing = self.routing.model_copy(
                    update={"baseline_url": base_url, "candidate_url": cand_url})
                if persist:
                    self._save_routing(config, base_url, cand_url)
                log.info("routing %s: baseline at %s, candidate at %s", epoch, base_url,
                         cand_url)
            return self.routing
        self.routing = RoutingState(**config.model_dump(), epoch=epoch, baseline_url=base_url,
                                    candidate_url=cand_url, applied_at=time.time())
        self._seen_users = SeenUsers()
        self._tallies = {}
        self.stats.epoch = epoch  # what is recorded from now on counts for this routing only
        self._retire_labels(config)
        metrics.VARIANT_INFO.clear()
        metrics.VARIANT_INFO.labels("baseline", config.baseline.version).set(1)
        if config.candidate is not None:
            metrics.VARIANT_INFO.labels("candidate", config.candidate.version).set(1)
            if config.strategy == "interleave":
                metrics.VARIANT_INFO.labels(
                    "interleaved", f"{config.baseline.version}+{config.candidate.version}").set(1)
        metrics.CANDIDATE_WEIGHT.clear()
        metrics.CANDIDATE_WEIGHT.labels(strategy=config.strategy).set(
            self._weight() if config.strategy in ("canary", "ab") else 0)
        log.info("routing %s: strategy=%s baseline=%s candidate=%s weight=%s salt=%s",
                 epoch, config.strategy, config.baseline.version,
                 config.candidate.version if config.candidate else None,
                 config.candidate_weight, config.salt)
        if persist:  # last: the routing is in force whole whether or not the file is written
            self._save_routing(config, base_url, cand_url)
        return self.routing

    def _retire_labels(self, config: RoutingConfig) -> None:
        """Note the ``model_version`` labels of the routing now in force, and drop the request
        and error series of versions routed before the last ``metrics_retired_versions``
        routed since: every version a router ever served (a new one per rollout) would
        otherwise be exported for as long as the process lives. A version still in the
        routing keeps its series (the rollout analysis reads them), and so does one that
        requests assigned under an earlier routing are still waiting for: they count in it
        when answered, and it goes at a later routing (after a scrape, most likely). Clicks
        arriving late count in series labelled by variant only."""
        labels = {config.baseline.version}
        if config.candidate is not None:
            labels.add(config.candidate.version)
            if config.strategy == "interleave":
                labels.add(f"{config.baseline.version}+{config.candidate.version}")
        for label in self._labels - labels:
            self._retired[label] = None
        for label in labels:
            self._retired.pop(label, None)
        self._labels = frozenset(labels)
        self._prune_labels()

    def _prune_labels(self) -> None:
        excess = len(self._retired) - self.settings.metrics_retired_versions
        if excess <= 0:
            return
        waited_for = set().union(*(labels for _, labels in self._in_flight.values()))
        for label in [x for x in self._retired if x not in waited_for][:excess]:
            del self._retired[label]
            metrics.REQUESTS.remove_by_labels({"model_version": label})
            metrics.ERRORS.remove_by_labels({"model_version": label})
            for key in [k for k in self._served_metrics if k[1] == label]:
                del self._served_metrics[key]  # the children just removed: made anew if used

    def register_upstream(self, version: str, url: str) -> None:
        """Where ``version``'s model server is (``PUT /admin/upstreams``). A version the
        routing in force serves without a URL of its own is called there from now on."""
        self.settings.upstreams[version] = url
        log.info("upstream of version %s: %s", version, url)
        r = self.routing
        if r is not None and version in (r.baseline.version,
                                         r.candidate.version if r.candidate else None):
            self.apply(RoutingConfig.model_validate(
                r.model_dump(include=set(RoutingConfig.model_fields))))

    def _tally(self, variant: str, user_id: int, clicked: bool) -> tuple[int, int, int] | None:
        """Per-user sums of an A/B variant (baseline / candidate lists only), also exported."""
        if variant not in ("baseline", "candidate"):
            return None
        tallies = self._tallies.get(variant)
        if tallies is None:
            tallies = self._tallies[variant] = UserTallies()
        delta = tallies.click(user_id) if clicked else tallies.exposure(user_id)
        counters = self._sum_metrics.get(variant)
        if counters is None:
            counters = self._sum_metrics[variant] = tuple(
                counter.labels(variant) for counter in metrics.AB_USER_SUMS)
        for counter, value in zip(counters, delta):
            if value:
                counter.inc(value)
        return delta

    def _weight(self) -> float:
        assert self.routing is not None
        forced = self.settings.fault_assignment_candidate_weight
        return forced if forced is not None else float(self.routing.candidate_weight)

    # Recommend ---------------------------------------------------------------------------------
    async def recommend(self, req: RecommendRequest,
                        after: list[Callable[[], None]] | None = None) -> dict[str, Any]:
        """Answer one request. Work that must not delay the answer (shadow mirrors) is
        appended to ``after`` for the caller to start once the response is sent; without
        ``after`` it starts at once (in the background either way)."""
        r = self.routing
        if r is None:
            raise NotConfigured("no routing configured: start the router with a baseline "
                                "version or PUT /admin/routing")
        # the routing's series stay exported until this request is counted (_prune_labels)
        held = self._in_flight.get(r.epoch)
        if held is None:
            held = self._in_flight[r.epoch] = [0, self._labels]
        held[0] += 1
        try:
            return await self._recommend(r, req, after)
        finally:
            held[0] -= 1
            if not held[0]:
                del self._in_flight[r.epoch]

    async def _recommend(self, r: RoutingState, req: RecommendRequest,
                         after: list[Callable[[], None]] | None) -> dict[str, Any]:
        start = time.perf_counter()
        request_id = uuid.uuid4().hex
        if r.strategy == "interleave":
            return await self._interleave(r, req, request_id, start)
        variant = "baseline"
        if r.strategy in ("canary", "ab"):
            variant = assign(req.user_id, r.salt, self._weight())
        if variant == "candidate":
            url, version = r.candidate_url, r.candidate.version  # type: ignore[union-attr]
        else:
            url, version = r.baseline_url, r.baseline.version
        if self._seen_users.add(req.user_id):
            self.stats.user(variant)
            metrics.ASSIGNED_USERS.labels(variant=variant).inc()
        try:
            pred = await self.upstream.predict(url, req, request_id, variant=variant,  # type: ignore[arg-type]
                                               timeout=self.settings.upstream_timeout_seconds)
        except UpstreamFailed as exc:
            elapsed = (time.perf_counter() - start) * 1000
            self.stats.request(variant, elapsed, error=True, epoch=r.epoch)
            metrics.ERRORS.labels(variant, version, exc.reason).inc()
            metrics.REQUESTS.labels(variant, version, str(exc.status_code)).inc()
            log.warning("request %s variant=%s model_version=%s failed: %s", request_id,
                        variant, version, exc.message)
            raise
        elapsed_ms = (time.perf_counter() - start) * 1000
        at = self._served(request_id, req, variant, pred.model_version or version, pred,
                          elapsed_ms, r.strategy, label=version, epoch=r.epoch)
        if r.strategy == "shadow" and r.candidate_url and random.random() < r.shadow_sample_rate:
            def mirror() -> None:
                self._mirror(r, req, request_id, pred, elapsed_ms, at)
            if after is None:
                mirror()
            else:
                after.append(mirror)
        return self._response(request_id, req.user_id, pred.items, pred.scores, variant,
                              pred.model_version or version, pred)

    def _response(self, request_id: str, user_id: int, items: list[int], scores: list[float],
                  variant: str, model_version: str, pred: Prediction | None) -> dict[str, Any]:
        return {"request_id": request_id, "user_id": user_id, "items": items, "scores": scores,
                "variant": variant, "model_version": model_version,
                "cold_start": bool(pred and pred.cold_start),
                "fallback": bool(pred and pred.fallback)}

    def client_error(self, status: int) -> None:
        """Count a request refused before any variant was chosen (a bad body: 4xx)."""
        metrics.REQUESTS.labels("none", "none", str(status)).inc()

    def _served(self, request_id: str, req: RecommendRequest, variant: str, version: str,
                pred: Prediction, elapsed_ms: float, strategy: str,
                teams: list[str] | None = None, *, label: str, epoch: str,
                upstream_ms: float | None = None) -> BucketKey:
        """Record a served list. ``version``: what the model server says it is (the bundle's
        version, logged); ``label``: the routing's version, the metrics' ``model_version``
        (the same label on errors, where no answer names a version). ``upstream_ms``: the
        list of one side of an interleaving whose other side failed; that side's call is
        already a request in the stats, and its latency is its own (not the wait for the
        failed side, which must not count against the variant that answered). ``epoch``: the
        routing the request was assigned under; when another one was applied while the model
        server answered, the list is that routing's, as its clicks will be (see
        :meth:`feedback`): not in the new routing's per-user sums nor in the counters.
        Returns the stats bucket the list was counted in (its shadow mirror's goes there)."""
        now = time.time()
        current = epoch == self.stats.epoch
        if upstream_ms is None:
            self.stats.request(variant, elapsed_ms, error=False, epoch=epoch)
        at = self.stats.exposure(
            variant, self._tally(variant, req.user_id, clicked=False) if current else None,
            epoch=epoch)
        m = self._served_metrics.get((variant, label))
        if m is None:
            m = self._served_metrics[(variant, label)] = (
                metrics.REQUESTS.labels(variant, label, "200"), metrics.LATENCY.labels(variant),
                metrics.EXPOSURES.labels(variant), metrics.CLICK_THROUGH.labels(variant))
        m[0].inc()
        m[1].observe((elapsed_ms if upstream_ms is None else upstream_ms) / 1000)
        if current:
            m[2].inc()
        ctr = self._ctr.setdefault(variant, [0, 0])
        ctr[0] += 1
        m[3].set(ctr[1] / ctr[0])
        state = RequestState(req.user_id, variant, sys.intern(version), array("q", pred.items),
                             now, at=at)
        if teams is not None:
            state.teams = bytes(t == "b" for t in teams)
        self._remember(request_id, state)
        if self.exposures is not None:
            self.exposures.log({
                "request_id": request_id, "ts": now, "user_id": req.user_id, "variant": variant,
                "model_version": version, "strategy": strategy, "k": req.k,
                "items": pred.items, "scores": pred.scores,
                "teams": [_TEAM_VARIANT[t] for t in teams] if teams else None,
                "latency_ms": elapsed_ms})
        return at

    def _remember(self, request_id: str, state: RequestState) -> None:
        """Keep ``state`` for feedback; drop the oldest lists past the count, the estimated
        memory (``request_state_mib``: a client asking for k=500 makes each list ~8x one of
        k=10, and the count alone let the router outgrow its memory limit) or the age bound."""
        reqs = self._requests
        old = reqs.pop(request_id, None)
        if old is not None:
            self._state_bytes -= _state_bytes(old)
        reqs[request_id] = state
        self._state_bytes += _state_bytes(state)
        ttl = self.settings.request_state_ttl_seconds
        limit = self.settings.request_state_mib * 2**20
        while reqs and (len(reqs) > self.settings.request_state_max
                        or self._state_bytes > limit
                        or next(iter(reqs.values())).ts < state.ts - ttl):
            self._state_bytes -= _state_bytes(reqs.popitem(last=False)[1])

    # Shadow --------------------------------------------------------------------------------------
    def _mirror(self, r: RoutingState, req: RecommendRequest, request_id: str,
                baseline: Prediction, baseline_ms: float, at: BucketKey) -> None:
        """Mirror a served list; ``at``: the stats bucket it was counted in, where its
        mirror's result (or drop) is counted whenever it comes back."""
        if not self.mirror.submit(r.candidate_url, req, request_id,  # type: ignore[arg-type]
                                  baseline.items, baseline_ms, at):
            self.shadow_outcome(ShadowOutcome(code="dropped", at=at))

    def shadow_outcome(self, o: ShadowOutcome) -> None:
        """Fold one mirror's result into the stats and metrics (called by the mirror). It
        counts for the routing its request was served under (``o.at``), as a late answer or
        click does: a mirror still in flight when the controller moved on (shadow to canary,
        a promotion, another rollout) belongs to the shadow, and one whose bucket expired
        counts nowhere in the stats. Prometheus windows by time alone, so the agreement
        series (top-k, RBO, tau: the comparison of two models) take only mirrors of the
        routing in force; the mirror counters and latencies, like the request counters,
        take every call made."""
        current = o.at is None or o.at[1] == self.stats.epoch
        if o.code == "dropped":
            self.stats.shadow_dropped(at=o.at)
            metrics.SHADOW_DROPPED.inc()
            return
        # a closed set whatever came back (a worker's outcome crosses a socket)
        metrics.SHADOW_REQUESTS.labels(code=o.code if o.code in SHADOW_CODES else "error").inc()
        if not o.ok:
            self.stats.shadow(ok=False, latency_ms=0.0, baseline_latency_ms=o.baseline_ms,
                              at=o.at)
            return
        self.stats.shadow(ok=True, latency_ms=o.latency_ms, baseline_latency_ms=o.baseline_ms,
                          topk=o.topk, rbo=o.rbo, tau=o.tau,
                          baseline_items=o.baseline_items or (),
                          candidate_items=o.candidate_items or (), at=o.at)
        metrics.SHADOW_LATENCY.labels("candidate").observe(o.latency_ms / 1000)
        metrics.SHADOW_LATENCY.labels("baseline").observe(o.baseline_ms / 1000)
        if not current:
            return
        if o.topk is not None:
            metrics.SHADOW_TOPK.observe(o.topk)
        if o.rbo is not None:
            metrics.SHADOW_RBO.observe(o.rbo)
        if o.tau is not None:
            metrics.SHADOW_TAU.observe(o.tau)

    async def drain_shadow(self, timeout: float = 5.0) -> None:
        """Wait for the mirrors in flight (tests, graceful shutdown)."""
        await self.mirror.drain(timeout)

    def shadow_gauges(self) -> None:
        """The coverage and popularity-bias gauges of the routing in force's recent mirrored
        lists; none once it mirrors nothing (a canary step after the shadow), rather than the
        last shadow's values for as long as the router runs."""
        metrics.SHADOW_COVERAGE.clear()
        metrics.SHADOW_GINI.clear()
        for side, (cov, gini) in self.stats.shadow_side_summary().items():
            if cov is not None:
                metrics.SHADOW_COVERAGE.labels(side).set(cov)
            if gini is not None:
                metrics.SHADOW_GINI.labels(side).set(gini)

    # Interleave ----------------------------------------------------------------------------------
    async def _interleave(self, r: RoutingState, req: RecommendRequest, request_id: str,
                          start: float) -> dict[str, Any]:
        timeout = self.settings.upstream_timeout_seconds
        calls = {
            "baseline": (r.baseline_url, r.baseline.version),
            "candidate": (r.candidate_url, r.candidate.version),  # type: ignore[union-attr]
        }

        failed: dict[str, UpstreamFailed] = {}

        async def one(variant: str) -> tuple[Prediction | None, float]:
            url, version = calls[variant]
            t = time.perf_counter()
            try:
                p = await self.upstream.predict(url, req, request_id, variant=variant,  # type: ignore[arg-type]
                                                timeout=timeout)
            except UpstreamFailed as exc:
                ms = (time.perf_counter() - t) * 1000
                self.stats.request(variant, ms, error=True, epoch=r.epoch)
                metrics.ERRORS.labels(variant, version, exc.reason).inc()
                failed[variant] = exc
                return None, ms
            ms = (time.perf_counter() - t) * 1000
            self.stats.request(variant, ms, error=False, epoch=r.epoch)
            metrics.UPSTREAM_LATENCY.labels(variant).observe(ms / 1000)
            return p, ms

        (base, base_ms), (cand, cand_ms) = await asyncio.gather(one("baseline"),
                                                                one("candidate"))
        versions = f"{r.baseline.version}+{r.candidate.version}"  # type: ignore[union-attr]
        if base is None and cand is None:
            # 504 when both timed out (as one timed-out server is); any other failure on
            # either side is a 502: a server that answered wrongly is not merely slow
            both_timed_out = all(isinstance(e, UpstreamTimeout) for e in failed.values())
            error = UpstreamTimeout if both_timed_out else UpstreamFailed
            metrics.REQUESTS.labels("interleaved", versions, str(error.status_code)).inc()
            raise error("both model servers failed: "
                        f"{failed['baseline'].message}; {failed['candidate'].message}",
                        reason="timeout" if both_timed_out else "error",
                        variant="interleaved")
        if base is None or cand is None:  # serve the one that answered, not interleaved
            only = base or cand
            assert only is not None
            variant = "baseline" if base is not None else "candidate"
            # the routing's version when the model server names none, as a single answer is
            version = only.model_version or calls[variant][1]
            elapsed = (time.perf_counter() - start) * 1000
            self._served(request_id, req, variant, version, only, elapsed,
                         r.strategy, label=calls[variant][1], epoch=r.epoch,
                         upstream_ms=base_ms if base is not None else cand_ms)
            return self._response(request_id, req.user_id, only.items, only.scores, variant,
                                  version, only)
        rng = random.Random(request_id)
        il = team_draft(base.items, cand.items, req.k, rng)
        score_of = {**dict(zip(cand.items, cand.scores)), **dict(zip(base.items, base.scores))}
        merged = Prediction(items=il.items, scores=[score_of[i] for i in il.items],
                            model_version=versions, cold_start=base.cold_start,
                            fallback=base.fallback and cand.fallback)
        elapsed = (time.perf_counter() - start) * 1000
        at = self._served(request_id, req, "interleaved", versions, merged, elapsed,
                          r.strategy, teams=il.teams, label=versions, epoch=r.epoch)
        self.stats.interleaved(at)  # in the list's own bucket, not one read off the clock again
        return self._response(request_id, req.user_id, merged.items, merged.scores,
                              "interleaved", versions, merged)

    # Feedback ------------------------------------------------------------------------------------
    def feedback(self, fb: FeedbackRequest) -> FeedbackResponse:
        """Credit one feedback event to the list it is about. A list served under an earlier
        routing (the previous step or rollout) counts in that routing's stats buckets only:
        Prometheus windows the process-wide counters by time alone, so a late click counted
        there would go to the variants now in force, whose candidate may be another model."""
        state = self._requests.get(fb.request_id)
        now = time.time()
        if state is not None and now - state.ts > self.settings.request_state_ttl_seconds:
            state = None  # expired: dropped lazily, when a later list is remembered
        if state is None:
            raise UnknownRequest(f"request_id {fb.request_id!r} is unknown or expired",
                                 field="request_id")
        variant = state.variant
        current = state.at is None or state.at[1] == self.stats.epoch
        self.stats.feedback(variant, fb.event, at=state.at)
        metrics.FEEDBACK.labels(variant, fb.event).inc()
        if self.feedback_log is not None:
            self.feedback_log.log({"request_id": fb.request_id, "ts": now,
                                   "user_id": state.user_id, "item_id": fb.item_id,
                                   "event": fb.event, "variant": variant,
                                   "model_version": state.model_version})
        pos = state.position(fb.item_id)
        credited = None
        if pos is not None and state.teams is not None:
            credited = _TEAMS[state.teams[pos]]
        elif pos is not None:
            credited = variant if variant in _TEAMS else None
        if fb.event != "click" or pos is None or state.clicked >> pos & 1:
            return FeedbackResponse(request_id=fb.request_id, accepted=True, credited=credited)
        first = not state.clicked
        state.clicked |= 1 << pos
        if first:
            # the per-user sums restart with each routing: a list served under an earlier one
            # has no place in them
            self.stats.clicked_exposure(
                variant, self._tally(variant, state.user_id, clicked=True) if current
                else None, at=state.at)
            if current:
                metrics.CLICKED_EXPOSURES.labels(variant).inc()
            ctr = self._ctr.setdefault(variant, [0, 0])
            ctr[1] += 1
            metrics.CLICK_THROUGH.labels(variant).set(ctr[1] / max(1, ctr[0]))
        if state.teams is not None:
            c = sum(team for i, team in enumerate(state.teams) if state.clicked >> i & 1)
            b = state.clicked.bit_count() - c
            new = "tie" if b == c else ("baseline" if b > c else "candidate")
            if new != state.winner:
                self.stats.interleave_outcome(state.winner, new, at=state.at)
                if current:
                    if state.winner is not None:
                        metrics.INTERLEAVE_REVERSALS.labels(state.winner).inc()
                    metrics.INTERLEAVE_WINS.labels(new).inc()
                state.winner = new
        return FeedbackResponse(request_id=fb.request_id, accepted=True, credited=credited)
