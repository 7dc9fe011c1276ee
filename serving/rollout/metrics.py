"""Prometheus metrics of the rollout controller (``marquee_rollout_*``)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, get_args

from prometheus_client import Counter, Gauge

from serving.rollout.spec import AnalysisSpec, RolloutSpec, Strategy
from serving.rollout.status import Phase, RolloutStatus

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["TICKS", "DECISIONS", "LEADER", "ACTIVE", "CANDIDATE_WEIGHT", "PHASE", "FAILED_CHECKS",
           "FAILURE_LIMIT", "STEP", "CANDIDATE_WEIGHT_RATIO", "FINISHED_KEPT", "export_status",
           "export_unparsed", "unparsed_strategy", "forget_deleted", "forget_rollouts"]

TICKS = Counter("marquee_rollout_ticks_total",
                "Controller ticks by result (reason: ok, error).", ["reason"])
DECISIONS = Counter("marquee_rollout_decisions_total",
                    "Analysis decisions by strategy and outcome (reason: Successful, Failed, "
                    "Inconclusive).", ["strategy", "reason"])
LEADER = Gauge("marquee_rollout_leader", "1 when this controller holds the leader Lease and "
               "acts on rollouts (or runs without leader election), 0 while it stands by.")
ACTIVE = Gauge("marquee_rollout_active_rollouts", "Rollouts not yet finished, by strategy.",
               ["strategy"])
CANDIDATE_WEIGHT = Gauge("marquee_rollout_candidate_weight_percent",
                         "Candidate weight the controller last applied, by strategy.",
                         ["strategy"])

# Per rollout, labelled by the rollout's name (the ModelRollout's, unique in its namespace),
# the model, the candidate's model version and the strategy, as Flagger labels its canary
# metrics by name: two rollouts whose candidates share a version number and a strategy
# (different models, or two ModelRollouts of one model) must not share, and overwrite, one
# set of series. What the RolloutFailing alert and the dashboard's rollout panels read
# (monitoring/metrics.py).
_ROLLOUT = ["rollout", "model", "model_version", "strategy"]
PHASE = Gauge("marquee_rollout_phase", "1 for the rollout's current phase (stage label), 0 for "
              "the others.", [*_ROLLOUT, "stage"])
FAILED_CHECKS = Gauge("marquee_rollout_failed_checks",
                      "Failed analysis checks of the rollout so far (absent once it ended).",
                      _ROLLOUT)
FAILURE_LIMIT = Gauge("marquee_rollout_failure_limit",
                      "Failed checks at which the controller rolls the candidate back.", _ROLLOUT)
STEP = Gauge("marquee_rollout_step", "Index of the rollout's current step.", _ROLLOUT)
CANDIDATE_WEIGHT_RATIO = Gauge("marquee_rollout_candidate_weight_ratio",
                               "Share (0-1) of traffic routed to the candidate.", _ROLLOUT)
_PER_ROLLOUT = (PHASE, FAILED_CHECKS, FAILURE_LIMIT, STEP, CANDIDATE_WEIGHT_RATIO)

#: Finished rollouts whose series stay exported (their final phase, step and weight, as
#: Flagger and Argo Rollouts keep showing a finished rollout's status); the series of older
#: ones are removed, or a controller running for months exports every rollout it ever ran.
#: Running rollouts are always exported.
FINISHED_KEPT = 10
_finished: OrderedDict[tuple[str, ...], None] = OrderedDict()  # label sets, oldest first
#: Each rollout's label set as last exported: when it changes (a candidate resolved after
#: the rollout was exported as "pending", a rollout re-created under its name with another
#: candidate or strategy), the series of the old set are removed unless it had finished, or a
#: phantom Pending rollout stays on the dashboard for as long as the controller runs.
_current: dict[str, tuple[str, ...]] = {}
_lock = threading.Lock()


def export_status(name: str, spec: RolloutSpec, status: RolloutStatus) -> None:
    """Set the per-rollout gauges of rollout ``name`` from a status the controller just
    saved (labels in the order of ``_ROLLOUT``)."""
    labels = (name, spec.model_name, status.candidate_version or "pending", spec.strategy)
    _forget_replaced(name, labels)
    FAILURE_LIMIT.labels(*labels).set(spec.analysis.failure_limit)
    _set(labels, status)


def export_unparsed(name: str, status: RolloutStatus,
                    document: Callable[[], Mapping[str, Any]] | None = None) -> None:
    """Set the per-rollout gauges of rollout ``name`` from a status saved without a spec that
    parses (``RolloutManager._refused``: frozen, aborted to its baseline, or failed to start).
    Without this, an aborted frozen rollout went on saying Progressing with its failed checks,
    and RolloutFailing kept firing for a rollout already rolled back.

    The labels are those this run was last exported with while its spec parsed (its failure
    limit stays as exported). A controller that never saw that (restarted, or the new
    leader, since the spec was refused) labels a run that started from what can still be
    read: the candidate version of the status's start decision, the model, strategy and
    failure limit from ``document()``, the stored spec unvalidated (:func:`_unparsed_labels`).
    Without that, a frozen rollout still in force with a failing candidate exported nothing
    after a restart and RolloutFailing resolved. A run that never started (refused while
    Pending, nothing routed) exports nothing, as before."""
    version = status.candidate_version or "pending"
    with _lock:
        labels = _current.get(name)
        if labels in _finished or (labels is not None and labels[2] != version):
            labels = None  # an earlier run's (a finished run's series are kept)
    if labels is None:
        if status.started is None or document is None:
            return
        labels, limit = _unparsed_labels(name, version, document() or {})
        _forget_replaced(name, labels)
        if limit is not None:
            FAILURE_LIMIT.labels(*labels).set(limit)
    _set(labels, status)


#: Label value for what a refused spec document does not say usably (a strategy it names
#: wrongly, a modelName that is not text).
UNKNOWN = "unknown"


def _unparsed_labels(name: str, version: str, spec: Mapping[str, Any]
                     ) -> tuple[tuple[str, ...], int | None]:
    """The label set and failure limit of a rollout whose spec document ``spec`` fails
    validation, as :func:`export_status` would label it were it valid: ``modelName`` and
    ``failureLimit`` when absent are the spec's defaults (what the controller ran it with);
    a value that is not usable is :data:`UNKNOWN` (the failure limit: not exported, the
    alert's text then names none). The series are there either way: one with a failing
    candidate still in force must page."""
    model = spec.get("modelName", RolloutSpec.model_fields["model_name"].default)
    model = model if isinstance(model, str) and model else UNKNOWN
    strategy = unparsed_strategy(spec)
    analysis = spec.get("analysis", {})
    limit = analysis.get("failureLimit", AnalysisSpec.model_fields["failure_limit"].default) \
        if isinstance(analysis, Mapping) else None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        limit = None
    return (name, model, version, strategy), limit


def unparsed_strategy(spec: Mapping[str, Any] | None) -> str:
    """The ``strategy`` label of a rollout whose spec document ``spec`` fails validation (None:
    it could not be read): the strategy it names, or :data:`UNKNOWN`. A frozen rollout is
    still running, and counts in :data:`ACTIVE` under it."""
    strategy = spec.get("strategy") if spec is not None else None
    return strategy if isinstance(strategy, str) and strategy in get_args(Strategy) else UNKNOWN


def _set(labels: tuple[str, ...], status: RolloutStatus) -> None:
    """The gauges that follow the status alone (all but the failure limit)."""
    for phase in Phase:
        PHASE.labels(*labels, phase.value).set(1.0 if phase == status.phase else 0.0)
    STEP.labels(*labels).set(status.step)
    total = status.weights.baseline + status.weights.candidate
    CANDIDATE_WEIGHT_RATIO.labels(*labels).set(status.weights.candidate / total if total else 0.0)
    if status.phase.terminal:
        # a finished rollout has nothing left to fail: RolloutFailing resolves
        try:
            FAILED_CHECKS.remove(*labels)
        except KeyError:
            pass
    else:
        FAILED_CHECKS.labels(*labels).set(status.failed_checks)
    _keep_finished(labels, status.phase.terminal)


def _forget_replaced(name: str, labels: tuple[str, ...]) -> None:
    """Remove the series rollout ``name`` exported under another label set, unless that set
    finished (finished rollouts stay, bounded by :data:`FINISHED_KEPT`)."""
    with _lock:
        old = _current.get(name)
        _current[name] = labels
        if old is None or old == labels or old in _finished:
            return
    for gauge in _PER_ROLLOUT:
        gauge.remove_by_labels(dict(zip(_ROLLOUT, old, strict=True)))


def _keep_finished(labels: tuple[str, ...], finished: bool) -> None:
    """Remember the order in which rollouts finished; drop the series of those finished
    before the last :data:`FINISHED_KEPT` (a label set running again is not finished)."""
    with _lock:
        _finished.pop(labels, None)
        if not finished:
            return
        _finished[labels] = None
        while len(_finished) > FINISHED_KEPT:
            oldest = dict(zip(_ROLLOUT, _finished.popitem(last=False)[0], strict=True))
            for gauge in _PER_ROLLOUT:
                gauge.remove_by_labels(oldest)


def forget_deleted(names: Iterable[str]) -> None:
    """Drop the series of the rollouts exported here that are not in ``names`` (the store's
    rollouts now): one deleted while it ran (``kubectl delete modelrollout``) is never
    ticked again, and its last series (a failed check: RolloutFailing) would stay for as
    long as the controller runs."""
    keep = set(names)
    with _lock:
        gone = {labels for name, labels in _current.items() if name not in keep}
        gone.update(labels for labels in _finished if labels[0] not in keep)  # earlier runs
        for name in [name for name in _current if name not in keep]:
            del _current[name]
        for labels in gone:
            _finished.pop(labels, None)
    for labels in gone:
        for gauge in _PER_ROLLOUT:
            gauge.remove_by_labels(dict(zip(_ROLLOUT, labels, strict=True)))


def forget_rollouts() -> None:
    """Drop every per-rollout and per-strategy gauge: a controller that stands by must not
    keep exporting what it last saw as leader next to the leader's own series."""
    for gauge in (ACTIVE, CANDIDATE_WEIGHT, *_PER_ROLLOUT):
        gauge.clear()
    with _lock:
        _finished.clear()
        _current.clear()
