"""Real parts for the rollout tests: two trained models, model servers, routers, a registry.

The models are the real recommender trained on small synthetic data with planted taste
groups (2,000 users, 400 items, 40,000 events; flat popularity so that taste matters): a
good one, and one trained on shuffled interactions (item ids permuted across rows, which
keeps popularity and destroys who-likes-what). Each user's last 25% of events are held out:
replayed users click what they will really interact with. Built once per test session and
shared between xdist workers (file lock).

Processes are started on 127.0.0.1, polled until ready and stopped by pid.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, free_port, stop_process, wait_until

N_USERS, N_ITEMS, N_EVENTS = 2000, 400, 40_000
MODEL = "movie-recommender"
CONFIG = {"seed": 1, "retrieval": {"epochs": 5, "dim": 16, "batch_size": 256},
          "ranker": {"enabled": False}}


@dataclass(frozen=True)
class Models:
    good: Path
    shuffled: Path
    holdout: Path
    root: Path

    def labelled(self, source: Path, version: str) -> Path:
        """A copy of a bundle whose manifest says ``version`` (what its server reports)."""
        from marquee.bundle import finalize_bundle

        target = self.root / f"bundle-{source.name}-as-{version}"
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / "bundle.json").is_file():
                tmp = target.with_suffix(".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("bundle.json"))
                finalize_bundle(tmp, MODEL, version, training_config=CONFIG,
                                data_fingerprint="test", metrics={}, code_revision="test")
                tmp.rename(target)
        return target


def _build(root: Path) -> None:
    import numpy as np
    import torch

    from marquee.bundle import finalize_bundle
    from recsys import Recommender
    from recsys.data.split import per_user_temporal_split
    from recsys.data.synth import generate

    torch.set_num_threads(1)
    ds = generate(N_USERS, N_ITEMS, N_EVENTS, seed=3, affinity=0.95, zipf_exponent=0.3)
    split = per_user_temporal_split(ds.interactions, test_frac=0.25)
    shuffled = split.train.copy()
    shuffled["item_id"] = np.random.default_rng(0).permutation(shuffled["item_id"].to_numpy())
    for name, version, train in (("good", "1", split.train), ("shuffled", "2", shuffled)):
        rec = Recommender(CONFIG)
        rec.fit(train, ds.users, ds.items, progress=False)
        tmp = root / f"{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        rec.save(tmp)
        finalize_bundle(tmp, MODEL, version, training_config=CONFIG,
                        data_fingerprint=ds.fingerprint(), metrics={}, code_revision="test")
        tmp.rename(root / name)
    split.test.to_parquet(root / "holdout.parquet")


def shared_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "marquee-rollout-models"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "holdout.parquet").is_file():
            _build(root)
    return Models(root / "good", root / "shuffled", root / "holdout.parquet", root)


def _env(home: Path, prefix: str = "", **values: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MARQUEE_", "PROMETHEUS_MULTIPROC"))}
    env.update({"MARQUEE_HOME": str(home), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    for key, value in values.items():
        if value is not None:
            env[f"{prefix}{key.upper()}"] = (str(value).lower() if isinstance(value, bool)
                                             else str(value))
    return env


@dataclass
class Proc:
    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        stop_process(self.proc)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)


def wait_ready(proc: subprocess.Popen, cmd: list[str], log: Path, ready_url: str,
               timeout: float = 180) -> subprocess.Popen:
    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[3:5]} exited with {proc.returncode}: "
                               f"{log.read_text()[-3000:]}")
        return httpx.get(ready_url, timeout=2.0).status_code == 200

    try:
        wait_until(up, timeout=timeout, interval=0.2, what=f"{' '.join(cmd[3:5])} ready")
    except BaseException:
        stop_process(proc)
        raise
    return proc


def _start(cmd: list[str], env: dict[str, str], log: Path, ready_url: str) -> subprocess.Popen:
    return wait_ready(spawn(cmd, env, log), cmd, log, ready_url)


class PendingServer:
    """A model server that was spawned and is still loading (start several at once)."""

    def __init__(self, bundle: Path, home: Path, logs: Path, **faults: object) -> None:
        port = free_port()
        self.log = logs / f"server-{bundle.name}-{port}.log"
        self.cmd = [sys.executable, "-m", "marquee.cli", "serve", "--runtime", "kserve",
                    "--bundle-uri", str(bundle), "--host", "127.0.0.1", "--port", str(port)]
        env = _env(home, "MARQUEE_SERVING_", payload_log_enabled=False, **faults)
        self.url = f"http://127.0.0.1:{port}"
        self.proc = spawn(self.cmd, env, self.log)

    def ready(self) -> Proc:
        wait_ready(self.proc, self.cmd, self.log, f"{self.url}/v1/models/{MODEL}")
        return Proc(self.proc, self.url, self.log)


def start_model_server(bundle: Path, home: Path, logs: Path, **faults: object) -> Proc:
    """``marquee serve`` (KServe) on 127.0.0.1 with optional fault injection."""
    return PendingServer(bundle, home, logs, **faults).ready()


def start_router(upstreams: dict[str, str], baseline: str, home: Path, logs: Path,
                 routing_file: Path | None = None, **settings: object) -> Proc:
    """``marquee router`` on 127.0.0.1 (``routing_file``: its routing file, by default one of
    its own in ``logs``)."""
    import json

    port = free_port()
    log = logs / f"router-{port}.log"
    routing_file = routing_file or logs / f"routing-{port}.json"  # one per router
    cmd = [sys.executable, "-m", "marquee.cli", "router", "--port", str(port),
           "--host", "127.0.0.1", "--baseline", baseline, "--log-level", "warning",
           "--routing-file", str(routing_file)]
    env = _env(home, "MARQUEE_ROUTER_", upstreams=json.dumps(upstreams), **settings)
    url = f"http://127.0.0.1:{port}"
    return Proc(_start(cmd, env, log, f"{url}/readyz"), url, log)


def stand_in_model(method: str, path: str, body: bytes) -> tuple[int, Any]:
    """A stand-in KServe v1 predictor for ``tests.stand_in_http.serving``: items 1..k, each
    scored 1.0, for whichever user asks (router tests that need an upstream, not a model)."""
    inst = json.loads(body)["instances"][0]
    user, k = inst["user_id"], inst["k"]
    return 200, {"predictions": [{"user_id": user, "items": list(range(1, k + 1)),
                                  "scores": [1.0] * k, "model_version": "x",
                                  "request_id": "x", "cold_start": False,
                                  "fallback": False}]}
