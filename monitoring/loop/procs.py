"""Child processes of the loop on one machine: spawned, polled until ready, stopped by pid.

Every service binds 127.0.0.1 (the caller passes the port), writes its output to a log file,
and is stopped with SIGTERM, then SIGKILL after a grace period, by its own process id only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

__all__ = ["Service", "ServiceError", "free_port", "poll", "marquee_cmd", "clean_env",
           "group_alive", "stop_process", "stop_group"]

LOCALHOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service exited or did not get ready; the message ends with its log's tail."""


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def poll(check: Callable[[], object], *, timeout: float, interval: float = 0.2,
         what: str = "condition") -> object:
    """Call ``check`` until it returns something truthy (returned); errors count as "not yet".

    Raises ``TimeoutError`` naming ``what`` and the last error after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except ServiceError:
            raise
        except Exception as exc:  # noqa: BLE001 - polling something that is not up yet
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f}s"
                               + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


def marquee_cmd(*args: str) -> list[str]:
    """``python -m marquee.cli ARGS`` with this interpreter (the venv's)."""
    return [sys.executable, "-m", "marquee.cli", *args]


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process' environment without any MARQUEE_* setting, plus the loop's own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MARQUEE_", "PROMETHEUS_MULTIPROC"))}
    env.update({"MARQUEE_HOME": str(home), "MARQUEE_BIND_HOST": LOCALHOST,
                "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env.update(extra or {})
    return env


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL: this process only, by its pid."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. Zombies do not count: they have
    ended, and one whose parent does not reap it (a trigger that is PID 1) stays for ever.
    Without ``/proc`` (not Linux), whether the group can be signalled at all."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while we looked
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def stop_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a process started with ``start_new_session=True``, then whatever is left of its
    process group (children it did not stop itself, e.g. a pipeline step running when the
    trigger was asked to stop): SIGTERM, a grace period, SIGKILL."""
    stop_process(proc, timeout)
    pgid = proc.pid  # the session (and group) leader's pid is the group's id
    if not group_alive(pgid):
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):  # gone, or not ours to stop
        return
    deadline = time.monotonic() + 5.0
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class Service:
    """One child process with the URL it answers on and how to tell it is ready."""

    name: str
    cmd: Sequence[str]
    url: str
    log_path: Path
    ready_path: str = "/"
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    proc: subprocess.Popen | None = field(default=None, repr=False)
    started_at: float = 0.0
    ready_seconds: float | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    def spawn(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started_at = time.monotonic()
        # its own process group: stopping it also reaches what it started and left behind
        self.proc = subprocess.Popen(list(self.cmd), env=dict(self.env), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_ready(self) -> bool:
        if self.proc is None:
            raise ServiceError(f"{self.name} was never started")
        if self.proc.poll() is not None:
            raise ServiceError(f"{self.name} exited with {self.proc.returncode} before it was "
                               f"ready; {self.log_path}:\n{self.log_tail()}")
        r = httpx.get(self.url + self.ready_path, timeout=2.0, trust_env=False)
        return r.status_code == 200

    def wait_ready(self, timeout: float = 120.0) -> Service:
        try:
            poll(self.check_ready, timeout=timeout, interval=0.2, what=f"{self.name} ready")
        except TimeoutError as exc:
            raise ServiceError(f"{exc}; {self.log_path}:\n{self.log_tail()}") from None
        if self.ready_seconds is None:
            self.ready_seconds = time.monotonic() - self.started_at
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
