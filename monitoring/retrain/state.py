"""The trigger's persisted state and records, shared by every process under one home.

``<home>/retrain/``
    state.json        dedup keys, last start per model, the run in flight (read-modify-write
                      under an exclusive lock, so the webhook service and an on-call
                      ``marquee retrain`` in another process take the same decisions)
    decisions.jsonl   one line per decision, appended, never rewritten; past
                      ``max_log_bytes`` it is rotated to ``decisions.jsonl.1`` … ``.N``
                      (``keep_logs`` files), so the log's size stays bounded
    runs/<id>.json    one record per retraining run, updated as it progresses

A ``state.json`` that cannot be read (truncated, not JSON, not the schema) is never
overwritten nor replaced by an empty state: an empty state would forget the run in flight,
the cooldowns and the alerts already covered, and let re-sent alerts start runs again.
Every read raises ``StateCorruptError`` (503, naming the file and the parse error) until
someone repairs the file or moves it aside (monitoring/README.md, "Retrain trigger state").
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from marquee.durable import write_text_atomic
from marquee.filelock import flock
from monitoring.errors import StateCorruptError
from monitoring.loop.procs import group_alive
from monitoring.retrain.models import Decision, RunRecord

__all__ = ["InFlight", "TriggerState", "StateStore", "StateCorruptError", "LEASE_SECONDS",
           "PROCESS_TOKEN", "pid_alive_here"]

log = logging.getLogger("marquee.retrain.state")
log.addHandler(logging.NullHandler())  # a command prints the error itself, once


# This process's identity in an InFlight record: a pid alone is not one (a restarted
# container's trigger is pid 1 again, on the same host name).
PROCESS_TOKEN = uuid.uuid4().hex
# How long an in-flight record without a fresh heartbeat counts as owned: the owner renews
# it every LEASE_SECONDS / 5 while its run goes on.
LEASE_SECONDS = 300.0


def pid_alive_here(pid: int) -> bool:
    """Whether another process of this pid runs on this host: not when it is this process's
    own pid (a restarted container is pid 1 again, so the pid was reused), nor when no process
    has it; yes when one exists, even another user's."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class InFlight(BaseModel):
    run_id: str
    model: str
    since: datetime
    pid: int
    host: str
    owner: str = ""
    heartbeat: datetime | None = Field(None, description="last renewal by the owner")
    child_pid: int | None = Field(None, description="the launcher's child process, leader "
                                  "of its own process group (command and kfp-local launchers)")
    handed_over: datetime | None = Field(
        None, description="when the owner stopped following the run, which goes on without "
        "it (a clean shutdown, the run remote): the next trigger follows it without waiting "
        "for the lease to run out")

    @classmethod
    def mine(cls, run_id: str, model: str, since: datetime, now: datetime) -> InFlight:
        """A record owned by this process."""
        return cls(run_id=run_id, model=model, since=since, pid=os.getpid(),
                   host=socket.gethostname(), owner=PROCESS_TOKEN, heartbeat=now)

    def owner_alive(self, now: datetime | None = None,
                    lease_seconds: float = LEASE_SECONDS) -> bool:
        """Whether the process that owns the run may still be running it. This process: yes.
        Otherwise it must have renewed its heartbeat within ``lease_seconds`` (a process on
        another host, e.g. a replaced pod, is judged by that alone) and, on this host, its
        pid must still exist and not be this process's own. A claim handed over: no one."""
        if self.handed_over is not None:
            return False
        if self.owner and self.owner == PROCESS_TOKEN:
            return True
        now = now or datetime.now(timezone.utc)
        beat = self.heartbeat or self.since
        if (now - beat).total_seconds() >= lease_seconds:
            return False
        return self.host != socket.gethostname() or pid_alive_here(self.pid)

    def child_running(self) -> bool:
        """Whether a process of the run's child process group still runs on this host: a
        child that outlived its trigger (killed with SIGKILL) still trains, and a second run
        for the model must not start beside it."""
        if self.child_pid is None or self.host != socket.gethostname():
            return False
        return group_alive(self.child_pid)


class TriggerState(BaseModel):
    covered: dict[str, tuple[str, datetime]] = Field(
        default_factory=dict, description="dedup key -> (run id, time first seen)")
    last_started: dict[str, datetime] = Field(default_factory=dict)
    in_flight: InFlight | None = None

    def prune(self, now: datetime, ttl: timedelta) -> None:
        self.covered = {k: v for k, v in self.covered.items() if now - v[1] < ttl}


class StateStore:
    """Files under ``root``; every write is atomic, every read-modify-write is locked."""

    def __init__(self, root: Path | str, max_log_bytes: int = 5 * 2**20,
                 keep_logs: int = 3) -> None:
        self.root = Path(root)
        self.max_log_bytes = max_log_bytes
        self.keep_logs = keep_logs
        self._thread_lock = threading.RLock()
        self._reported: tuple[int, int, str] | None = None  # the corrupt file last logged

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    @property
    def decisions_path(self) -> Path:
        return self.root / "decisions.jsonl"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def _ensure(self) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _flock(self, name: str) -> Iterator[None]:
        self._ensure()
        with self._thread_lock, flock(self.root / name):
            yield

    @contextmanager
    def transaction(self) -> Iterator[TriggerState]:
        """Yield the state; it is written back when the block ends without an exception."""
        with self._flock("state.lock"):
            state = self.read()
            yield state
            write_text_atomic(self.state_path, state.model_dump_json(indent=1))

    def read(self) -> TriggerState:
        """The state; an absent file is the empty state, an unreadable one raises
        ``StateCorruptError`` (and is left as it is)."""
        path = self.state_path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return TriggerState()
        except OSError as exc:
            raise self._corrupt(f"{type(exc).__name__}: {exc.strerror or exc}") from exc
        try:
            return TriggerState.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise self._corrupt((f"{where}: " if where else "") + first["msg"]) from None

    def _corrupt(self, reason: str) -> StateCorruptError:
        """The error, logged once per version of the file (every request reads it)."""
        error = StateCorruptError(self.state_path, reason)
        try:
            st = self.state_path.stat()
            seen = (st.st_mtime_ns, st.st_size, reason)
        except OSError:
            seen = (0, 0, reason)
        if seen != self._reported:
            self._reported = seen
            log.error("%s", error.message)
        return error

    def problem(self) -> str | None:
        """Why the state cannot be read (readiness, ``marquee incidents``), else None."""
        try:
            self.read()
        except StateCorruptError as exc:
            return exc.message
        return None

    # decisions ------------------------------------------------------------------------
    def append_decisions(self, decisions: list[Decision]) -> None:
        if not decisions:
            return
        lines = "".join(d.model_dump_json() + "\n" for d in decisions)
        with self._flock("decisions.lock"):
            path = self.decisions_path
            if path.is_file() and path.stat().st_size + len(lines) > self.max_log_bytes:
                self._rotate()
            with open(path, "a+b") as fh:
                if fh.tell():  # a line cut short by a crash ends here: start on a new one
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        lines = "\n" + lines
                fh.write(lines.encode())

    def _log_files(self) -> list[Path]:
        """The decision log's files, oldest first."""
        rotated = [self.decisions_path.with_name(f"{self.decisions_path.name}.{i}")
                   for i in range(self.keep_logs, 0, -1)]
        return [p for p in [*rotated, self.decisions_path] if p.is_file()]

    def _rotate(self) -> None:
        """decisions.jsonl → .1 → .2 …; the oldest beyond ``keep_logs`` is deleted."""
        name = self.decisions_path.name
        for i in range(self.keep_logs, 0, -1):
            src = self.decisions_path.with_name(f"{name}.{i - 1}" if i > 1 else name)
            if src.is_file():
                os.replace(src, self.decisions_path.with_name(f"{name}.{i}"))

    def decisions(self, limit: int | None = None) -> list[Decision]:
        """Decisions, oldest first (the last ``limit``), across the rotated files."""
        lines: list[str] = []
        for path in reversed(self._log_files()):
            # errors="replace": a line cut inside a multi-byte character by a crash mid-write
            # fails to parse below and is skipped, instead of failing the whole read
            lines = [line for line in path.read_text(encoding="utf-8", errors="replace")
                     .splitlines() if line.strip()] + lines
            if limit is not None and len(lines) >= limit:
                break
        if limit is not None:
            lines = lines[-limit:]
        decisions, bad = [], 0
        for line in lines:
            try:
                decisions.append(Decision.model_validate_json(line))
            except ValueError:  # a line cut short by a crash mid-write: the rest still count
                bad += 1
        if bad:
            log.warning("%s: %d unreadable line(s) skipped", self.decisions_path, bad)
        return decisions

    # runs -----------------------------------------------------------------------------
    def save_run(self, run: RunRecord) -> None:
        self._ensure()
        write_text_atomic(self.runs_dir / f"{run.run_id}.json", run.model_dump_json(indent=1))

    def load_run(self, run_id: str) -> RunRecord:
        return RunRecord.model_validate_json((self.runs_dir / f"{run_id}.json").read_bytes())

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first."""
        if not self.runs_dir.is_dir():
            return []
        records = []
        for path in self.runs_dir.glob("*.json"):
            try:
                records.append(RunRecord.model_validate_json(path.read_bytes()))  # UTF-8
            except (OSError, ValueError):
                continue  # a record being replaced right now; the next listing has it
        records.sort(key=lambda r: r.requested_at, reverse=True)
        return records[:limit] if limit is not None else records
