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
once, with the reason in its status (:meth:`RolloutManager._refused`); a running one is frozen
where it is, its routing still re-applied, until the spec is fixed or it is aborted.
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
from serving.rollout.spec import RolloutSpec, SpecError, parse_rollout
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
                frozen = self._refused(name, exc, active, finished) or frozen
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
                    self._reapply_ended(name)
                except Exception:  # noqa: BLE001
                    log.exception("rollout %s: re-applying its final routing failed", name)
        return ticked

    def _refused(self, name: str, exc: SpecError, active: dict[str, int],
                 finished: list[tuple[Any, str]]) -> bool:
        """Stop a rollout whose spec ``spec.py`` refuses, once, saying why in its status: its
        spec was edited in place (``kubectl edit``; the CRD cannot express every rule here,
        e.g. a candidate equal to the baseline). A Pending one ends Failed, nothing routed or
        moved. A running one is frozen: nothing to judge it by, so its weights, routing and
        aliases stay as they are until the spec is fixed (the next tick then carries on and
        replaces the message) or someone aborts it (``marquee rollout abort``: every request to
        the baseline and the registry aliases restored, RolledBack; not while Promoting, whose
        alias moves need the spec). Retrying with a traceback on every pass told nobody. The
        per-rollout gauges follow the saved status (a frozen one, still in force, keeps its
        failed checks exported).

        Returns whether it is still running (frozen): it then counts in ``active`` under the
        strategy its document names, and its routing, rebuilt from the status and the stored
        spec document (:func:`_frozen_spec`), is re-applied like a running rollout's, so a
        router replica that restarts joins it instead of falling back to its configured
        baseline; when that document no longer says it usably, the message says what is
        missing. One that ended (aborted while frozen, or edited after it ended) goes into
        ``finished``: its routing is the one to keep in force. What the stored spec document
        still says (unvalidated) also names the series of a controller that never saw the
        spec parse (restarted, or a new leader), the abort's salt and the model whose aliases
        the abort restores."""
        read: list[dict[str, Any] | None] = []

        def document() -> dict[str, Any] | None:  # read once, and only when needed
            if not read:
                read.append(self._document(name))
            return read[0]

        def running() -> bool:
            strategy = metrics.unparsed_strategy(document())
            active[strategy] = active.get(strategy, 0) + 1
            return True

        try:
            with self._tick_lock(name):
                status = self.store.get_status(name)
                if status.phase.terminal:
                    if status.last_decision is not None and status.started is not None:
                        finished.append((status.last_decision.time, name))
                    return False
                aborted = self.store.pending_command(name) == "abort" \
                    and status.phase != Phase.PROMOTING and status.baseline_version is not None
                spec: RolloutSpec | None = None
                if status.phase == Phase.PENDING:
                    status = ended(status, Phase.FAILED, f"cannot start: {exc}", utcnow())
                    message = status.message
                elif aborted:
                    status = self._abort_unparsed(name, status, exc, document())
                    message = status.message
                else:
                    spec, missing = _frozen_spec(name, status, document())
                    message = (f"frozen at its current weights, spec refused (fix it to carry "
                               f"on): {exc}")
                    if spec is None:
                        message += (f"; its routing is not re-applied (a router replica that "
                                    f"restarts falls back to its configured baseline): "
                                    f"{missing}")
                    if status.message == message:  # exported on every pass: the series
                        # of one frozen before this controller started, or became leader
                        metrics.export_unparsed(name, status, document)
                        if spec is not None:
                            self._reapply(name, spec, status, self.clock())
                        return running()
                    status = status.model_copy(update={"message": message})
                self.store.save_status(name, status)
                # aborted: RolledBack, no failed checks (RolloutFailing resolves)
                metrics.export_unparsed(name, status, document)
                if aborted:
                    self.store.clear_command(name, "abort")
                    if status.started is not None and status.last_decision is not None:
                        finished.append((status.last_decision.time, name))
                elif spec is not None:
                    self._reapply(name, spec, status, self.clock())
        except ControllerBusy:  # a `marquee rollout run` process owns it
            return running()
        except Exception:  # noqa: BLE001 - tried again at the next pass
            metrics.TICKS.labels("error").inc()
            log.exception("rollout %s: recording its refused spec failed", name)
            return running()
        metrics.TICKS.labels("error").inc()
        log.warning("rollout %s: %s", name, message)
        return False if status.phase.terminal else running()

    def _abort_unparsed(self, name: str, status: RolloutStatus, exc: SpecError,
                        document: dict[str, Any] | None) -> RolloutStatus:
        """Carry out ``marquee rollout abort`` for a frozen rollout, without its spec: the
        registry aliases back as they were at its start (``Controller.restore_aliases``, as a
        rollback does; the model named by the document's ``modelName``), then every request to
        the baseline, as ``desired_routing`` has it for RolledBack (same salt: same router
        epoch as the ended routing re-applied, :meth:`_reapply_ended`). The status it ends
        with, not saved yet. A registry or router that fails raises: it stays frozen and is
        tried again at the next pass (both steps are idempotent)."""
        status = ended(status, Phase.ROLLED_BACK, f"aborted by user (spec refused: {exc})",
                       utcnow())
        registry, unknown = self._unparsed_registry(document)
        if unknown:
            before = ", ".join(f"{a} {v if v is not None else '(unset)'}"
                               for a, v in status.aliases_before.items())
            note = (f"; registry aliases not restored: {unknown} (at its start: "
                    f"{before or 'not recorded'})")
            status.message += note
            if status.last_decision is not None:
                status.last_decision.reason += note
        else:
            Controller(self.store, name, self.source, self.router,
                       registry).restore_aliases(status)
        routing = RoutingConfig(strategy="single", rollout=name, salt=_salt(name, document),
                                run=status.run_id,
                                baseline=Upstream(version=status.baseline_version))
        if self.router is not None:
            self.router.apply(routing)
        return status

    def _reapply_ended(self, name: str) -> None:
        """Keep the routing of ended rollout ``name`` in force (its ``Controller.tick``: all
        traffic on the version it ended on, or on ``production`` if that moved since). One
        whose spec is refused (aborted while frozen, or edited after it ended) has the same
        routing, of which the spec gives only the salt, read as its abort read it."""
        try:
            model = self.store.get(name).rollout.spec.model_name
        except SpecError:
            pass
        else:
            Controller(self.store, name, self.source, self.router, self._registry(model)).tick()
            return
        status = self.store.get_status(name)
        document = self._document(name)
        registry, _ = self._unparsed_registry(document)  # None: the rollout's own version
        # desired_routing reads nothing but the salt of an ended rollout's spec
        spec = RolloutSpec.model_construct(stickiness_salt=_salt(name, document))
        controller = Controller(self.store, name, self.source, self.router, registry)
        apply_routing(self.store, name, self.router, spec, status,
                      controller._ended_routing(spec, status))

    def _unparsed_registry(self, document: dict[str, Any] | None
                           ) -> tuple[AliasRegistry | None, str]:
        """The registry of the model a refused spec document names (its ``modelName``, the
        spec's default when absent), and "" ; or None and why it is not known (a registry per
        model, and a document that does not name one usably)."""
        if self.registry is None or hasattr(self.registry, "get_alias"):
            return self._registry(""), ""  # none, or one registry for every model
        if document is None:
            return None, "the rollout's spec could not be read to name its model"
        model = document.get("modelName", RolloutSpec.model_fields["model_name"].default)
        if not isinstance(model, str) or not 1 <= len(model) <= 253:
            return None, (f"its spec's modelName ({model!r}) does not name a model, so whose "
                          f"aliases to restore is not known; set them with `marquee registry "
                          f"alias` / `unalias`")
        return self._registry(model), ""

    def _document(self, name: str) -> dict[str, Any] | None:
        """The ``spec`` of rollout ``name`` as stored, not validated (None when it cannot be
        read, or the store cannot say): a spec refused for one field still names its model,
        strategy and salt."""
        read = getattr(self.store, "spec_document", None)
        if read is None:
            return None
        try:
            spec = read(name)
        except Exception as exc:  # noqa: BLE001 - labels and salt then fall back
            log.debug("rollout %s: its spec document could not be read: %s", name, exc)
            return None
        return spec if isinstance(spec, dict) else None

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


def _salt(name: str, document: dict[str, Any] | None) -> str:
    """The stickiness salt of a rollout whose spec is refused, for the all-baseline routing of
    its abort and the ended routing re-applied after: the document's ``stickinessSalt``, or
    the rollout's name (``RolloutSpec.salt``)."""
    salt = (document or {}).get("stickinessSalt")
    return salt if isinstance(salt, str) and salt else name


def _frozen_spec(name: str, status: RolloutStatus, document: dict[str, Any] | None
                 ) -> tuple[RolloutSpec | None, str]:
    """A spec for the routing of frozen rollout ``name`` (``desired_routing``), or None and
    what is missing. The routing needs the versions (the status's start decision), the phase,
    step and weights (the status), the strategy, the stickiness salt, and in a shadow stage
    the shadow block (sample rate, promoteTo): those three only the stored spec document still
    says (the status does not record them), so they are validated as the spec's own fields
    and taken as written; whatever else it says is not read. Nothing is guessed: an unusable
    value among them means no routing."""
    if status.baseline_version is None or status.candidate_version is None:
        return None, "its status records no start decision with both versions"
    if document is None:
        return None, "its spec could not be read"
    body: dict[str, Any] = {"baseline": {"version": status.baseline_version},
                            "candidate": {"version": status.candidate_version}}
    fields = ["strategy", "stickinessSalt"]
    if status.phase == Phase.SHADOWING or document.get("strategy") == "shadow":
        fields.append("shadow")
    body.update({key: document[key] for key in fields if key in document})
    try:
        rollout = parse_rollout({"metadata": {"name": name}, "spec": body},
                                f"its routing fields ({', '.join(fields)})")
    except SpecError as exc:
        return None, str(exc)
    return rollout.spec, ""


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
