"""``marquee rollout controller``: one process that runs every rollout in a store.

Each rollout is ticked every ``intervalSeconds`` by a :class:`Controller`; a failure in one
rollout is logged and counted, never fatal to the others. When none is running, the routing
the last one ended with is re-applied every few seconds, so a restarted router replica does
not fall back to its configured baseline version (all traffic on the registry's
``production``, which follows a promotion made since the rollout ended); a running rollout's
routing is re-applied as often between its ticks. ``/healthz`` (503 once no pass over the
store has ended for ``stall_seconds``: a hung call would otherwise leave every rollout
unjudged while the pod looks alive), ``/readyz`` (the store could be listed) and
``/metrics`` are served on the controller's port. In Kubernetes the store is the namespace's
ModelRollout objects, and several replicas may run: ``leading`` (the Lease of
:mod:`serving.rollout.lease`) lets only one of them tick rollouts or apply routing; the
others stand by, ready. A rollout whose spec no longer parses (edited by hand) is stopped
once, with the reason in its status (:meth:`RolloutManager._refused`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.rollout import metrics
from serving.rollout.controller import AliasRegistry, Controller, apply_routing
from serving.rollout.machine import ended
from serving.rollout.sources import MetricsSource, RouterAdmin
from serving.rollout.spec import SpecError
from serving.rollout.status import Phase, RolloutStatus, utcnow
from serving.rollout.store import ControllerBusy, FileStatusStore, StatusStore
from serving.router.schema import RoutingConfig, Upstream

__all__ = ["RolloutManager", "serve_health"]

log = logging.getLogger("marquee.rollout")


class RolloutManager:
    def __init__(self, store: StatusStore, source: MetricsSource, router: RouterAdmin | None,
                 registry: AliasRegistry | Callable[[str], AliasRegistry] | None,
                 clock: Callable[[], float] = time.monotonic,
                 leading: Callable[[], bool] | None = None) -> None:
        """``registry``: one registry for every rollout, or a function of a rollout's
        ``modelName`` giving that model's registry (the aliases a rollout moves are its own
        model's)."""
        self.store, self.source, self.router, self.registry = store, source, router, registry
        self.clock = clock
        self.leading = leading or (lambda: True)
        self.reconcile_seconds = 5.0
        self._last: dict[str, float] = {}
        self._applied: dict[str, float] = {}
        self.ready = False
        self._heartbeat = time.monotonic()  # end of the last pass of ``run`` (real time,
        # not ``clock``, which tests may freeze)

    def alive(self, stall_seconds: float) -> bool:
        """Whether a pass of ``run`` over the store ended within the last ``stall_seconds``
        (a pass that failed counts: the loop goes on). False when one hangs."""
        return time.monotonic() - self._heartbeat <= stall_seconds

    def run_once(self) -> dict[str, RolloutStatus]:
        """Tick every rollout that is due; returns the statuses of those ticked. A standby
        (not ``leading``) only checks that it can list the store."""
        ticked: dict[str, RolloutStatus] = {}
        names = self.store.list()
        self.ready = True
        leader = self.leading()
        metrics.LEADER.set(1.0 if leader else 0.0)
        if not leader:
            self._last.clear()  # a new leader starts every rollout's interval afresh
            self._applied.clear()
            metrics.forget_rollouts()
            return ticked
        metrics.forget_deleted(names)  # a rollout deleted while it ran is ticked no more
        active: dict[str, int] = {}
        finished: list[tuple[Any, str]] = []
        frozen = False  # a running rollout whose spec is refused still holds the routing
        for name in names:
            if not self.leading():  # the lease lapsed during this pass: stop acting
                break
            try:
                stored = self.store.get(name)
                spec, status = stored.rollout.spec, stored.status
                if status.phase.terminal:
                    # only one that ran has a routing to keep: one that failed to start
                    # (refused, or a version not in the registry) never routed anything
                    if status.last_decision is not None and status.started is not None:
                        finished.append((status.last_decision.time, name))
                    continue
                active[spec.strategy] = active.get(spec.strategy, 0) + 1
                now = self.clock()
                if now - self._last.get(name, -1e18) < spec.interval_seconds:
                    self._reapply(name, spec, status, now)
                    continue
                before = len(status.decisions)
                try:
                    with self._tick_lock(name):
                        new = Controller(self.store, name, self.source, self.router,
                                         self._registry(spec.model_name)).tick()
                except ControllerBusy:  # a `marquee rollout run` process owns this rollout
                    log.debug("rollout %s: skipped, another controller holds it", name)
                    continue
                self._last[name] = now
                self._applied[name] = now
                ticked[name] = new
                metrics.TICKS.labels("ok").inc()
                if len(new.decisions) > before or new.decisions[-1:] != status.decisions[-1:]:
                    metrics.DECISIONS.labels(spec.strategy, new.decisions[-1].outcome.value).inc()
                metrics.CANDIDATE_WEIGHT.labels(spec.strategy).set(new.weights.candidate)
            except SpecError as exc:
                frozen = self._refused(name, exc) or frozen
            except Exception:  # noqa: BLE001 - one rollout must not stop the others
                metrics.TICKS.labels("error").inc()
                log.exception("rollout %s: tick failed", name)
        metrics.ACTIVE.clear()
        for strategy, n in active.items():
            metrics.ACTIVE.labels(strategy).set(n)
        if not active and not frozen and finished and self.router is not None \
                and self.leading():
            # No rollout running: keep the router on what the last one decided (a restarted
            # router replica starts from its configured baseline version).
            now = self.clock()
            if now - self._last.get("", -1e18) >= self.reconcile_seconds:
                self._last[""] = now
                name = max(finished)[1]
                try:
                    model = self.store.get(name).rollout.spec.model_name
                    Controller(self.store, name, self.source, self.router,
                               self._registry(model)).tick()
                except Exception:  # noqa: BLE001
                    log.exception("rollout %s: re-applying its final routing failed", name)
        return ticked

    def _refused(self, name: str, exc: SpecError) -> bool:
        """Stop a rollout whose spec ``spec.py`` refuses, once, saying why in its status: its
        spec was edited in place (``kubectl edit``; the CRD cannot express every rule here,
        e.g. a candidate equal to the baseline). A Pending one ends Failed, nothing routed or
        moved. A running one is frozen: nothing to judge it by, so its weights, routing and
        aliases stay as they are until the spec is fixed (the next tick then carries on and
        replaces the message) or someone aborts it (``marquee rollout abort``: every request to
        the baseline, RolledBack; not while Promoting, whose alias moves need the spec).
        Retrying with a traceback on every pass told nobody. The per-rollout gauges follow
        the saved status (a frozen one, still in force, keeps its failed checks exported).
        Returns whether it is still running (frozen): its routing stays in force. What the
        stored spec document still says (unvalidated) names the series of a controller that
        never saw the spec parse (restarted, or a new leader) and the abort's salt."""
        read: list[dict[str, Any]] = []

        def document() -> dict[str, Any]:  # read once, and only when needed
            if not read:
                read.append(self._document(name))
            return read[0]

        try:
            with self._tick_lock(name):
                status = self.store.get_status(name)
                if status.phase.terminal:
                    return False
                aborted = self.store.pending_command(name) == "abort" \
                    and status.phase != Phase.PROMOTING and status.baseline_version is not None
                if status.phase == Phase.PENDING:
                    status = ended(status, Phase.FAILED, f"cannot start: {exc}", utcnow())
                    message = status.message
                elif aborted:  # routing needs no spec: every request to the baseline, as
                    # desired_routing has it for RolledBack (same salt: same router epoch as
                    # the ended routing re-applied once the spec parses again)
                    salt = document().get("stickinessSalt")
                    routing = RoutingConfig(strategy="single", rollout=name,
                                            salt=salt if isinstance(salt, str) and salt else name,
                                            run=status.run_id,
                                            baseline=Upstream(version=status.baseline_version))
                    if self.router is not None:
                        self.router.apply(routing)  # fails: stays frozen, tried next pass
                    status = ended(status, Phase.ROLLED_BACK,
                                   f"aborted by user (spec refused: {exc})", utcnow())
                    message = status.message
                else:
                    message = (f"frozen at its current weights, spec refused (fix it to carry "
                               f"on): {exc}")
                    if status.message == message:  # exported on every pass: the series
                        # of one frozen before this controller started, or became leader
                        metrics.export_unparsed(name, status, document)
                        return True
                    status = status.model_copy(update={"message": message})
                self.store.save_status(name, status)
                # aborted: RolledBack, no failed checks (RolloutFailing resolves)
                metrics.export_unparsed(name, status, document)
                if aborted:
                    self.store.clear_command(name, "abort")
        except ControllerBusy:  # a `marquee rollout run` process owns it
            return True
        except Exception:  # noqa: BLE001 - tried again at the next pass
            metrics.TICKS.labels("error").inc()
            log.exception("rollout %s: recording its refused spec failed", name)
            return True
        metrics.TICKS.labels("error").inc()
        log.warning("rollout %s: %s", name, message)
        return not status.phase.terminal

    def _document(self, name: str) -> dict[str, Any]:
        """The ``spec`` of rollout ``name`` as stored, not validated (``{}`` when it cannot
        be read, or the store cannot say): a spec refused for one field still names its
        model, strategy and salt."""
        read = getattr(self.store, "spec_document", None)
        if read is None:
            return {}
        try:
            spec = read(name)
        except Exception as exc:  # noqa: BLE001 - labels and salt then fall back
            log.debug("rollout %s: its spec document could not be read: %s", name, exc)
            return {}
        return spec if isinstance(spec, dict) else {}

    def _registry(self, model_name: str) -> AliasRegistry | None:
        if callable(self.registry) and not hasattr(self.registry, "get_alias"):
            return self.registry(model_name)
        return self.registry  # type: ignore[return-value]

    def _tick_lock(self, name: str) -> Any:
        """On a file store, the rollout's own lock (the one ``rollout run`` holds for its
        whole run), so two controllers never tick one rollout; elsewhere leader election
        keeps one replica acting."""
        if isinstance(self.store, FileStatusStore):
            return self.store.lock(name)
        return contextlib.nullcontext()

    def _reapply(self, name: str, spec: Any, status: RolloutStatus, now: float) -> None:
        """Between analysis ticks, re-apply the rollout's current routing every
        ``reconcile_seconds``, so a router replica started mid-rollout (it comes up with its
        configured baseline) joins within seconds, not one ``intervalSeconds``. The same
        routing again is a no-op for replicas that have it (same epoch)."""
        if self.router is None or now - self._applied.get(name, -1e18) < self.reconcile_seconds:
            return
        self._applied[name] = now
        apply_routing(self.store, name, self.router, spec, status)

    def run(self, stop: threading.Event, poll_seconds: float = 0.5) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the store may be briefly unreachable
                metrics.TICKS.labels("error").inc()
                log.exception("listing rollouts failed")
            self._heartbeat = time.monotonic()
            stop.wait(poll_seconds)


def serve_health(host: str, port: int, ready: Callable[[], bool],
                 alive: Callable[[], bool] = lambda: True) -> ThreadingHTTPServer:
    """``/healthz`` (``alive``), ``/readyz`` (``ready``) and ``/metrics`` in a background
    thread."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/metrics":
                body, ctype, code = generate_latest(), CONTENT_TYPE_LATEST, 200
            elif self.path == "/healthz":
                ok = alive()
                body = b'{"status": "ok"}' if ok else b'{"status": "stalled"}'
                ctype, code = "application/json", 200 if ok else 503
            elif self.path == "/readyz":
                ok = ready()
                body = b'{"status": "ready"}' if ok else b'{"status": "not ready"}'
                ctype, code = "application/json", 200 if ok else 503
            else:
                body, ctype, code = b'{"error": "not found"}', "application/json", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
