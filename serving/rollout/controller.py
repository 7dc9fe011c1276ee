"""The rollout controller: read the status, analyse, decide, persist, apply.

One tick::

    status ← store                       (the only memory: survives restarts)
    router ← desired_routing(status)     (reconcile first: the router may have restarted)
    analysis ← evaluate(window since the stage started)   or resolve versions (Pending)
    status' ← next_status(spec, status, analysis)          (pure)
    registry aliases ← promotion / restore on rollback
    store ← status'; router ← desired_routing(status')

Effects are idempotent, so a controller killed between any two lines and started again
re-applies what the persisted status says and carries on with the same decision.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from serving.rollout import metrics
from serving.rollout.analysis import Analysis, evaluate
from serving.rollout.machine import desired_routing, next_status
from serving.rollout.sources import MetricsSource, RouterAdmin, SourceError
from serving.rollout.spec import RolloutSpec, VersionRef
from serving.rollout.status import Outcome, Phase, RolloutStatus, utcnow
from serving.rollout.store import (
    ROLLOUT_UNUSABLE,
    StatusStore,
    StoredRollout,
    rollout_in_the_way,
)
from serving.router.schema import RoutingConfig, Upstream, WindowStats

__all__ = ["Controller", "AliasRegistry", "MarqueeRegistry", "ALIASES", "apply_routing"]

log = logging.getLogger("marquee.rollout")

ALIASES = ("production", "candidate", "previous")

#: rollout name -> the production version its ended routing last followed (logged once)
_FOLLOWED: dict[str, str] = {}


class AliasRegistry(Protocol):
    """The registry operations a rollout needs (versions as strings)."""

    def get_alias(self, alias: str) -> str | None: ...
    def has_version(self, version: str) -> bool: ...
    def set_alias(self, alias: str, version: str) -> None: ...
    def delete_alias(self, alias: str) -> None: ...
    def promote(self, version: str) -> None: ...


class MarqueeRegistry:
    """:class:`AliasRegistry` over ``marquee.registry.Registry`` (MLflow), built lazily.
    ``create=False`` (the CLI's, for an explicit registry URI): a mistyped sqlite path is an
    error each tick names, not a new empty registry that fails the rollout for "no
    production", and an MLflow server that does not answer fails the tick within seconds (the
    next tick tries again) instead of blocking it for minutes."""

    def __init__(self, tracking_uri: str, model_name: str, *, create: bool = True) -> None:
        self.tracking_uri, self.model_name, self.create = tracking_uri, model_name, create
        self._registry = None

    @property
    def registry(self):  # noqa: ANN201 - marquee.registry.Registry, imported lazily
        if self._registry is None:
            from marquee.registry import Registry

            self._registry = Registry(self.tracking_uri, self.model_name, create=self.create)
        return self._registry

    def get_alias(self, alias: str) -> str | None:
        info = self.registry.get_alias(alias)
        return None if info is None else str(info.version)

    def has_version(self, version: str) -> bool:
        from marquee.errors import InvalidReferenceError, VersionNotFoundError

        try:
            self.registry.get_version(version)
        except (VersionNotFoundError, InvalidReferenceError):
            return False
        return True

    def set_alias(self, alias: str, version: str) -> None:
        self.registry.set_alias(alias, version)

    def delete_alias(self, alias: str) -> None:
        self.registry.delete_alias(alias)

    def promote(self, version: str) -> None:
        self.registry.promote(version)


def apply_routing(store: StatusStore, name: str, router: RouterAdmin | None, spec: RolloutSpec,
                  status: RolloutStatus, routing: RoutingConfig | None = None) -> RolloutStatus:
    """Put the status's routing (or ``routing``) in force; the status, with ``routing_error``
    saying whether that worked (saved when it changed, so ``rollout status`` tells the
    truth)."""
    return _apply_routing(store, name, router, spec, status, routing)[0]


def _apply_routing(store: StatusStore, name: str, router: RouterAdmin | None,
                   spec: RolloutSpec, status: RolloutStatus, routing: RoutingConfig | None = None
                   ) -> tuple[RolloutStatus, str | None]:
    """:func:`apply_routing`, and the epoch the router gave the routing (None: nothing
    applied, or a router that does not say; a replica that took it while another refused
    it counts)."""
    if routing is None:
        routing = desired_routing(spec, status, name)
    if routing is None or router is None:
        return status, None
    error = ""
    try:
        answer = router.apply(routing)
    except SourceError as exc:
        log.error("rollout %s: routing not applied: %s", name, exc)
        error = str(exc)[:500]
        answer = exc.answer
    if error != status.routing_error:
        status = status.model_copy(update={"routing_error": error})
        store.save_status(name, status)
    epoch = answer.get("epoch") if isinstance(answer, dict) else None
    return status, epoch if isinstance(epoch, str) and epoch else None


class Controller:
    def __init__(self, store: StatusStore, name: str, source: MetricsSource,
                 router: RouterAdmin | None = None, registry: AliasRegistry | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store, self.name, self.source = store, name, source
        self.router, self.registry, self.clock = router, registry, clock
        self._epoch: str | None = None  # of the routing this tick last put in force

    # Effects -------------------------------------------------------------------------------------
    def _reconcile(self, spec: RolloutSpec, status: RolloutStatus) -> RolloutStatus:
        status, self._epoch = _apply_routing(self.store, self.name, self.router, spec, status)
        return status

    def _foreign(self, window: WindowStats, routing_error: str) -> str | None:
        """Why the window is not this rollout's to judge; None when it is. ``GET /admin/stats``
        answers for the routing in force, whoever put it there: after an apply that was
        refused or lost (a router replica restarted on an older routing file, another
        controller, a hand ``PUT /admin/routing``) that is another experiment's traffic, and
        judging it promoted or rolled back this rollout on it. The stats say their routing's
        epoch, the router's answer to this tick's apply says ours. A side that does not say
        (Prometheus, whose series carry no epoch; an older router) is judged as before."""
        if window.epoch is None:
            return None
        if self._epoch is not None:  # taken (by some replicas at least: routing_error)
            if window.epoch == self._epoch:
                return None
            refused = f" (not applied everywhere: {routing_error[:200]})" if routing_error else ""
            return (f"stats not judged: they are of routing epoch {window.epoch}, not of this "
                    f"rollout's ({self._epoch}){refused}; another routing is in force where "
                    f"they were read (a router restarted on an older routing file, another "
                    f"controller, a hand PUT /admin/routing); routing re-applied")
        if routing_error:
            return (f"stats not judged: this rollout's routing was not applied "
                    f"({routing_error[:200]}), and the router's stats are of routing epoch "
                    f"{window.epoch}, which may be another experiment's; applying it again")
        return None  # applied, but the router did not say its epoch: judged as before

    def _ended_routing(self, spec: RolloutSpec, status: RolloutStatus) -> RoutingConfig | None:
        """The routing an ended rollout keeps in force (the manager re-applies the last
        one's while none runs): all traffic on the registry's ``production``. That is the
        version the rollout left (its baseline after a rollback, its candidate after a
        promotion) until someone moves ``production`` since (``Registry.promote``, ``marquee
        registry``, a rollout of the model run elsewhere): routing then follows the registry,
        where before it kept sending every request to the version the rollout ended on. No
        registry, ``production`` unset or the registry unreachable: the rollout's own."""
        routing = desired_routing(spec, status, self.name)
        if routing is None or self.registry is None or self.router is None:
            return routing
        try:
            production = self.registry.get_alias("production")
        except Exception as exc:  # noqa: BLE001 - keep the router where the rollout left it
            log.warning("rollout %s: registry unreachable, re-applying the routing the rollout "
                        "ended with: %s", self.name, exc)
            return routing
        if production is None or production == routing.baseline.version:
            _FOLLOWED.pop(self.name, None)
            return routing
        if _FOLLOWED.get(self.name) != production:
            _FOLLOWED[self.name] = production
            log.warning("rollout %s ended (%s) on version %s, but production is version %s "
                        "now: routing follows production", self.name, status.phase.value,
                        routing.baseline.version, production)
        return routing.model_copy(update={"baseline": Upstream(version=production)})

    def _resolve(self, ref: VersionRef) -> str:
        if ref.version is not None:
            if self.registry is not None and not self.registry.has_version(ref.version):
                raise LookupError(f"version {ref.version} is not in the registry")
            return ref.version
        if self.registry is None:
            raise LookupError(f"alias {ref.alias!r} needs a registry")
        version = self.registry.get_alias(ref.alias or "")
        if version is None:
            raise LookupError(f"registry alias {ref.alias!r} is not set")
        return version

    def _start(self, stored: StoredRollout, now: datetime) -> Analysis:
        spec = stored.rollout.spec
        stats: dict[str, object] = {}
        try:
            stats["baselineVersion"] = self._resolve(spec.baseline)
            stats["candidateVersion"] = self._resolve(spec.candidate)
        except Exception as exc:  # noqa: BLE001 - reported in the status, not raised
            return Analysis(time=now, outcome=Outcome.FAILED, reason=str(exc), statistics=stats)
        if stats["baselineVersion"] == stats["candidateVersion"]:
            return Analysis(time=now, outcome=Outcome.FAILED, statistics={},
                            reason=f"baseline and candidate are both version "
                                   f"{stats['candidateVersion']}")
        other = rollout_in_the_way(self.store, spec.model_name, stored)
        if other is not None:  # it owns the routing and the aliases: touch neither
            stats["activeRollout"] = other.name
            return Analysis(time=now, outcome=Outcome.FAILED, statistics=stats,
                            reason=f"rollout {other.name} of model {spec.model_name} is "
                                   f"{other.status.phase.value}: one rollout of a model at a "
                                   f"time (wait for it to end, or abort it)")
        if self.registry is not None:  # what rollback restores (recorded before any change)
            stats["aliasesBefore"] = {a: self.registry.get_alias(a) for a in ALIASES}
        return Analysis(time=now, outcome=Outcome.SUCCESSFUL, reason="started",
                        statistics=stats)

    def _name_candidate(self, status: RolloutStatus) -> None:
        """While the rollout runs, the registry's ``candidate`` alias names its candidate."""
        if self.registry is None or status.candidate_version is None:
            return
        if status.phase in (Phase.SHADOWING, Phase.PROGRESSING, Phase.PAUSED) and \
                self.registry.get_alias("candidate") != status.candidate_version:
            self.registry.set_alias("candidate", status.candidate_version)

    def _promote(self, status: RolloutStatus) -> None:
        if self.registry is None or status.candidate_version is None:
            return
        version = status.candidate_version
        if self.registry.get_alias("production") != version:
            self.registry.promote(version)
        elif self.registry.get_alias("candidate") == version:
            # A promotion cut short (the controller died) after ``production`` moved: finish
            # it. Calling promote again would be wrong for a registry that sets ``previous``
            # to the production of the moment, which is the candidate by now.
            self.registry.delete_alias("candidate")

    def _restore_aliases(self, status: RolloutStatus) -> dict[str, str | None]:
        """Put the aliases back as they were at the start, but only those that still hold
        what this rollout wrote (``production`` on its candidate, ``previous`` on the
        production it replaced, ``candidate`` naming its candidate or removed by its
        promotion). An alias someone else moved since (a rollout of the same model that ran
        meanwhile, a person) is left alone. Returns the aliases left, with their values."""
        if self.registry is None or not status.started:
            return {}
        before, mine = status.aliases_before, status.candidate_version
        now = {alias: self.registry.get_alias(alias) for alias in ALIASES}
        promoted = mine is not None and now["production"] == mine
        ours = {
            "production": promoted,
            "previous": now["previous"] == before.get("production") and (
                promoted or now["production"] == before.get("production")),
            "candidate": now["candidate"] == mine or (now["candidate"] is None and promoted),
        }
        left: dict[str, str | None] = {}
        for alias in ("candidate", "previous", "production"):  # production last: a tick cut
            # short after some of these is recognised as this rollout's again by the next
            want = before.get(alias)
            if now[alias] == want:
                continue
            if not ours[alias]:
                left[alias] = now[alias]
            elif want is None:
                self.registry.delete_alias(alias)
            else:
                self.registry.set_alias(alias, want)
        return left

    def restore_aliases(self, status: RolloutStatus) -> None:
        """Roll the aliases of a rollout that just ended rolled back or failed (``status``,
        not saved yet) back to its start (:meth:`_restore_aliases`); those left because
        someone else moved them are named in its last decision (``aliasesLeft``) and message.
        A tick ends a rollout this way, and so does the manager's abort of one whose spec it
        refuses (``RolloutManager._refused``)."""
        left = self._restore_aliases(status)
        if left and status.last_decision is not None:
            said = ", ".join(f"{a} {v if v is not None else '(unset)'}" for a, v in left.items())
            note = (f"; aliases moved by someone else since the start left as they are "
                    f"({said}; this rollout's candidate is {status.candidate_version})")
            status.last_decision.reason += note
            status.last_decision.statistics["aliasesLeft"] = left
            status.message += note

    # One tick ------------------------------------------------------------------------------------
    def tick(self) -> RolloutStatus:
        stored = self.store.get(self.name)
        spec, status = stored.rollout.spec, stored.status
        if status.phase.terminal:
            return apply_routing(self.store, self.name, self.router, spec, status,
                                 self._ended_routing(spec, status))
        status = self._reconcile(spec, status)
        now = self.clock()
        command = self.store.pending_command(self.name)
        if status.phase == Phase.PENDING:
            analysis = self._start(stored, now)
            analysis.command = command  # abort is honoured; promote refused (machine.py)
            if command == "promote":
                log.warning("rollout %s: promote refused: issued before the rollout started",
                            self.name)
        elif status.phase == Phase.PROMOTING and command == "abort":
            # Aborted before the promotion finished: the aliases are not moved; rolling back
            # restores them (they may have moved in a tick that crashed before saving).
            analysis = Analysis(time=now, outcome=Outcome.INCONCLUSIVE, command=command,
                                reason="aborted while promoting")
        elif status.phase == Phase.PROMOTING:
            self._promote(status)  # raises → retried at the next tick, status unchanged
            analysis = Analysis(time=now, outcome=Outcome.SUCCESSFUL, reason="aliases moved")
        else:
            since = (status.stage_started_at or now).timestamp()
            try:
                window = self.source.window(since, now.timestamp())
            except SourceError as exc:
                log.warning("rollout %s: analysis unavailable: %s", self.name, exc)
                # No metrics is Inconclusive, recorded: it never passes an interval (a pause
                # waits for a Successful analysis), never counts as a failed check, and
                # maxDurationSeconds still applies. A person's abort or promote needs no
                # metrics: it is carried out now.
                analysis = Analysis(time=now, outcome=Outcome.INCONCLUSIVE,
                                    reason=f"metrics unavailable: {exc}",
                                    statistics={"metricsUnavailable": str(exc)[:300]},
                                    command=command)
            else:
                foreign = self._foreign(window, status.routing_error)
                if foreign is None:
                    analysis = evaluate(spec, status, window, now, command)
                else:  # "not yet": no check passes or fails on another routing's traffic
                    log.warning("rollout %s: %s", self.name, foreign)
                    analysis = Analysis(
                        time=now, outcome=Outcome.INCONCLUSIVE, reason=foreign, command=command,
                        statistics={"routingMismatch": {
                            "statsEpoch": window.epoch, "routingEpoch": self._epoch,
                            "routingError": status.routing_error[:300] or None},
                            "window": {"since": window.since, "until": window.until}})
        new = next_status(spec, status, analysis)
        if new.phase in (Phase.ROLLED_BACK, Phase.FAILED):
            self.restore_aliases(new)
        self.store.save_status(self.name, new)
        metrics.export_status(self.name, spec, new)
        if command is not None:
            self.store.clear_command(self.name, command)
        new = self._reconcile(spec, new)
        self._name_candidate(new)
        last = new.last_decision
        if last is not None and (new.phase != status.phase or new.step != status.step
                                 or last.outcome == Outcome.FAILED):
            log.info("rollout %s: %s step %s weights %s/%s: %s", self.name, new.phase.value,
                     new.step, new.weights.baseline, new.weights.candidate, new.message)
        return new

    def run(self, stop: threading.Event | None = None, max_ticks: int | None = None,
            on_tick: Callable[[RolloutStatus], None] | None = None) -> RolloutStatus:
        """Tick every ``intervalSeconds`` until the rollout ends (or ``stop`` is set).

        A tick that fails (the registry or the store briefly unreachable while aliases move)
        is logged and tried again at the next interval, as the multi-rollout controller does:
        the stored status is the only memory and every effect is idempotent, so the next tick
        carries on. Only a rollout that is gone or can no longer be read ends the loop."""
        stop = stop or threading.Event()
        ticks = 0
        next_at = time.monotonic()
        stored = self.store.get(self.name)
        status, interval = stored.status, stored.rollout.spec.interval_seconds
        while not stop.is_set():
            try:
                status = self.tick()
            except ROLLOUT_UNUSABLE:
                raise
            except Exception:  # noqa: BLE001 - retried at the next interval, like the manager
                log.exception("rollout %s: tick failed; retrying in %gs", self.name, interval)
            else:
                if on_tick is not None:
                    on_tick(status)
            ticks += 1
            if status.phase.terminal or (max_ticks is not None and ticks >= max_ticks):
                break
            try:
                interval = self.store.get(self.name).rollout.spec.interval_seconds
            except ROLLOUT_UNUSABLE:
                raise
            except Exception:  # noqa: BLE001 - keep the last interval
                log.exception("rollout %s: reading the rollout failed", self.name)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # we fell behind (a slow tick): do not burst to catch up
                next_at = time.monotonic()
                delay = 0.0
            stop.wait(delay)
        return status
