"""How the trigger starts the training pipeline: a narrow ``PipelineLauncher`` interface.

* ``KfpLocalLauncher`` runs the pipeline on this machine through
  ``pipelines.run.run_local(settings, params)`` (kfp.local) in a child process
  (``python -m pipelines.run``) and waits for it, at most ``timeout_seconds``.
* ``KubeflowLauncher`` submits a run to the Kubeflow host through
  ``pipelines.run.submit(settings, params)``, then follows it (``kfp.Client.get_run``) until
  it ends and reads the version it registered, and that version's gate decision, from the
  registry (the version tagged ``pipeline_run_uid`` = the Kubeflow run's id). So a run in
  the cluster is "running" while Kubeflow runs it, and a version that passes the gate goes
  into a shadow rollout as it does locally. The run is named after the trigger's run
  (``kubeflow_run_name``), so a trigger that never got the Kubeflow run's id back finds the
  run by that name.
* ``CommandLauncher`` runs a command (for example ``marquee pipeline run``) in a child
  process and waits for it; its last stdout line, when it is a JSON object, may carry
  ``run_id``, ``version`` and ``gate_decision``.

``pipelines`` is imported inside ``launch`` only: the trigger starts without the training
stack, and a missing one is reported as a failed run, not as an import error at start-up.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from marquee.errors import redact_uri
from marquee.settings import Settings
from monitoring.errors import LaunchError, StoppedFollowing
from pipelines.logs import ANSI, exception_lines

__all__ = [
    "LaunchRequest",
    "LaunchResult",
    "PipelineLauncher",
    "KfpLocalLauncher",
    "KubeflowLauncher",
    "CommandLauncher",
    "KUBEFLOW_TERMINAL_STATES",
    "kubeflow_run_name",
]

log = logging.getLogger("marquee.retrain.launcher")

OUTPUT_TAIL = 400  # lines of a child's stdout and of its stderr kept for its result and error

# kfp_server_api V2beta1RuntimeState values after which a run never changes again
KUBEFLOW_TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})


def kubeflow_run_name(run_id: str) -> str:
    """The display name of the Kubeflow run submitted for the trigger's run ``run_id``:
    ``PIPELINE_NAME`` (``pipelines.training``, not imported here) and that id, 51 characters
    (under Kubernetes' 63). Deterministic, so that the run can be found by it."""
    return f"marquee-training-retrain-{run_id}"


@dataclass(frozen=True)
class LaunchRequest:
    """What the trigger asks for: one retraining run of ``model``."""

    run_id: str  # the trigger's id of the run (also in the run record)
    model: str
    reason: str
    alerts: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    # called with the pipeline run's id as soon as a remote run is submitted, so the trigger
    # records it before the run ends (and can follow it again after a restart)
    on_submitted: Callable[[str], None] | None = field(default=None, compare=False)
    # called with a local child's pid (the leader of its own process group) once it runs
    on_child: Callable[[int], None] | None = field(default=None, compare=False)
    # seconds since a resumed run was launched (by the trigger's clock), for how long a
    # lookup of its Kubeflow run may still wait for a create Kubeflow had not answered
    started_ago: float | None = None


@dataclass(frozen=True)
class LaunchResult:
    pipeline_run_id: str | None = None
    model_version: str | None = None
    gate_decision: str | None = None
    detail: str = ""


@runtime_checkable
class PipelineLauncher(Protocol):
    """Starts one training pipeline run; ``launch`` blocks until the launcher is done with it
    (run finished for a local run, run submitted for a remote one). Raises on failure."""

    name: str

    def launch(self, request: LaunchRequest) -> LaunchResult: ...


def _first_attr(obj: Any, *names: str) -> str | None:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return str(getattr(value, "value", value))
    return None


def _looks(n: int) -> str:
    return f"{n} look" if n == 1 else f"{n} looks"


#: A gateway's answers that say nothing of whether Kubeflow's API server created the run: it
#: had the request and the gateway gave up on it (502 Bad Gateway, 504 Gateway Timeout).
_GATEWAY_GAVE_UP = frozenset({502, 504})


def _unanswered(exc: BaseException) -> str | None:
    """What a failed create call said, in one line, when Kubeflow may have created the run all
    the same: no answer within the API timeout, a gateway in front of the API server that gave
    up on it (``ApiException`` 502 or 504: Istio's or ingress-nginx's upstream timeout), or a
    connection that dropped mid-request (urllib3's ``ProtocolError``). None for any other
    failure (Kubeflow's own refusal: the run was not created)."""
    if isinstance(exc, TimeoutError):
        return str(exc)
    status = getattr(exc, "status", None)
    dropped = False
    try:
        from urllib3.exceptions import ProtocolError

        dropped = isinstance(exc, ProtocolError)
    except ImportError:  # kfp's client brings urllib3; without it nothing raised this
        pass
    if (isinstance(status, int) and status in _GATEWAY_GAVE_UP) or dropped:
        return f"{type(exc).__name__} {' '.join(str(exc).split())}"[:500]
    return None


def _result_of(result: Any) -> LaunchResult:
    """``pipelines.run.RunResult`` (or a dict of the same fields) → LaunchResult."""
    return LaunchResult(
        pipeline_run_id=_first_attr(result, "run_id"),
        model_version=_first_attr(result, "version", "model_version"),
        gate_decision=_first_attr(result, "gate_decision", "decision", "gate"),
    )


class KfpLocalLauncher:
    """Runs the training pipeline locally (kfp.local) through ``pipelines.run.run_local``.

    The run happens in a child process, ``python -m pipelines.run`` with these settings and
    parameters in its environment (``pipelines.run.RUN_SPEC_ENV``, not imported here: the
    trigger starts without the training stack), started and bounded by the command
    launcher: when it has not ended within ``timeout_seconds`` it is stopped with its whole
    process group (kfp.local's step processes too) and the run fails, instead of holding the
    trigger's worker and the model's in-flight claim. A failed run's error quotes the
    exception lines of its output (the failing step's first).
    """

    trains_requested_model = False  # the pipeline trains MARQUEE_MODEL_NAME

    name = "kfp-local"

    def __init__(self, settings: Settings, params: Mapping[str, Any] | None = None,
                 timeout_seconds: float | None = None) -> None:
        self.settings = settings
        self.params = dict(params or {})
        self.timeout_seconds = timeout_seconds
        self._child = CommandLauncher([sys.executable, "-m", "pipelines.run"],
                                      timeout_seconds=timeout_seconds,
                                      label="the local pipeline run (python -m pipelines.run)")

    def launch(self, request: LaunchRequest) -> LaunchResult:
        spec = {"settings": self.settings.model_dump(mode="json"),
                "params": {**self.params, **request.params}}
        return self._child.launch(
            request, env={"MARQUEE_PIPELINE_RUN_SPEC": json.dumps(spec, default=str)})

    def close(self) -> None:
        """Stop a running local run (its child process and the steps it started)."""
        self._child.close()

    def stop(self, pipeline_run_id: str | None = None) -> bool:
        """Stop the run in progress (on-call canceled it): its launch then fails."""
        return self._child.stop(pipeline_run_id)


class KubeflowLauncher:
    """Submits a Kubeflow Pipelines run through ``pipelines.run.submit`` and follows it.

    ``wait=False`` returns at submission (no version, no gate decision: nothing is rolled
    out). ``client`` is a ``kfp.Client``; None makes one for ``settings.kubeflow_host``.

    Every call to Kubeflow (making the client, which asks the API's health; submitting; each
    read of the run's state) gets ``api_timeout_seconds``: ``kfp.Client`` sets no timeout on
    its HTTP calls, so an API that stops answering would otherwise hang the trigger's worker
    while its heartbeat thread keeps the run claimed. An unanswered read counts as a failed
    read (``max_poll_errors`` in a row fail the run, which releases the claim). After an
    unanswered submission (no answer within ``api_timeout_seconds``, a gateway's 502 or 504,
    a connection dropped mid-request: :func:`_unanswered`) the run is looked up by its name
    (``find``), every ``poll_seconds`` for ``create_grace_seconds``: an API server that timed
    out on the create often persists the run seconds later (the request was queued, not
    lost), and failing that run would release the claim while it trains, so a later alert
    could start a second one. One that appears is followed; when none has by the end, the run
    fails, and the error names the run to look for in the UI (Kubeflow may still create it).
    """

    trains_requested_model = False  # the pipeline trains MARQUEE_MODEL_NAME

    name = "kubeflow"

    def __init__(self, settings: Settings, params: Mapping[str, Any] | None = None,
                 client: Any = None, *, wait: bool = True, timeout_seconds: float = 12 * 3600,
                 poll_seconds: float = 30.0, max_poll_errors: int = 10,
                 api_timeout_seconds: float = 60.0,
                 create_grace_seconds: float = 300.0) -> None:
        if not settings.kubeflow_host and client is None:
            raise LaunchError("the kubeflow launcher needs settings.kubeflow_host "
                              "(MARQUEE_KUBEFLOW_HOST)")
        self.settings = settings
        self.params = dict(params or {})
        self.client = client
        self.wait = wait
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self.max_poll_errors = max_poll_errors
        self.api_timeout_seconds = api_timeout_seconds
        self.create_grace_seconds = create_grace_seconds
        self._stop = threading.Event()

    def _client(self) -> Any:
        if self.client is None:
            import kfp

            self.client = kfp.Client(host=self.settings.kubeflow_host)
        return self.client

    def launch(self, request: LaunchRequest) -> LaunchResult:
        from pipelines.run import submit

        params = {**self.params, **request.params}
        name = kubeflow_run_name(request.run_id)
        try:
            run_id = str(self._bounded(lambda: submit(self.settings, params,
                                                      client=self._client(), run_name=name)))
        except Exception as exc:  # noqa: BLE001 - only an unanswered create is looked for
            said = _unanswered(exc)
            if said is None:
                raise
            run_id = self._created_anyway(request.run_id, said, exc)
        return self._hand_over(request, run_id)

    def adopt(self, request: LaunchRequest) -> LaunchResult:
        """Follow the Kubeflow run that ``launch`` submitted for ``request`` and whose id never
        reached the trigger (it died between Kubeflow's answer and recording the id): found by
        its name, recorded through ``request.on_submitted``, then followed as ``launch`` does.
        What a restarted trigger calls for a running run without a pipeline run id. Raises
        when Kubeflow has no such run (never submitted), or cannot be asked: that error names
        the run to look for, which may exist all the same."""
        name = kubeflow_run_name(request.run_id)
        # its trigger may have died (or handed it over) while Kubeflow had not yet listed a
        # create it had not answered: looked for up to create_grace_seconds after the launch
        left = 0.0 if request.started_ago is None else \
            self.create_grace_seconds - request.started_ago
        try:
            found, _ = self._look_for(request.run_id, left)
        except StoppedFollowing:
            raise
        except LaunchError as exc:
            raise LaunchError(f"{exc}; the pipeline run may exist all the same: look for run "
                              f"{name} in the Kubeflow UI (the trigger neither follows it nor "
                              "rolls out its version)") from exc
        if found is None:
            raise LaunchError(f"Kubeflow has no run named {name}: it was never submitted")
        log.warning("run %s: its Kubeflow run %s (%s) was never recorded; following it",
                    request.run_id, found, name)
        return self._hand_over(request, found)

    def find(self, run_id: str) -> str | None:
        """The id of the Kubeflow run submitted for the trigger's run ``run_id``, looked up by
        its display name; None when Kubeflow has none. Listing is retried as reading a run's
        state is: ``max_poll_errors`` failures in a row raise ``LaunchError``."""
        name = kubeflow_run_name(run_id)
        query = json.dumps({"predicates": [
            {"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
        errors = 0
        while True:
            try:
                page = self._bounded(lambda: self._client().list_runs(page_size=10,
                                                                      filter=query))
                break
            except Exception as exc:  # noqa: BLE001 - the API may be briefly unreachable
                errors += 1
                log.warning("Kubeflow runs named %s: listing them failed (%d in a row): %s",
                            name, errors, exc)
                if errors >= self.max_poll_errors:
                    raise LaunchError(f"Kubeflow runs named {name} could not be listed "
                                      f"{errors} times in a row: {exc}") from exc
            if self._stop.wait(self.poll_seconds):
                raise StoppedFollowing(f"the trigger stopped while looking for Kubeflow run "
                                       f"{name}")
        # the name is checked here too: another run must never be followed as this one
        runs = [r for r in getattr(page, "runs", None) or []
                if _first_attr(r, "display_name") == name]
        if len(runs) > 1:
            log.warning("%d Kubeflow runs are named %s; following the newest", len(runs), name)
        if not runs:
            return None
        return _first_attr(max(runs, key=lambda r: str(getattr(r, "created_at", "") or "")),
                           "run_id")

    def _created_anyway(self, run_id: str, said: str, cause: Exception) -> str:
        """The run that a submission which went unanswered (``said``, raised as ``cause``)
        created all the same, found by its name within ``create_grace_seconds`` (Kubeflow may
        persist a queued create late); raises when Kubeflow lists none by then, or cannot be
        asked. The trigger stopping meanwhile raises ``StoppedFollowing``: the run is handed
        over, and the next trigger looks it up by name (``adopt``)."""
        name = kubeflow_run_name(run_id)
        try:
            found, looks = self._look_for(run_id, self.create_grace_seconds)
        except StoppedFollowing:
            raise
        except LaunchError as exc:
            raise LaunchError(f"submitting the run: {said}; whether Kubeflow created it is "
                              f"unknown ({exc}): look for run {name} in its UI") from cause
        if found is None:
            raise LaunchError(
                f"submitting the run: {said}; Kubeflow listed no run named {name} in "
                f"{self.create_grace_seconds:g}s of looking ({_looks(looks)}, "
                "MARQUEE_RETRAIN_KUBEFLOW_CREATE_GRACE_SECONDS); should one appear in its "
                "UI later, the trigger does not follow it") from cause
        log.warning("run %s: its submission went unanswered (%s), but Kubeflow created it as "
                    "%s (found after %s); following it", run_id, said, found, _looks(looks))
        return found

    def _look_for(self, run_id: str, seconds: float) -> tuple[str | None, int]:
        """``find``, then again every ``poll_seconds`` while Kubeflow lists no such run, for
        up to ``seconds`` (one look when that is 0 or less): (the run's id or None, looks).
        The trigger stopping meanwhile raises ``StoppedFollowing``."""
        deadline = time.monotonic() + seconds
        looks = 0
        while True:
            found = self.find(run_id)
            looks += 1
            left = deadline - time.monotonic()
            if found is not None or left <= 0:
                return found, looks
            if self._stop.wait(min(self.poll_seconds, left)):
                raise StoppedFollowing(f"the trigger stopped while looking for Kubeflow run "
                                       f"{kubeflow_run_name(run_id)}, whose submission went "
                                       "unanswered")

    def _hand_over(self, request: LaunchRequest, run_id: str) -> LaunchResult:
        """Kubeflow run ``run_id`` to the trigger (``on_submitted``), then followed."""
        if request.on_submitted is not None:
            request.on_submitted(run_id)
        if not self.wait:
            return LaunchResult(pipeline_run_id=run_id, detail=f"submitted to "
                                f"{redact_uri(str(self.settings.kubeflow_host))}")
        return self.follow(run_id)

    def follow(self, run_id: str) -> LaunchResult:
        """Wait for Kubeflow run ``run_id`` to end; raise unless it succeeded and registered
        a version. Also what a restarted trigger calls for a run it had submitted."""
        deadline = time.monotonic() + self.timeout_seconds
        errors, state, run = 0, "", None
        while True:
            try:
                run = self._bounded(lambda: self._client().get_run(run_id))
                errors = 0
                state = str(getattr(getattr(run, "state", None), "value",
                                    getattr(run, "state", None)) or "").upper()
            except Exception as exc:  # noqa: BLE001 - the API may be briefly unreachable
                errors += 1
                log.warning("Kubeflow run %s: reading its state failed (%d in a row): %s",
                            run_id, errors, exc)
                if errors >= self.max_poll_errors:
                    raise LaunchError(f"Kubeflow run {run_id}: its state could not be read "
                                      f"{errors} times in a row: {exc}") from exc
            if state in KUBEFLOW_TERMINAL_STATES:
                break
            if time.monotonic() > deadline:
                raise LaunchError(f"Kubeflow run {run_id} still {state or 'not started'} after "
                                  f"{self.timeout_seconds:.0f}s (MARQUEE_RETRAIN_KUBEFLOW_"
                                  "TIMEOUT_SECONDS); the trigger stopped waiting for it")
            if self._stop.wait(self.poll_seconds):
                raise StoppedFollowing(f"Kubeflow run {run_id}: the trigger stopped while it "
                                       f"was {state or 'not started'}")
        if state != "SUCCEEDED":
            error = getattr(run, "error", None)
            message = getattr(error, "message", None) or (str(error) if error else "")
            raise LaunchError(f"Kubeflow run {run_id} ended {state}"
                              + (f": {message}" if message else ""))
        info = self._registered(run_id)
        return LaunchResult(pipeline_run_id=run_id, model_version=str(info.version),
                            gate_decision=info.gate_decision,
                            detail=f"Kubeflow run {run_id} succeeded on "
                                   f"{redact_uri(str(self.settings.kubeflow_host))}")

    def _bounded(self, call: Callable[[], Any]) -> Any:
        """``call()`` on a daemon thread, waited for at most ``api_timeout_seconds``; a hung
        call is abandoned to its thread (blocked on a socket, it ends with the process)."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = call()
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller
                box["error"] = exc

        worker = threading.Thread(target=run, name="kubeflow-call", daemon=True)
        worker.start()
        worker.join(self.api_timeout_seconds)
        if worker.is_alive():
            raise TimeoutError(f"no answer from "
                               f"{redact_uri(self.settings.kubeflow_host or 'Kubeflow')} "
                               f"within {self.api_timeout_seconds:g}s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _registered(self, run_id: str) -> Any:
        from marquee.registry import Registry

        registry = Registry.from_settings(self.settings)
        uri = redact_uri(registry.tracking_uri)
        found = [v for v in registry.list_versions()
                 if v.tags.get("pipeline_run_uid") == run_id]
        if not found:
            raise LaunchError(f"Kubeflow run {run_id} succeeded but no version of "
                              f"{self.settings.model_name} in the registry ({uri}) is tagged "
                              f"pipeline_run_uid={run_id}")
        return found[-1]

    def close(self) -> None:
        """Stop waiting: ``follow`` raises ``StoppedFollowing`` (the run goes on in Kubeflow,
        and the trigger hands it over)."""
        self._stop.set()

    def stop(self, pipeline_run_id: str | None = None) -> bool:
        """Terminate Kubeflow run ``pipeline_run_id`` (on-call canceled it); ``follow`` then
        reads its end (CANCELED) and fails the run. False: not submitted yet."""
        if not pipeline_run_id:
            return False
        try:
            self._bounded(lambda: self._client().terminate_run(pipeline_run_id))
        except Exception as exc:  # noqa: BLE001 - named to the caller, who asked for it
            raise LaunchError(f"terminating Kubeflow run {pipeline_run_id}: {exc}") from exc
        return True


class CommandLauncher:
    """Runs ``argv`` in a child process and waits; non-zero exit is a failed run.

    The child gets ``MARQUEE_RETRAIN_RUN_ID``, ``MARQUEE_RETRAIN_MODEL`` and
    ``MARQUEE_RETRAIN_REASON`` in its environment. It runs in a session of its own, and when
    it has not exited within ``timeout_seconds`` the whole process group is stopped (a shell's
    children too) and the run fails: a hung command would otherwise hold the trigger's only
    worker, and the model's in-flight claim, for as long as the pod lives. ``close`` (the
    trigger shutting down) stops a running child the same way: in a session of its own it
    would not get the terminal's Ctrl-C, and would run on after the trigger. On Linux the
    child also gets SIGTERM when the trigger dies without a chance to stop it (SIGKILL, OOM
    kill): ``prctl(PR_SET_PDEATHSIG)``. That reaches the child only, not processes it
    started itself; so its pid goes to ``request.on_child``, and the trigger records it with
    its claim on the run (a restarted trigger refuses a second run while that process group
    lives).
    """

    trains_requested_model = True  # the command gets MARQUEE_RETRAIN_MODEL

    name = "command"

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                 timeout_seconds: float | None = None, label: str | None = None) -> None:
        if not argv:
            raise LaunchError("the command launcher needs a command")
        self.argv = list(argv)
        self.env = dict(env or {})
        self.timeout_seconds = timeout_seconds
        # how errors name the command (its arguments may hold a URI with a password)
        self.label = label or redact_uri(" ".join(self.argv))
        self._lock = threading.Lock()
        self._running: subprocess.Popen | None = None
        self._closed = False

    def close(self) -> None:
        """Stop the running child, if any, with its process group; later launches fail."""
        with self._lock:
            self._closed = True
        self.stop()

    def stop(self, pipeline_run_id: str | None = None) -> bool:
        """Stop the running child with its process group (on-call canceled the run): its
        launch then fails; later launches run as usual. False: no child runs."""
        from monitoring.loop.procs import stop_group

        with self._lock:
            proc = self._running
        if proc is None or proc.poll() is not None:
            return False
        stop_group(proc)
        return True

    def launch(self, request: LaunchRequest, env: Mapping[str, str] | None = None
               ) -> LaunchResult:
        """``env``: variables for this run only, over the launcher's own."""
        env = {**os.environ, **self.env, **(env or {}),
               "MARQUEE_RETRAIN_RUN_ID": request.run_id,
               "MARQUEE_RETRAIN_MODEL": request.model,
               "MARQUEE_RETRAIN_REASON": request.reason}
        with self._lock:
            if self._closed:
                raise LaunchError(f"{self.label} not started: the trigger is shutting down")
            try:
                proc = subprocess.Popen(self.argv, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True,
                                        start_new_session=True,
                                        preexec_fn=_die_with_parent())
            except OSError as exc:
                raise LaunchError(f"{self.argv[0]}: {exc}") from exc
            self._running = proc
        if request.on_child is not None:
            try:
                request.on_child(proc.pid)
            except Exception:  # noqa: BLE001 - the child runs: it is waited for all the same
                log.exception("%s: recording child pid %d failed", request.run_id, proc.pid)
        # Both streams are read as they come: each line goes to this process's log (a long
        # pipeline run shows its progress there) and the last OUTPUT_TAIL lines are kept
        # for the result (the last stdout line) and the error of a failed run.
        tails = (deque(maxlen=OUTPUT_TAIL), deque(maxlen=OUTPUT_TAIL))
        readers = [threading.Thread(target=_pump, args=(pipe, tail, f"{request.run_id} {name}"),
                                    daemon=True)
                   for pipe, tail, name in zip((proc.stdout, proc.stderr), tails,
                                               ("stdout", "stderr"), strict=True)]
        for reader in readers:
            reader.start()
        try:
            proc.wait(timeout=self.timeout_seconds)
        except subprocess.TimeoutExpired:
            from monitoring.loop.procs import stop_group

            stop_group(proc)  # SIGTERM, then SIGKILL to whatever is left of its group
            raise LaunchError(f"{self.label} did not exit within "
                              f"{self.timeout_seconds:g}s and was killed "
                              "(MARQUEE_RETRAIN_COMMAND_TIMEOUT_SECONDS)") from None
        finally:
            with self._lock:
                self._running = None
            for reader in readers:  # a grandchild that left the group could hold a pipe
                reader.join(5.0)
        stdout, stderr = ("\n".join(tail) for tail in tails)
        if self._closed and proc.returncode != 0:
            raise LaunchError(f"{self.label} was stopped: the trigger is shutting down")
        if proc.returncode != 0:
            raise LaunchError(f"{self.label} exited {proc.returncode}: "
                              + " | ".join(_failure_lines(stdout, stderr)))
        lines = stdout.strip().splitlines()
        if lines:
            try:
                last = json.loads(lines[-1])
            except ValueError:
                last = None
            if isinstance(last, dict):
                return _result_of(last)
        return LaunchResult(detail="exit 0")


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send SIGTERM to the child when the process that
    started it dies (Linux; elsewhere None). libc is loaded here, in the parent: the function
    itself runs in the forked child before exec and only calls prctl and getppid. A parent
    that died between fork and prctl is caught by the getppid check."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _pump(pipe: Any, tail: deque, prefix: str) -> None:
    """Lines of a child's ``pipe`` into ``tail`` and this process's log, until it closes."""
    try:
        for line in pipe:
            line = line.rstrip("\n")
            tail.append(line)
            log.info("%s: %s", prefix, ANSI.sub("", line))
    except (OSError, ValueError):  # closed under us
        pass
    finally:
        pipe.close()


def _failure_lines(stdout: str, stderr: str) -> list[str]:
    """What a failed child said about its failure: its own one-line summary when it ends
    like a marquee command (``error: …``: ``python -m pipelines.run`` names the failed step
    and its cause there), else the last exception lines of its output (``ValueError: …``),
    else the last 5 lines of stderr (of stdout when stderr is empty); URIs' passwords masked,
    as these lines go into the run's record."""
    summary = [line[len("error: "):] for line in redact_uri(ANSI.sub("", stderr)).splitlines()
               if line.startswith("error: ")]
    if summary:
        return summary[-1:]
    return exception_lines(f"{stdout}\n{stderr}") or \
        redact_uri(ANSI.sub("", stderr or stdout)).strip().splitlines()[-5:]
