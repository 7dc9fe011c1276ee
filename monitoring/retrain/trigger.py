"""The retrain trigger's decisions: dedup, cooldown, one run at a time, every decision logged.

For each alert of a notification (and for each on-call request) ``RetrainTrigger`` decides:

    resolved alert                                    -> resolved-ignored
    firing alert not labelled retrain="true" (an
      Alertmanager route wider than the shipped one)  -> not-retrain
    (fingerprint, startsAt) already covered by a run  -> duplicate
    another alert of the same notification and model
      already started a run                           -> duplicate (covered by that run)
    a run is in flight (any model), or the child of a
      run whose trigger died still runs               -> busy
    the model started a run less than cooldown ago    -> cooldown
    otherwise                                         -> started: a run is queued

On-call may cancel the run in flight (``cancel``, ``marquee retrain --cancel RUN``): the
launcher stops it (the local child's process group, or the Kubeflow run is terminated), the
run ends failed with who canceled it and why, and nothing is rolled out (decision canceled).

A started run is executed by one background worker thread through a ``PipelineLauncher``.
When the run succeeds, an optional ``after_run`` step (``monitoring.retrain.rollout``: a shadow
rollout of a version that passed the gate) decides what follows; its decision goes into the
same log. It runs after the run has left the in-flight slot, on the same worker thread.
The run is saved succeeded with a mark (``RunRecord.after_run``) that the step's logged
decision clears: a trigger that dies in between (SIGKILL, OOM kill, a replaced pod) leaves the
mark, and the next trigger to start runs the step again, its decision saying so. That is safe
to repeat: the local step resumes a rollout of that name that has not ended (``marquee
rollout start`` does; one a surviving controller still runs ends rollout-failed naming it),
and the Kubernetes step keeps the InferenceService and the ModelRollout of that spec it finds.
State lives in a ``StateStore`` under ``<home>/retrain`` and is read and written under a lock,
so concurrent requests, and several processes sharing the home, take consistent decisions.
A state file that cannot be read stops every decision (``StateCorruptError``, 503) instead
of being replaced by an empty state that would forget the run in flight and the cooldowns.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from monitoring.errors import LaunchError, NoDataError, RunNotCancelableError, StoppedFollowing
from monitoring.retrain import metrics
from monitoring.retrain.launcher import LaunchRequest, PipelineLauncher
from monitoring.retrain.models import (
    AfterRunMark,
    CancelRequest,
    Decision,
    DecisionKind,
    ManualRequest,
    RunRecord,
    RunStatus,
    WebhookMessage,
)
from monitoring.retrain.state import (
    LEASE_SECONDS,
    PROCESS_TOKEN,
    InFlight,
    StateCorruptError,
    StateStore,
    TriggerState,
    pid_alive_here,
)

__all__ = ["RUN_ID", "RetrainTrigger", "new_run_id"]

log = logging.getLogger("marquee.retrain")

# what new_run_id makes: a cancel names a run by it, and it becomes a file name
RUN_ID = re.compile(r"rt-\d{8}T\d{6}Z-[0-9a-f]{6}")


def new_run_id(now: datetime) -> str:
    return f"rt-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def _owner_gone(mark: AfterRunMark) -> bool:
    """Whether the process that marked an after-run step due is gone. Another host's: yes (the
    trigger runs as one replica, replaced with Recreate, so that pod has ended); this host's:
    when no process of its pid exists, or that pid is now this process (a restarted container
    is pid 1 again)."""
    if mark.owner == PROCESS_TOKEN:
        return False
    return mark.host != socket.gethostname() or not pid_alive_here(mark.pid)


class RetrainTrigger:
    def __init__(
        self,
        store: StateStore,
        launcher: PipelineLauncher,
        *,
        default_model: str,
        cooldown_seconds: float = 6 * 3600,
        dedup_ttl_seconds: float = 7 * 86400,
        pipeline_params: dict | None = None,
        clock: Callable[[], float] = time.time,
        after_run: Callable[[RunRecord], Decision | None] | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.store = store
        self.launcher = launcher
        self.default_model = default_model
        self.cooldown = timedelta(seconds=cooldown_seconds)
        self.dedup_ttl = timedelta(seconds=dedup_ttl_seconds)
        self.pipeline_params = dict(pipeline_params or {})
        self._clock = clock
        self.after_run = after_run
        self.lease_seconds = lease_seconds
        # (run, what to do: "launch", "follow" or "after-run", the dead owner's mark of an
        # after-run step done again)
        self._queue: queue.Queue[tuple[RunRecord, str, AfterRunMark | None] | None] = \
            queue.Queue()
        self._pending = 0  # runs queued or running in this process
        self._last_unauthorized: datetime | None = None  # the last 401 written to the log
        self._unauthorized_since = 0  # 401s since then (counted, not logged)
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._canceled: dict[str, str] = {}  # run id -> why, for runs of this process

    # lifecycle ------------------------------------------------------------------------
    def start(self) -> RetrainTrigger:
        if self._worker is None:
            self.store.problem()  # a corrupt state file is logged at start-up already
            try:
                # A run whose trigger is gone is settled now, not whenever the next alert or
                # request happens to arrive: until then it showed as running and held the
                # in-flight slot.
                with self.store.transaction() as state:
                    resumed = self._clear_stale(state)
                self._follow_again(resumed)
                self._resume_after_runs()
            except StateCorruptError:
                pass  # nothing can be resumed or decided until the file is repaired
            except OSError as exc:  # the next decision tries again
                log.error("the state under %s could not be checked at start-up: %s",
                          self.store.root, exc)
            resync = getattr(self.after_run, "resync_started", None)
            if callable(resync):  # its InferenceServices, to a template a helm upgrade changed
                resync(self.store.runs)
            self._worker = threading.Thread(target=self._work, name="retrain-worker",
                                            daemon=True)
            self._worker.start()
        return self

    def _can_follow(self, run: RunRecord) -> bool:
        """Whether the launcher can follow ``run`` again: a Kubeflow run by its recorded id,
        else looked up by its name (``adopt``)."""
        return callable(getattr(self.launcher, "follow", None)) and bool(
            run.pipeline_run_id or callable(getattr(self.launcher, "adopt", None)))

    def _follow_again(self, run: RunRecord | None) -> None:
        """Queue ``run``, claimed by ``_clear_stale`` (and committed), to be followed."""
        if run is None:
            return
        with self._cond:
            self._pending += 1
        self._queue.put((run, "follow", None))

    def _resume_after_runs(self) -> None:
        """Succeeded runs whose after-run step never got its decision logged (the trigger that
        ran them died in between) get the step again, on the worker; before, the version was
        registered and never rolled out, and nothing said so. A run whose decision made it to
        the log (only the mark's clearing was lost) just has its mark cleared. A process
        without an after-run step (``marquee retrain --local``) leaves them alone."""
        if self.after_run is None:
            return
        decided: set[str] | None = None
        again: list[tuple[RunRecord, AfterRunMark]] = []
        with self.store.transaction():  # one process claims each: several may start at once
            for run in self.store.runs():
                mark = run.after_run
                if run.status is not RunStatus.SUCCEEDED or mark is None or \
                        not _owner_gone(mark):
                    continue
                if decided is None:
                    decided = {d.run_id for d in self.store.decisions()
                               if d.source == "auto-rollout" and d.run_id}
                if run.run_id in decided:
                    run.after_run = None
                    self.store.save_run(run)
                    continue
                run.after_run = self._mark()
                self.store.save_run(run)
                again.append((run, mark))
        for run, mark in again:
            log.warning("run %s: the trigger that ran it (pid %s on %s) exited before its "
                        "after-run step was decided; running the step again", run.run_id,
                        mark.pid, mark.host)
            with self._cond:
                self._pending += 1
            self._queue.put((run, "after-run", mark))

    def _mark(self) -> AfterRunMark:
        return AfterRunMark(pid=os.getpid(), host=socket.gethostname(), owner=PROCESS_TOKEN,
                            since=self._now())

    def close(self, timeout: float | None = None) -> None:
        """Stop the worker; the after-run step stops what it started (model servers,
        rollout controllers) first, and a launcher following a remote run stops waiting,
        so a worker waiting on one of them returns. That run goes on: it is handed over to
        the next trigger (``_hand_over``), not failed."""
        for part in (self.after_run, self.launcher):
            closer = getattr(part, "close", None)
            if callable(closer):
                closer()
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout)
            if self._worker.is_alive():  # stuck in a call to Kubeflow (up to its API timeout)
                self._hand_over_in_flight()
            self._worker = None

    def _hand_over_in_flight(self) -> None:
        """The worker did not return within ``close``'s timeout and the process is about to
        exit: a remote run it follows is handed over here, as the worker would have done, so
        the next trigger need not wait out the lease. A local run dies with the process."""
        try:
            flight = self.store.read().in_flight
            if flight is None or flight.owner != PROCESS_TOKEN or flight.handed_over:
                return  # another process's claim, or handed over already
            run = self.store.load_run(flight.run_id)
            if run.status is RunStatus.RUNNING and self._can_follow(run):
                self._hand_over(run)
        except (OSError, ValueError, StateCorruptError) as exc:
            log.warning("the run in flight could not be handed over: %s", exc)

    @property
    def worker_alive(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def not_ready(self) -> str | None:
        """Why the trigger cannot take decisions now (readiness), else None."""
        if not self.worker_alive:
            return "the retrain worker thread is not running"
        return self.store.problem()

    @property
    def worker_died(self) -> bool:
        """Started and not closed, yet its worker thread has ended: nothing will run again,
        so the liveness probe fails and Kubernetes restarts the container."""
        return self._worker is not None and not self._worker.is_alive()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no run is queued or running in this process.

        Waits in slices of half a second: a signal (SIGTERM to ``marquee retrain``) that the
        kernel hands to one of the other threads does not interrupt the main thread's lock
        wait, and its Python handler only runs once the main thread wakes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=timezone.utc)

    # decisions ------------------------------------------------------------------------
    def _clear_stale(self, state: TriggerState) -> RunRecord | None:
        """Settle a claim whose owner is gone: it died, or it stopped and handed its run over.
        A run that goes on without it and that the launcher can follow (a Kubeflow run) is
        claimed by this process and returned, to be followed once the state is committed
        (``_follow_again``), instead of being marked failed: its version still deserves its
        rollout, and no second run starts beside it. A run whose trigger died while
        submitting it (Kubeflow may have created it before its id was recorded) is looked up
        by its name on the worker (``adopt``): followed when found, failed saying so when
        not. Any other run ends failed and the claim is released, unless the run's child
        process group still runs."""
        flight = state.in_flight
        if flight is None or flight.owner_alive(self._now(), self.lease_seconds):
            return None
        if flight.child_running():  # its trigger died, its pipeline did not: still busy
            log.warning("run %s: owner process %s is gone but its child process group "
                        "%s still runs; the run stays in flight", flight.run_id,
                        flight.pid, flight.child_pid)
            return None
        gone = "handed the run over" if flight.handed_over else "is gone"
        try:
            run = self.store.load_run(flight.run_id)
        except FileNotFoundError:
            run = None
        except (OSError, ValueError) as exc:
            # Damaged (a write cut short by a power loss): kept as it is for whoever looks
            # into it, and the claim is released all the same. Before, the parse error
            # escaped every decision (500s for good) and the trigger's start-up.
            log.error("run %s: its record %s is unreadable (%s); left as it is",
                      flight.run_id, self.store.runs_dir / f"{flight.run_id}.json",
                      " ".join(str(exc).split())[:300])
            run = None
        if run is not None and run.status is RunStatus.RUNNING and self._can_follow(run):
            state.in_flight = InFlight.mine(run.run_id, run.model, flight.since, self._now())
            if run.pipeline_run_id:
                log.warning("run %s: owner process %s %s; following pipeline run %s again",
                            run.run_id, flight.pid, gone, run.pipeline_run_id)
            else:
                log.warning("run %s: owner process %s %s before it recorded a pipeline "
                            "run; looking for the one it may have submitted", run.run_id,
                            flight.pid, gone)
            return run
        log.warning("run %s: owner process %s %s; no longer in flight", flight.run_id,
                    flight.pid, gone)
        if run is not None and run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
            run.status, run.finished_at = RunStatus.FAILED, self._now()
            run.error = f"owner process {flight.pid} exited during the run" + (
                f" (it handed the run over, which the {getattr(self.launcher, 'name', '?')} "
                "launcher cannot follow)" if flight.handed_over else "")
            try:
                self.store.save_run(run)
            except OSError as exc:
                log.error("run %s: not marked failed: %s", flight.run_id, exc)
        state.in_flight = None
        return None

    def _refusal(self, state: TriggerState, model: str, now: datetime,
                 force: bool = False) -> tuple[DecisionKind, str] | None:
        if state.in_flight is not None:
            f = state.in_flight
            detail = f"run {f.run_id} for {f.model} is in flight since {f.since.isoformat()}"
            if f.child_pid is not None and not f.owner_alive(now, self.lease_seconds):
                detail += (f"; its child process group {f.child_pid} is still running although "
                           f"the trigger that started it (pid {f.pid}) is gone")
            return DecisionKind.BUSY, detail
        last = state.last_started.get(model)
        if not force and last is not None and now - last < self.cooldown:
            until = last + self.cooldown
            return DecisionKind.COOLDOWN, (f"{model} started a run at {last.isoformat()}; "
                                           f"cooldown until {until.isoformat()}")
        return None

    def _start(self, state: TriggerState, model: str, now: datetime, reason: str,
               source: str, alerts: list[str]) -> RunRecord:
        run = RunRecord(run_id=new_run_id(now), model=model, reason=reason, source=source,
                        alerts=alerts, launcher=getattr(self.launcher, "name", ""),
                        requested_at=now)
        state.in_flight = InFlight.mine(run.run_id, model, now, now)
        state.last_started[model] = now
        self.store.save_run(run)
        return run

    def handle_webhook(self, message: WebhookMessage) -> list[Decision]:
        """Decide on every alert of ``message``; queue at most one run per model."""
        decisions: list[Decision] = []
        runs: list[RunRecord] = []
        with self.store.transaction() as state:
            now = self._now()
            state.prune(now, self.dedup_ttl)
            resumed = self._clear_stale(state)
            started_here: dict[str, RunRecord] = {}
            firing = [a for a in message.alerts
                      if a.status == "firing" and a.labels.get("retrain") == "true"]
            for alert in message.alerts:
                model = alert.labels.get("model") or self.default_model
                base = dict(time=now, source="webhook", model=model,
                            alertname=alert.alertname, fingerprint=alert.fingerprint,
                            starts_at=alert.startsAt, group_key=message.groupKey)
                if alert.status == "resolved":
                    decisions.append(Decision(decision=DecisionKind.RESOLVED_IGNORED,
                                              detail="resolved alerts start nothing", **base))
                    continue
                if alert.labels.get("retrain") != "true":
                    decisions.append(Decision(
                        decision=DecisionKind.NOT_RETRAIN, **base,
                        detail=f"alert {alert.alertname} is labelled retrain="
                               f"{alert.labels.get('retrain')!r}, not 'true': it starts "
                               "nothing (only retrain-worthy alerts are routed here)"))
                    continue
                if not self._trains(model):
                    decisions.append(Decision(decision=DecisionKind.OTHER_MODEL,
                                              detail=self._other_model(model), **base))
                    continue
                key = alert.dedup_key
                if key in state.covered:
                    run_id = state.covered[key][0]
                    decisions.append(Decision(decision=DecisionKind.DUPLICATE, run_id=run_id,
                                              detail=f"already covered by run {run_id}",
                                              **base))
                    continue
                if model in started_here:
                    run = started_here[model]
                    state.covered[key] = (run.run_id, now)
                    decisions.append(Decision(decision=DecisionKind.DUPLICATE,
                                              run_id=run.run_id,
                                              detail=f"covered by run {run.run_id} started for "
                                                     "this notification", **base))
                    continue
                refusal = self._refusal(state, model, now)
                if refusal is not None:
                    decisions.append(Decision(decision=refusal[0], detail=refusal[1], **base))
                    continue
                names = sorted({a.alertname for a in firing
                                if (a.labels.get("model") or self.default_model) == model})
                summary = alert.annotations.get("summary", "")
                run = self._start(state, model, now,
                                  f"{', '.join(names)}: {summary}".strip(": "), "webhook",
                                  names)
                started_here[model] = run
                runs.append(run)
                state.covered[key] = (run.run_id, now)
                decisions.append(Decision(decision=DecisionKind.STARTED, run_id=run.run_id,
                                          detail=f"run {run.run_id} queued", **base))
        self._follow_again(resumed)
        self._record(decisions, runs)
        return decisions

    def handle_manual(self, request: ManualRequest) -> Decision:
        """An on-call request: the same busy and cooldown rules (``force`` skips cooldown)."""
        model = request.model or self.default_model
        runs: list[RunRecord] = []
        with self.store.transaction() as state:
            now = self._now()
            resumed = self._clear_stale(state)
            who = f" by {request.requested_by}" if request.requested_by else ""
            base = dict(time=now, source="manual", model=model)
            refusal = self._refusal(state, model, now, force=request.force)
            if not self._trains(model):
                decision = Decision(decision=DecisionKind.OTHER_MODEL,
                                    detail=self._other_model(model), **base)
            elif refusal is not None:
                decision = Decision(decision=refusal[0], detail=refusal[1], **base)
            else:
                run = self._start(state, model, now, f"manual{who}: {request.reason}",
                                  "manual", [])
                runs.append(run)
                decision = Decision(decision=DecisionKind.STARTED, run_id=run.run_id,
                                    detail=f"run {run.run_id} queued"
                                           + (" (cooldown skipped)" if request.force else ""),
                                    **base)
        self._follow_again(resumed)
        self._record([decision], runs)
        return decision

    def cancel(self, run_id: str, request: CancelRequest) -> Decision:
        """Stop the run in flight ``run_id``: it ends failed, naming who canceled it and why,
        and nothing is rolled out. Refused (404) for a run this trigger never started, (409)
        for one that has ended or that another trigger process runs."""
        if not RUN_ID.fullmatch(run_id):
            raise NoDataError(f"no run {run_id!r}: run ids look like rt-20260101T000000Z-"
                              "0a1b2c (marquee incidents lists them)")
        stop = self._stopper()  # before anything is recorded: a refused cancel leaves no trace
        who = f" by {request.requested_by}" if request.requested_by else ""
        with self.store.transaction() as state:
            now = self._now()
            try:
                run = self.store.load_run(run_id)
            except (OSError, ValueError):
                raise NoDataError(f"no run {run_id} in {self.store.root}") from None
            if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
                raise RunNotCancelableError(
                    f"run {run_id} has already ended {run.status.value}"
                    + (f" (version {run.model_version}, gate {run.gate_decision})"
                       if run.model_version else "") + ": nothing to cancel"
                    + ("; a rollout it started stops with `marquee rollout abort <name>`"
                       if run.status is RunStatus.SUCCEEDED else ""))
            flight = state.in_flight
            if flight is None or flight.run_id != run_id or flight.owner != PROCESS_TOKEN:
                raise RunNotCancelableError(
                    f"run {run_id} is not run by this trigger process (pid "
                    f"{flight.pid if flight and flight.run_id == run_id else '?'}): it cannot "
                    "stop it")
            detail = f"canceled{who}: {request.reason}"
            with self._cond:
                self._canceled[run_id] = detail
        stopped = bool(stop(run.pipeline_run_id))
        decision = Decision(time=now, decision=DecisionKind.CANCELED, source="manual",
                            model=run.model, run_id=run_id,
                            detail=f"run {run_id} {detail}" + (
                                "" if stopped else " (nothing was running to stop: not launched "
                                "yet, or its launch has just ended)"))
        self._record([decision], [])
        return decision

    def _stopper(self) -> Callable[[str | None], bool]:
        """The launcher's ``stop(pipeline_run_id)`` (False when nothing runs yet); a launcher
        without one cannot have its runs canceled."""
        stop = getattr(self.launcher, "stop", None)
        if not callable(stop):
            raise RunNotCancelableError(f"the {getattr(self.launcher, 'name', '?')} launcher "
                                        "cannot stop a run")
        return stop

    def _cancel_detail(self, run_id: str) -> str | None:
        with self._cond:
            return self._canceled.get(run_id)

    def _trains(self, model: str) -> bool:
        """Whether a run for ``model`` would train ``model``: the pipeline launchers train the
        configured model whatever the alert names (``trains_requested_model = False``)."""
        return model == self.default_model or \
            getattr(self.launcher, "trains_requested_model", True)

    def _other_model(self, model: str) -> str:
        # its launcher trains the configured model whatever the alert says: a run for another
        # model's alert would retrain this one, outside this one's cooldown
        return (f"this trigger retrains {self.default_model!r} only; model {model!r} starts "
                "nothing")

    def record_unauthorized(self, detail: str) -> Decision:
        """Log a refused request: at most one line a minute (the metric counts every one), so
        that requests without a token cannot rotate the real decisions out of the log."""
        now = self._now()
        decision = Decision(time=now, decision=DecisionKind.UNAUTHORIZED, source="webhook",
                            detail=detail)
        last = self._last_unauthorized
        if last is not None and (now - last).total_seconds() < 60:
            self._unauthorized_since += 1
            metrics.DECISIONS.labels(reason=decision.decision.value).inc()
            return decision
        if self._unauthorized_since:
            decision.detail += f" (and {self._unauthorized_since} more in the last minute)"
        self._last_unauthorized, self._unauthorized_since = now, 0
        self._record([decision], [])
        return decision

    def _record(self, decisions: list[Decision], runs: list[RunRecord]) -> None:
        """Append what was decided to the decision log, count it and queue the runs. The
        runs are already committed in the state (the claim, the cooldown, the covered
        alerts): they are queued even when the log cannot be written (the error still
        reaches the caller), or nothing would ever run them and release the claim."""
        try:
            self.store.append_decisions(decisions)
        finally:
            for d in decisions:
                metrics.DECISIONS.labels(reason=d.decision.value).inc()
                log.info("decision=%s model=%s alert=%s run=%s %s", d.decision.value,
                         d.model, d.alertname, d.run_id, d.detail)
            for run in runs:
                metrics.LAST_STARTED.set(run.requested_at.timestamp())
                with self._cond:
                    self._pending += 1
                self._queue.put((run, "launch", None))
            if runs and self._worker is None:
                log.warning("run queued but the worker is not started (call start())")

    # the worker -------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.lease_seconds / 5)
            except queue.Empty:
                self._pick_up()
                continue
            if item is None:
                return
            run, mode, mark = item
            try:
                if mode == "after-run":
                    self._after(run, mark)
                else:
                    self._execute(run, resume=mode == "follow")
            except Exception:  # noqa: BLE001 - e.g. the state volume: the worker must go on
                log.exception("run %s: the trigger's own bookkeeping failed", item[0].run_id)
                self._abandon(item[0])
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def _pick_up(self) -> None:
        """On the idle worker, every lease / 5: a claim another trigger left (handed over as
        it stopped, or stale because it died) is settled by ``_clear_stale`` without waiting
        for an alert. In a rolling update the new pod is up before the old one stops: this is
        how it follows the run the old one hands over."""
        try:
            flight = self.store.read().in_flight
            if flight is None or flight.owner_alive(self._now(), self.lease_seconds) or \
                    flight.child_running():
                return  # nothing to settle: the state is not rewritten
            with self.store.transaction() as state:
                resumed = self._clear_stale(state)
        except (OSError, StateCorruptError) as exc:  # the next check, or decision, tries again
            log.warning("the in-flight claim could not be checked: %s", exc)
            return
        self._follow_again(resumed)

    def _abandon(self, run: RunRecord) -> None:
        """After a failure outside the launcher (a full or broken state volume, a bug): mark
        the run failed and release this process's claim, so that later alerts can start runs
        instead of being refused as busy for as long as this process lives. Best effort: the
        state volume may be what failed."""
        metrics.RUNS_IN_FLIGHT.set(0)
        try:
            self._release_claim(run.run_id)
            if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
                run.status, run.finished_at = RunStatus.FAILED, self._now()
                run.error = run.error or "the trigger's own bookkeeping failed (see its log)"
                self.store.save_run(run)
        except (OSError, StateCorruptError) as exc:
            log.error("run %s: its claim could not be released: %s", run.run_id, exc)

    def _hand_over(self, run: RunRecord) -> None:
        """The trigger stops while ``run`` goes on in Kubeflow: it stays running and its claim
        is marked handed over, so the next trigger follows it (``_clear_stale``) at once
        instead of after a lease, or failing it as a run whose owner died."""
        with self.store.transaction() as state:
            if state.in_flight is not None and state.in_flight.run_id == run.run_id:
                state.in_flight.handed_over = self._now()
        log.warning("run %s: the trigger stops while pipeline run %s goes on; handed over to "
                    "the next trigger", run.run_id, run.pipeline_run_id or
                    "(not recorded: it will be looked up by name)")

    def _release_claim(self, run_id: str) -> None:
        """Clear the in-flight record if it is still ``run_id``'s."""
        with self.store.transaction() as state:
            if state.in_flight is not None and state.in_flight.run_id == run_id:
                state.in_flight = None

    def _submitted(self, run: RunRecord, pipeline_run_id: str) -> None:
        run.pipeline_run_id = pipeline_run_id
        self.store.save_run(run)
        log.info("run %s: submitted as pipeline run %s", run.run_id, pipeline_run_id)
        if self._cancel_detail(run.run_id) is not None:  # canceled while it was submitted
            self._stopper()(pipeline_run_id)

    def _child_started(self, run_id: str, pid: int) -> None:
        """Record the launcher's child with the claim: should this process die without
        stopping it, a restarted trigger sees it still running and starts no second run."""
        try:
            with self.store.transaction() as state:
                if state.in_flight is not None and state.in_flight.run_id == run_id:
                    state.in_flight.child_pid = pid
        except (OSError, StateCorruptError) as exc:  # the run goes on; it is still claimed
            log.warning("run %s: child pid %s not recorded: %s", run_id, pid, exc)
        if self._cancel_detail(run_id) is not None:  # canceled while the child started
            self._stopper()(None)

    def _execute(self, run: RunRecord, resume: bool = False) -> None:
        """Launch ``run`` and wait for the launcher; ``resume``: follow the pipeline run it
        already submitted (``run.pipeline_run_id``, else the one the launcher finds)."""
        if not resume:
            run.status, run.started_at = RunStatus.RUNNING, self._now()
            self.store.save_run(run)
        metrics.RUNS_IN_FLIGHT.set(1)
        beating = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(run.run_id, beating),
                                name="retrain-heartbeat", daemon=True)
        beat.start()
        t0 = time.monotonic()
        handed_over = False
        log.info("run %s: %s (%s) for %s: %s", run.run_id,
                 "following again" if resume else "launching", run.launcher, run.model,
                 run.reason)
        try:
            if self._cancel_detail(run.run_id) is not None:
                raise LaunchError("not launched")
            request = LaunchRequest(
                run_id=run.run_id, model=run.model, reason=run.reason,
                alerts=tuple(run.alerts), params=self.pipeline_params,
                on_submitted=lambda rid: self._submitted(run, rid),
                on_child=lambda pid: self._child_started(run.run_id, pid),
                started_ago=self._clock() - run.started_at.timestamp() if run.started_at
                else None)
            if resume and run.pipeline_run_id:
                result = self.launcher.follow(run.pipeline_run_id)  # type: ignore[attr-defined]
            elif resume:  # its trigger died before recording the pipeline run's id
                result = self.launcher.adopt(request)  # type: ignore[attr-defined]
            else:
                result = self.launcher.launch(request)
        except Exception as exc:  # noqa: BLE001 - any launcher failure ends the run as failed
            if isinstance(exc, StoppedFollowing) and self._cancel_detail(run.run_id) is None:
                handed_over = True  # it goes on in Kubeflow: the next trigger follows it
            else:
                run.status, run.error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
                log.error("run %s failed: %s", run.run_id, run.error)
        else:
            run.status = RunStatus.SUCCEEDED
            run.pipeline_run_id = result.pipeline_run_id or run.pipeline_run_id
            run.model_version = result.model_version
            run.gate_decision = result.gate_decision
            log.info("run %s succeeded: pipeline run %s, version %s, gate %s", run.run_id,
                     result.pipeline_run_id, result.model_version, result.gate_decision)
        finally:
            canceled = self._cancel_detail(run.run_id)
            if canceled is not None and run.status is RunStatus.FAILED:
                run.error = f"{canceled} ({run.error})"
            beating.set()
            beat.join()
            metrics.RUNS_IN_FLIGHT.set(0)
            if handed_over:
                self._hand_over(run)
            else:
                run.finished_at = self._now()
                if run.status is RunStatus.SUCCEEDED and canceled is None and \
                        self.after_run is not None:
                    run.after_run = self._mark()  # cleared once the step's decision is logged
                self.store.save_run(run)
                self._release_claim(run.run_id)
                metrics.RUNS.labels(reason=run.status.value).inc()
                metrics.RUN_DURATION.observe(time.monotonic() - t0)
        if handed_over:
            return
        if canceled is not None:
            with self._cond:
                self._canceled.pop(run.run_id, None)
            if run.status is RunStatus.SUCCEEDED and self.after_run is not None:
                # it ended before the launcher could stop it: its version is registered, but
                # what on-call canceled is not rolled out
                self._record([Decision(
                    time=self._now(), decision=DecisionKind.ROLLOUT_SKIPPED,
                    source="auto-rollout", model=run.model, run_id=run.run_id,
                    detail=f"run {run.run_id} {canceled}, after it had ended: version "
                           f"{run.model_version} is registered, not rolled out")], [])
            return
        if run.status is RunStatus.SUCCEEDED and self.after_run is not None:
            self._after(run)

    def _heartbeat(self, run_id: str, stop: threading.Event) -> None:
        """Renew this process's claim on ``run_id`` until ``stop``: a trigger in another pod
        sharing the state (a replaced pod) sees the claim go stale only after this process
        is gone."""
        while not stop.wait(self.lease_seconds / 5):
            try:
                with self.store.transaction() as state:
                    flight = state.in_flight
                    if flight is None or flight.run_id != run_id:
                        return
                    flight.heartbeat = self._now()
            except (OSError, StateCorruptError) as exc:  # the next renewal may work
                log.warning("run %s: heartbeat not written: %s", run_id, exc)

    def _after(self, run: RunRecord, dead: AfterRunMark | None = None) -> None:
        """The after-run step (e.g. the shadow rollout); it never fails the run. ``dead``: the
        mark of a trigger that died before this step's decision was logged (done again)."""
        try:
            decision = self.after_run(run)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - recorded, the run stays succeeded
            log.exception("run %s: after-run step failed", run.run_id)
            decision = Decision(time=self._now(), decision=DecisionKind.ROLLOUT_FAILED,
                                source="auto-rollout", model=run.model, run_id=run.run_id,
                                detail=f"{type(exc).__name__}: {exc}")
        if decision is not None:
            if dead is not None:
                decision.detail = (f"after a restart (the trigger that ran the run, pid "
                                   f"{dead.pid} on {dead.host}, exited at "
                                   f"{dead.since.isoformat()} or later, before its rollout "
                                   f"was decided): {decision.detail}")
            self.store.save_run(run)  # the step may have recorded what it started (run.rollout)
            self._record([decision], [])
        run.after_run = None  # decided (and logged): a restart need not do it again
        self.store.save_run(run)
