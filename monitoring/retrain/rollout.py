"""Closing the loop: a retrained model that passes the gate goes into a shadow rollout.

After a retraining run succeeds, :class:`AutoRollout` decides (and the trigger records in its
decision log, ``source="auto-rollout"``):

    MARQUEE_RETRAIN_AUTO_ROLLOUT=none                -> rollout-skipped
    run for another model than the router serves     -> rollout-skipped
    gate decision is not ``candidate`` (or unknown)  -> rollout-skipped (rejected: nothing to
                                                        roll out; promoted-first: already
                                                        production)
    router unreachable, server or controller failed  -> rollout-failed (the run stays succeeded)
    otherwise                                        -> rollout-started

Starting the rollout takes the path ``marquee rollout start -f rollout.yaml`` takes — it *is*
that command, run as a child process with the router's URL — so the rollout lives in
``<home>/rollouts/<name>/`` like any other and ``marquee rollout status/promote/abort`` work on
it. The spec is ``strategy: shadow`` from ``production`` to the new version, with
``MARQUEE_RETRAIN_ROLLOUT_SPEC`` (JSON) merged over it (interval, shadow, steps, analysis …).

The candidate's model server: when ``MARQUEE_RETRAIN_CANDIDATE_URL_TEMPLATE`` is set (e.g. the
KServe predictor's URL with ``{version}``) the server is assumed to exist there; otherwise one
``marquee serve --runtime kserve --model-version V`` is started on the bind host (one process
per version, as on one machine), polled until ready, and announced to the router
(``PUT /admin/upstreams``). Processes started here are stopped when the trigger stops, and the
candidate's server as soon as its rollout is rolled back or fails.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal

import httpx

from marquee.mapping import deep_merge
from monitoring.loop.procs import stop_process
from monitoring.retrain.models import Decision, DecisionKind, RunRecord
from serving.router.settings import admin_headers

__all__ = ["AfterRunRollout", "AutoRollout", "RolloutChild", "rollout_name", "rollout_document",
           "skip_reason"]

log = logging.getLogger("marquee.retrain.rollout")

AutoRolloutMode = Literal["shadow", "none"]


def rollout_name(version: str) -> str:
    return f"retrain-shadow-v{version}"


def rollout_document(model: str, version: str, overrides: Mapping[str, Any] | None = None,
                     name: str | None = None) -> dict[str, Any]:
    """The ModelRollout of a shadow rollout of ``version`` against ``production``."""
    spec = deep_merge({"modelName": model, "baseline": {"alias": "production"},
                   "candidate": {"version": str(version)}, "strategy": "shadow"},
                  overrides or {})
    # what is rolled out is not negotiable: the retrained version, from production, shadow first
    spec.update({"modelName": model, "candidate": {"version": str(version)},
                 "strategy": "shadow"})
    return {"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name or rollout_name(version),
                         "annotations": {"marquee.dev/started-by": "retrain-trigger"}},
            "spec": spec}


def skip_reason(mode: AutoRolloutMode, model_name: str, run: RunRecord) -> str | None:
    """Why a succeeded run gets no rollout, or None when its version is rolled out."""
    if mode == "none":
        return "automatic rollout is off (MARQUEE_RETRAIN_AUTO_ROLLOUT=none)"
    if run.model != model_name:
        return f"the router serves {model_name}, not {run.model}"
    if run.gate_decision != "candidate":
        if run.gate_decision is None:
            return ("the launcher reported no gate decision (a run submitted without waiting "
                    "for it has no version yet)")
        if run.gate_decision == "promoted-first":
            return f"version {run.model_version} is the first one and already production"
        return f"gate decision {run.gate_decision}: nothing to roll out"
    if not run.model_version:
        return "the launcher reported no model version"
    return None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return ""


@dataclass
class RolloutChild:
    """A process this step started (a candidate's model server or a rollout controller)."""

    kind: Literal["server", "controller"]
    version: str
    proc: subprocess.Popen
    log_path: Path
    url: str = ""
    _log: IO[bytes] | None = field(default=None, repr=False)

    def stop(self) -> None:
        stop_process(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None


class AfterRunRollout:
    """What every after-run step decides the same way: skip, or ``_start`` the shadow
    rollout of the run's version and record whether it started. Subclasses set ``mode``,
    ``model_name``, ``_clock`` and implement ``_start(version) -> (detail, rollout name)``."""

    mode: AutoRolloutMode
    model_name: str
    _clock: Callable[[], float]

    def _decision(self, kind: DecisionKind, run: RunRecord, detail: str) -> Decision:
        return Decision(time=datetime.fromtimestamp(self._clock(), tz=timezone.utc),
                        decision=kind, source="auto-rollout", model=run.model,
                        run_id=run.run_id, detail=detail)

    def __call__(self, run: RunRecord) -> Decision:
        """Decide on ``run`` (a succeeded retraining run); start the rollout when due."""
        skip = skip_reason(self.mode, self.model_name, run)
        if skip is not None:
            return self._decision(DecisionKind.ROLLOUT_SKIPPED, run, skip)
        version = str(run.model_version)
        try:
            detail, name = self._start(version)
        except Exception as exc:  # noqa: BLE001 - the run succeeded; the rollout did not start
            log.error("run %s: shadow rollout of version %s not started: %s", run.run_id,
                      version, exc)
            return self._decision(DecisionKind.ROLLOUT_FAILED, run,
                                  f"shadow rollout of version {version} not started: {exc}")
        run.rollout = name
        return self._decision(DecisionKind.ROLLOUT_STARTED, run, detail)

    def _start(self, version: str) -> tuple[str, str]:
        raise NotImplementedError


class AutoRollout(AfterRunRollout):
    """The after-run step of :class:`~monitoring.retrain.trigger.RetrainTrigger` on one
    machine: it starts processes."""

    def __init__(self, *, home: Path, model_name: str, router_url: str,
                 mode: AutoRolloutMode = "shadow", spec_overrides: Mapping[str, Any] | None = None,
                 candidate_url_template: str | None = None, bind_host: str = "127.0.0.1",
                 server_ready_timeout: float = 180.0, controller_start_timeout: float = 60.0,
                 env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.home = Path(home)
        self.model_name = model_name
        self.router_url = router_url.rstrip("/")
        self.mode = mode
        self.spec_overrides = dict(spec_overrides or {})
        self.candidate_url_template = candidate_url_template
        self.bind_host = bind_host
        self.server_ready_timeout = server_ready_timeout
        self.controller_start_timeout = controller_start_timeout
        self.env = dict(env) if env is not None else None
        self._clock = clock
        self.children: list[RolloutChild] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def work_dir(self) -> Path:
        return self.home / "retrain" / "rollouts"

    # the effects -------------------------------------------------------------------------
    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def _spawn(self, kind: Literal["server", "controller"], version: str, cmd: list[str],
               url: str = "") -> RolloutChild:
        if self._closed.is_set():
            raise RuntimeError("the trigger is stopping")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / f"{kind}-v{version}.log"
        fh = open(path, "ab")  # noqa: SIM115 - closed with the child
        proc = subprocess.Popen(cmd, env=self._child_env(), stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        child = RolloutChild(kind, version, proc, path, url, fh)
        with self._lock:
            self.children.append(child)
        return child

    def _router(self) -> httpx.Client:
        """The router's admin API, with the admin token its controller child gets too."""
        return httpx.Client(base_url=self.router_url, timeout=5.0, trust_env=False,
                            headers=admin_headers(env=self._child_env()))

    def _check_router(self) -> dict[str, Any]:
        try:
            with self._router() as c:
                r = c.get("/admin/routing")
        except httpx.HTTPError as exc:
            raise RuntimeError(f"router {self.router_url} unreachable: {exc}") from None
        if r.status_code not in (200, 404):
            raise RuntimeError(f"router {self.router_url} answered {r.status_code}: {r.text}")
        return r.json() if r.status_code == 200 else {}

    def _server_url(self, version: str) -> tuple[str, RolloutChild | None]:
        if self.candidate_url_template:
            return self.candidate_url_template.format(version=version).rstrip("/"), None
        port = _free_port(self.bind_host)
        url = f"http://{self.bind_host}:{port}"
        cmd = [sys.executable, "-m", "marquee.cli", "serve", "--runtime", "kserve",
               "--model-version", version, "--host", self.bind_host, "--port", str(port)]
        child = self._spawn("server", version, cmd, url)
        ready = f"{url}/v1/models/{self.model_name}"
        deadline = time.monotonic() + self.server_ready_timeout
        while True:
            if child.proc.poll() is not None:
                raise RuntimeError(f"model server of version {version} exited with "
                                   f"{child.proc.returncode}: {_tail(child.log_path)}")
            try:
                if httpx.get(ready, timeout=2.0, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self._closed.is_set():
                child.stop()
                raise RuntimeError(f"model server of version {version} not ready within "
                                   f"{self.server_ready_timeout:.0f}s: {_tail(child.log_path)}")
            time.sleep(0.2)
        return url, child

    def _announce(self, version: str, url: str) -> None:
        with self._router() as c:
            r = c.put("/admin/upstreams", json={"version": version, "url": url})
        if r.status_code != 200:
            raise RuntimeError(f"router refused the upstream of version {version} "
                               f"({r.status_code}): {r.text}")

    def _start(self, version: str) -> tuple[str, str]:
        from serving.rollout.spec import parse_rollout
        from serving.rollout.store import FileStatusStore

        doc = rollout_document(self.model_name, version, self.spec_overrides)
        rollout = parse_rollout(doc, "MARQUEE_RETRAIN_ROLLOUT_SPEC")  # refuse a bad spec early
        name = rollout.name
        routing = self._check_router()
        baseline = (routing.get("baseline") or {}).get("version")
        url, server = self._server_url(version)
        try:
            if server is not None:
                self._announce(version, url)
            self.work_dir.mkdir(parents=True, exist_ok=True)
            path = self.work_dir / f"{name}.yaml"
            path.write_text(rollout.to_yaml())
            cmd = [sys.executable, "-m", "marquee.cli", "rollout", "start", "-f", str(path),
                   "--router", self.router_url]
            controller = self._spawn("controller", version, cmd)
            store = FileStatusStore(self.home / "rollouts")
            deadline = time.monotonic() + self.controller_start_timeout
            phase = "Pending"
            while True:  # until the controller's first tick has put the rollout in force
                try:
                    phase = store.get(name).status.phase.value
                except Exception:  # noqa: BLE001 - not created yet
                    phase = "Pending"
                if phase != "Pending":
                    break
                if controller.proc.poll() is not None:
                    raise RuntimeError(f"`marquee rollout start` exited with "
                                       f"{controller.proc.returncode}: "
                                       f"{_tail(controller.log_path)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rollout {name} still Pending after "
                                       f"{self.controller_start_timeout:.0f}s")
                time.sleep(0.1)
            if phase in ("Failed", "RolledBack"):
                raise RuntimeError(f"rollout {name} ended at once ({phase}): "
                                   f"{store.get(name).status.message}")
        except BaseException:
            if server is not None:
                server.stop()
            raise
        threading.Thread(target=self._watch, args=(name, controller, server),
                         name=f"rollout-{name}", daemon=True).start()
        where = (f"candidate server pid {server.proc.pid} at {url}" if server is not None
                 else f"candidate server at {url}")
        detail = (f"shadow rollout {name} of version {version} started against baseline "
                  f"{baseline or 'production'} at router {self.router_url} ({phase}); {where}; "
                  f"controller pid {controller.proc.pid}")
        log.info(detail)
        return detail, name

    def _watch(self, name: str, controller: RolloutChild, server: RolloutChild | None) -> None:
        """When the controller ends a rollout that did not succeed, stop the candidate."""
        controller.proc.wait()
        if self._closed.is_set():
            return
        try:
            from serving.rollout.store import FileStatusStore

            phase = FileStatusStore(self.home / "rollouts").get(name).status.phase.value
        except Exception:  # noqa: BLE001 - nothing to read: keep the server
            return
        log.info("rollout %s ended: %s", name, phase)
        if server is not None and phase in ("RolledBack", "Failed"):
            server.stop()

    def close(self) -> None:
        """Stop every process started here (controllers first, then servers)."""
        self._closed.set()
        with self._lock:
            children = list(self.children)
        for child in sorted(children, key=lambda c: c.kind != "controller"):
            child.stop()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"mode": self.mode, "router": self.router_url,
                    "children": [{"kind": c.kind, "version": c.version, "pid": c.proc.pid,
                                  "url": c.url, "alive": c.proc.poll() is None}
                                 for c in self.children]}

    def __repr__(self) -> str:
        return f"AutoRollout({json.dumps(self.status())})"
