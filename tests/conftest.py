"""Shared fixtures: free ports, readiness polling, real servers on 127.0.0.1.

Servers started here listen on 127.0.0.1 only, are polled until ready (never a fixed sleep)
and are stopped by their process id.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from monitoring.loop.procs import stop_process  # noqa: F401 - the suites import it from here

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def silent_server() -> Iterator[str]:
    """A URL on 127.0.0.1 whose port accepts connections (into the kernel's backlog) and never
    answers: a hung API server or a dead proxy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.listen(16)
        yield f"http://127.0.0.1:{sink.getsockname()[1]}"


def wait_until(check: Callable[[], bool], timeout: float = 60.0, interval: float = 0.1,
               what: str = "condition") -> None:
    """Poll ``check`` until it returns True; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - polling a server that is not up yet
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f}s (last error: {last!r})")


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie waiting for its reaper (init, for an orphan) counts as
    gone, although it still answers signal 0."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def require_binary(name: str) -> str:
    """Path of a system binary; skipped locally, a failure in CI (CI must install it)."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (run scripts/install-sysdeps.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@contextmanager
def alertmanager_at(tmp_path: Path,
                    config: str = "route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n"
                    ) -> Iterator[str]:
    """Debian's Alertmanager on 127.0.0.1 with ``config`` (default: one receiver that sends
    nothing), polled until ready, stopped by its pid; yields its URL."""
    import subprocess

    import httpx

    binary = require_binary("prometheus-alertmanager")
    port = free_port()
    cfg = tmp_path / "am.yml"
    cfg.write_text(config)
    with open(tmp_path / "am.log", "w") as log:
        proc = subprocess.Popen([binary, f"--config.file={cfg}",
                                 f"--storage.path={tmp_path / 'am-data'}",
                                 f"--web.listen-address=127.0.0.1:{port}",
                                 "--cluster.listen-address="], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200,
                   timeout=30, what="alertmanager ready")
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-protocol endpoint: moto in server mode on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Dummy credentials for the local S3 endpoint, set for boto3 and MLflow."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_server)
    return s3_server


@pytest.fixture()
def python_exe() -> str:
    return sys.executable


# --- a tiny two-stage recommender, shared by the unit tests of its stages -----------------------

#: A small two-stage model: tiny towers, a 30-tree ranker over 40 candidates, 2 label folds.
TINY = {"retrieval": {"dim": 16, "epochs": 2, "batch_size": 256, "history_len": 20},
        "ranker": {"n_candidates": 40, "n_estimators": 30, "early_stopping_rounds": 0,
                   "num_leaves": 7, "folds": 2}}


@pytest.fixture(scope="session")
def tiny_data():
    """Synthetic events: 250 users × 150 items × 9,000 events (seed 5)."""
    from recsys.data.synth import generate

    return generate(250, 150, 9_000, seed=5)


@pytest.fixture(scope="session")
def tiny_rec(tiny_data):
    """:data:`TINY` fitted on :func:`tiny_data`, once per session; tests must not modify it."""
    import torch

    from recsys.recommender import Recommender

    torch.set_num_threads(1)
    return Recommender(TINY).fit(tiny_data.interactions, tiny_data.users, tiny_data.items,
                                 progress=False)
