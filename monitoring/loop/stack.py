"""The real parts of the loop on one machine, started and stopped together.

    with LoopStack(home) as stack:
        v1 = stack.model_server("1")
        router = stack.router({"1": v1.url}, baseline="1")
        trigger = stack.trigger(router.url, pipeline_params={...})
        drift = stack.drift_exporter(since="60s", every=2)
        am = stack.alertmanager(trigger.url)
        prom = stack.prometheus({"drift": drift, "router": router, "trigger": trigger}, am)
        stack.ready(v1, router, trigger, drift, am, prom)      # poll all until ready
        ...
    # every process is stopped here, by pid, in reverse order (also on an exception or Ctrl-C)

Each ``stack.<part>(...)`` spawns one process on 127.0.0.1 with its log under
``<home>/loop/logs/`` and returns a :class:`~monitoring.loop.procs.Service`; ``ready`` polls
each until it answers (or raises with the log's tail when one exits). All processes share
``MARQUEE_HOME`` (store, registry, retrain state, rollouts) and no other MARQUEE_* setting of
the caller's environment.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitoring.loop import configs
from monitoring.loop.oncall import OncallSink
from monitoring.loop.procs import LOCALHOST, Service, clean_env, free_port, marquee_cmd

__all__ = ["LoopStack", "find_binary", "MODEL"]

MODEL = "movie-recommender"

#: Debian's package names first, upstream's second.
BINARIES = {"prometheus": ("prometheus",),
            "alertmanager": ("prometheus-alertmanager", "alertmanager")}


def find_binary(name: str) -> str | None:
    for candidate in BINARIES.get(name, (name,)):
        path = shutil.which(candidate)
        if path:
            return path
    return None


class LoopStack:
    """Starts the loop's processes and stops every one of them."""

    def __init__(self, home: Path | str, *, env: Mapping[str, str] | None = None,
                 payload_flush_seconds: float = 1.0, token: str | None = None) -> None:
        self.home = Path(home).resolve()
        self.dir = self.home / "loop"
        self.logs = self.dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.extra_env = {"MARQUEE_SERVING_PAYLOAD_LOG_FLUSH_SECONDS": str(payload_flush_seconds),
                          "MARQUEE_ROUTER_LOG_FLUSH_SECONDS": str(max(1.0, payload_flush_seconds)),
                          **(env or {})}
        self.token = token or secrets.token_urlsafe(24)
        self.token_file = self.dir / "retrain-token"
        self.token_file.unlink(missing_ok=True)  # created owner-only, never readable by others
        with os.fdopen(os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                       "w") as f:
            f.write(self.token + "\n")
        self.services: list[Service] = []
        self.oncall: OncallSink | None = None

    # lifecycle ------------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(self.home, {**self.extra_env, **extra})

    def _start(self, name: str, cmd: list[str], port: int, ready_path: str,
               env: Mapping[str, str] | None = None) -> Service:
        svc = Service(name=name, cmd=cmd, url=f"http://{LOCALHOST}:{port}",
                      log_path=self.logs / f"{name}.log", ready_path=ready_path,
                      env=dict(env if env is not None else self.env()))
        self.services.append(svc)
        return svc.spawn()

    def ready(self, *services: Service, timeout: float = 180.0) -> None:
        """Poll each service until it is ready (they load in parallel meanwhile)."""
        deadline = time.monotonic() + timeout
        for svc in services:
            svc.wait_ready(timeout=max(1.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Stop every process, newest first; the trigger stops what it started itself."""
        while self.services:
            svc = self.services.pop()
            svc.stop(timeout=30.0 if svc.name == "trigger" else 10.0)
        if self.oncall is not None:
            self.oncall.stop()
            self.oncall = None

    def __enter__(self) -> LoopStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    # the parts ------------------------------------------------------------------------------
    def model_server(self, version: str, *, port: int | None = None, **serving: Any) -> Service:
        """``marquee serve --runtime kserve --model-version V`` (payload logs on)."""
        port = port or free_port()
        env = self.env(**{f"MARQUEE_SERVING_{k.upper()}": str(v) for k, v in serving.items()})
        return self._start(f"server-v{version}",
                           marquee_cmd("serve", "--runtime", "kserve", "--model-version",
                                       str(version), "--host", LOCALHOST, "--port", str(port)),
                           port, f"/v1/models/{MODEL}", env)

    def router(self, upstreams: Mapping[str, str], baseline: str, *,
               port: int | None = None, **router: Any) -> Service:
        """``marquee router`` in front of ``{version: url}``, serving ``baseline``."""
        port = port or free_port()
        # this session's routing only: a file left by an earlier session may name versions
        # whose model servers are not running now
        routing_file = self.dir / "router-routing.json"
        routing_file.unlink(missing_ok=True)
        cmd = marquee_cmd("router", "--port", str(port), "--host", LOCALHOST,
                          "--baseline", str(baseline), "--log-level", "warning",
                          "--routing-file", str(routing_file))
        for version, url in upstreams.items():
            cmd += ["--upstream", f"{version}={url}"]
        env = self.env(**{f"MARQUEE_ROUTER_{k.upper()}": str(v) for k, v in router.items()})
        return self._start("router", cmd, port, "/readyz", env)

    def trigger(self, router_url: str, *, port: int | None = None, launcher: str = "kfp-local",
                pipeline_params: Mapping[str, Any] | None = None,
                auto_rollout: str = "shadow", rollout_spec: Mapping[str, Any] | None = None,
                cooldown_seconds: float = 3600.0, **extra: str) -> Service:
        """``marquee trigger`` (Alertmanager webhook) with the automatic shadow rollout."""
        port = port or free_port()
        env = self.env(
            MARQUEE_RETRAIN_TOKEN_FILE=str(self.token_file),
            MARQUEE_RETRAIN_PORT=str(port),
            MARQUEE_RETRAIN_URL=f"http://{LOCALHOST}:{port}",
            MARQUEE_RETRAIN_LAUNCHER=launcher,
            MARQUEE_RETRAIN_COOLDOWN_SECONDS=str(cooldown_seconds),
            MARQUEE_RETRAIN_PIPELINE_PARAMS=json.dumps(dict(pipeline_params or {})),
            MARQUEE_RETRAIN_AUTO_ROLLOUT=auto_rollout,
            MARQUEE_RETRAIN_ROUTER_URL=router_url,
            MARQUEE_RETRAIN_ROLLOUT_SPEC=json.dumps(dict(rollout_spec or {})),
            **extra)
        return self._start("trigger", marquee_cmd("trigger", "--log-level", "info"), port,
                           "/readyz", env)

    def drift_exporter(self, *, bundle: str = "production", since: str = "60s",
                       every: float = 2.0, port: int | None = None,
                       embeddings: bool = False) -> Service:
        """``marquee drift check --metrics-port P --every N``: the long-running exporter that
        Prometheus scrapes (the local form of the drift CronJob + Pushgateway)."""
        port = port or free_port()
        cmd = marquee_cmd("drift", "check", "--bundle", bundle, "--since", since,
                          "--evidently", "never", "--no-publish", "--metrics-port", str(port),
                          "--every", str(every))
        if not embeddings:
            cmd.append("--no-embeddings")
        return self._start("drift-exporter", cmd, port, "/metrics")

    def alertmanager(self, trigger_url: str, *, port: int | None = None,
                     group_wait: str = "0s") -> Service:
        """Alertmanager with the repository's routes, receivers pointed at 127.0.0.1."""
        binary = find_binary("alertmanager")
        if binary is None:
            raise FileNotFoundError("alertmanager is not installed (scripts/install-sysdeps.sh)")
        if self.oncall is None:
            self.oncall = OncallSink().start()
        port = port or free_port()
        cfg = self.dir / "alertmanager.yml"
        cfg.write_text(configs.alertmanager_yaml(trigger_url, self.token_file, self.oncall.url,
                                                 group_wait=group_wait))
        data = self.dir / "alertmanager-data"
        shutil.rmtree(data, ignore_errors=True)
        cmd = [binary, f"--config.file={cfg}", f"--storage.path={data}",
               f"--web.listen-address={LOCALHOST}:{port}", "--cluster.listen-address=",
               "--log.level=info"]
        return self._start("alertmanager", cmd, port, "/-/ready")

    def prometheus(self, targets: Mapping[str, Service | str], alertmanager: Service | str, *,
                   port: int | None = None, interval: str = "1s",
                   for_overrides: Mapping[str, str] | None = None) -> Service:
        """Prometheus scraping ``{job: service}`` with the repository's alert rules."""
        binary = find_binary("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus is not installed (scripts/install-sysdeps.sh)")
        port = port or free_port()

        def hostport(x: Service | str) -> str:
            url = x.url if isinstance(x, Service) else x
            return url.split("://", 1)[-1].rstrip("/")

        rules = self.dir / "alerts.yaml"
        rules.write_text(configs.rules_yaml(for_overrides))
        cfg = self.dir / "prometheus.yml"
        cfg.write_text(configs.prometheus_yaml({job: hostport(s) for job, s in targets.items()},
                                               hostport(alertmanager), rules, interval=interval))
        data = self.dir / "prometheus-data"
        shutil.rmtree(data, ignore_errors=True)
        cmd = [binary, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
               f"--web.listen-address={LOCALHOST}:{port}", "--log.level=warn",
               "--storage.tsdb.retention.time=1d"]
        return self._start("prometheus", cmd, port, "/-/ready")
