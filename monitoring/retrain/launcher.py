"""How the trigger starts the training pipeline: a narrow ``PipelineLauncher`` interface.

* ``KfpLocalLauncher`` runs the pipeline on this machine through
  ``pipelines.run.run_local(settings, params)`` (kfp.local) and waits for it.
* ``KubeflowLauncher`` submits a run to the Kubeflow host through
  ``pipelines.run.submit(settings, params)`` and returns once it is submitted.
* ``CommandLauncher`` runs a command (for example ``marquee pipeline run``) in a child
  process and waits for it; its last stdout line, when it is a JSON object, may carry
  ``run_id``, ``version`` and ``gate_decision``.

``pipelines`` is imported inside ``launch`` only: the trigger starts without the training
stack, and a missing one is reported as a failed run, not as an import error at start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from marquee.settings import Settings
from monitoring.errors import LaunchError

__all__ = [
    "LaunchRequest",
    "LaunchResult",
    "PipelineLauncher",
    "KfpLocalLauncher",
    "KubeflowLauncher",
    "CommandLauncher",
]


@dataclass(frozen=True)
class LaunchRequest:
    """What the trigger asks for: one retraining run of ``model``."""

    run_id: str  # the trigger's id of the run (also in the run record)
    model: str
    reason: str
    alerts: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


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


def _result_of(result: Any) -> LaunchResult:
    """``pipelines.run.RunResult`` (or a dict of the same fields) → LaunchResult."""
    return LaunchResult(
        pipeline_run_id=_first_attr(result, "run_id"),
        model_version=_first_attr(result, "version", "model_version"),
        gate_decision=_first_attr(result, "gate_decision", "decision", "gate"),
    )


class KfpLocalLauncher:
    """Runs the training pipeline locally (kfp.local) through ``pipelines.run.run_local``."""

    name = "kfp-local"

    def __init__(self, settings: Settings, params: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.params = dict(params or {})

    def launch(self, request: LaunchRequest) -> LaunchResult:
        from pipelines.run import run_local  # the training stack, only when a run starts

        result = run_local(self.settings, {**self.params, **request.params})
        return _result_of(result)


class KubeflowLauncher:
    """Submits a Kubeflow Pipelines run through ``pipelines.run.submit``."""

    name = "kubeflow"

    def __init__(self, settings: Settings, params: Mapping[str, Any] | None = None,
                 client: Any = None) -> None:
        if not settings.kubeflow_host and client is None:
            raise LaunchError("the kubeflow launcher needs settings.kubeflow_host "
                              "(MARQUEE_KUBEFLOW_HOST)")
        self.settings = settings
        self.params = dict(params or {})
        self.client = client  # a kfp.Client; None: pipelines.run.submit makes one

    def launch(self, request: LaunchRequest) -> LaunchResult:
        from pipelines.run import submit

        run_id = submit(self.settings, {**self.params, **request.params}, client=self.client)
        return LaunchResult(pipeline_run_id=str(run_id), detail=f"submitted to "
                            f"{self.settings.kubeflow_host}")


class CommandLauncher:
    """Runs ``argv`` in a child process and waits; non-zero exit is a failed run.

    The child gets ``MARQUEE_RETRAIN_RUN_ID``, ``MARQUEE_RETRAIN_MODEL`` and
    ``MARQUEE_RETRAIN_REASON`` in its environment.
    """

    name = "command"

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                 timeout_seconds: float | None = None) -> None:
        if not argv:
            raise LaunchError("the command launcher needs a command")
        self.argv = list(argv)
        self.env = dict(env or {})
        self.timeout_seconds = timeout_seconds

    def launch(self, request: LaunchRequest) -> LaunchResult:
        env = {**os.environ, **self.env,
               "MARQUEE_RETRAIN_RUN_ID": request.run_id,
               "MARQUEE_RETRAIN_MODEL": request.model,
               "MARQUEE_RETRAIN_REASON": request.reason}
        try:
            proc = subprocess.run(self.argv, env=env, capture_output=True, text=True,
                                  timeout=self.timeout_seconds, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LaunchError(f"{self.argv[0]}: {exc}") from exc
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise LaunchError(f"{' '.join(self.argv)} exited {proc.returncode}: "
                              + " | ".join(tail))
        lines = proc.stdout.strip().splitlines()
        if lines:
            try:
                last = json.loads(lines[-1])
            except ValueError:
                last = None
            if isinstance(last, dict):
                return _result_of(last)
        return LaunchResult(detail="exit 0")
