"""Shadow mirrors: call the candidate with a copy of the user's request, compare the lists.

Two ways to run a mirror, behind one small interface (``submit`` / ``drain`` / ``aclose``):

- :class:`InlineMirror` (``shadow_mode="inline"``, the default, and whenever the app is given
  a test transport): a task on the router's own event loop.
- :class:`WorkerMirror` (``shadow_mode="worker"``): a child process, the *shadow worker*, at a
  lower CPU priority (``shadow_worker_nice``). The router's whole cost per mirror is one
  non-blocking send of a datagram on a socket pair. The worker calls the candidate, compares
  the two lists and sends back one small result per mirror, which the router folds into its
  stats and metrics from an event-loop reader. A full socket buffer or a dead worker drops
  the mirror (counted), never blocks; a dead worker is started again on a later mirror.

Why inline is the default (benchmarks/RESULTS.md, "Shadow", session G): on this 2-core
machine, quiet, every request mirrored, the worker did not lower the user p99 cost of the
router's own mirroring (fixed-answer upstream: +14% against +13% inline). With a co-located
candidate it raised it (+62% against +50%), because a mirror then costs more CPU in total
(two processes, two hand-offs). The worker is for a router whose event loop is the
bottleneck and whose pod has a spare core; that case was not measured here.

Either way a mirror never delays or fails the user's request, and mirrors beyond
``shadow_max_in_flight`` are dropped and counted, not queued. Each mirror carries the stats
bucket its request was served in (``at``) and its outcome hands it back unchanged, so the
router counts the result for the routing the request was served under, not for whichever
routing is in force when the candidate answers.

Run as ``python -m serving.router.shadow --fd N …`` it is the worker (started by
:class:`WorkerMirror`, not by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from serving.router.schema import RecommendRequest
from serving.router.settings import RouterSettings
from serving.router.stats import BucketKey
from serving.router.upstream import UpstreamClient, make_upstream
from serving.stats import kendall_tau_shared, rank_biased_overlap, topk_overlap

__all__ = ["ShadowOutcome", "InlineMirror", "WorkerMirror", "make_mirror", "mirror_once",
           "SHADOW_CODES", "shadow_code"]

log = logging.getLogger("marquee.router.shadow")

_MAX_DATAGRAM = 1 << 20


def _datagrams(sock: socket.socket, buf: bytearray) -> Iterator[memoryview]:
    """The datagrams waiting on a non-blocking socket, each read into ``buf`` (so no buffer
    is allocated per datagram: each view is valid until the next one); a last empty view when
    the peer is gone."""
    view = memoryview(buf)
    while True:
        try:
            n = sock.recv_into(buf)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        yield view[:n]
        if not n:
            return


#: Every ``code`` a mirror's outcome is counted under (``marquee_router_shadow_requests_total``):
#: a closed set, since the candidate's answer must not name label values (one series per
#: status it chose to send, 400 to 999).
SHADOW_CODES = frozenset({"200", "4xx", "5xx", "timeout", "connect", "bad_response", "error"})


def shadow_code(status: int | None, reason: str | None) -> str:
    """The outcome code of a failed mirror: the candidate's error status by its class
    (``4xx``/``5xx``), else the failure's reason, ``error`` when neither is one we know."""
    if status:
        return "5xx" if status >= 500 else "4xx"
    return reason if reason in SHADOW_CODES else "error"


@dataclass(slots=True)
class ShadowOutcome:
    """One mirror's result. ``code``: "200", a failure (one of :data:`SHADOW_CODES`: 4xx, 5xx,
    timeout, connect, bad_response, error) or "dropped" (not sent: an in-flight cap, a full
    socket buffer or no worker). ``at``: the stats bucket the mirrored request was served in,
    as given to ``submit``."""

    code: str
    latency_ms: float = 0.0
    baseline_ms: float = 0.0
    baseline_items: list[int] | None = None
    candidate_items: list[int] | None = None
    topk: float | None = None
    rbo: float | None = None
    tau: float | None = None
    at: BucketKey | None = None

    @property
    def ok(self) -> bool:
        return self.code == "200"


OnOutcome = Callable[[ShadowOutcome], None]


async def mirror_once(upstream: UpstreamClient, url: str, instance: dict[str, Any],
                      request_id: str, baseline_items: list[int], baseline_ms: float,
                      timeout: float) -> ShadowOutcome:
    """Call the candidate once and compare its list with the baseline's."""
    start = time.perf_counter()
    try:
        pred = await upstream.predict_instance(url, instance, request_id, variant="candidate",
                                               timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - a mirror's failure stays in the mirror
        return ShadowOutcome(code=shadow_code(getattr(exc, "upstream_status", None),
                                              getattr(exc, "reason", None)),
                             baseline_ms=baseline_ms)
    ms = (time.perf_counter() - start) * 1000
    b, c = baseline_items, pred.items
    return ShadowOutcome(code="200", latency_ms=ms, baseline_ms=baseline_ms, baseline_items=b,
                         candidate_items=c, topk=topk_overlap(b, c, k=max(len(b), len(c))),
                         rbo=rank_biased_overlap(b, c), tau=kendall_tau_shared(b, c))


class InlineMirror:
    """Mirrors as tasks on the router's event loop."""

    def __init__(self, upstream: UpstreamClient, settings: RouterSettings,
                 on_outcome: OnOutcome) -> None:
        self.upstream = upstream
        self.settings = settings
        self.on_outcome = on_outcome
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, url: str, req: RecommendRequest, request_id: str,
               baseline_items: list[int], baseline_ms: float,
               at: BucketKey | None = None) -> bool:
        """Start a mirror; False (dropped) when ``shadow_max_in_flight`` are in flight."""
        if len(self._tasks) >= self.settings.shadow_max_in_flight:
            return False
        task = asyncio.get_running_loop().create_task(self._run(
            url, self.upstream.instance(req), request_id, baseline_items, baseline_ms, at))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, url: str, instance: dict[str, Any], request_id: str,
                   baseline_items: list[int], baseline_ms: float,
                   at: BucketKey | None) -> None:
        outcome = await mirror_once(self.upstream, url, instance, request_id, baseline_items,
                                    baseline_ms, self.settings.shadow_timeout_seconds)
        outcome.at = at
        self.on_outcome(outcome)

    async def drain(self, timeout: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def aclose(self) -> None:
        return None


class WorkerMirror:
    """Mirrors handed to the shadow worker process over a datagram socket pair.

    The worker is started on the first mirror (so a router that never shadows runs no second
    process) and again on a later mirror after it died, at most once per ``restart_seconds``.
    """

    def __init__(self, settings: RouterSettings, on_outcome: OnOutcome, *,
                 restart_seconds: float = 1.0) -> None:
        self.settings = settings
        self.on_outcome = on_outcome
        self.restart_seconds = restart_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._started_at = -float("inf")
        self._buf = bytearray(_MAX_DATAGRAM)
        self.sent = 0
        self.answered = 0
        self.starts = 0

    # Worker lifecycle ----------------------------------------------------------------------------
    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self._sock is not None

    def _start(self) -> bool:
        now = time.monotonic()
        if now - self._started_at < self.restart_seconds:
            return False
        self._started_at = now
        self._stop_now()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.setblocking(False)
        s = self.settings
        cmd = [sys.executable, "-m", "serving.router.shadow", "--fd", str(theirs.fileno()),
               "--nice", str(s.shadow_worker_nice)]
        env = dict(os.environ)  # the worker's settings: the router's, as environment
        env.update({f"MARQUEE_ROUTER_{k.upper()}": str(v) for k, v in {
            "model_name": s.model_name, "upstream_client": s.upstream_client,
            "max_connections": s.max_connections, "shadow_timeout_seconds":
            s.shadow_timeout_seconds, "shadow_max_in_flight": s.shadow_max_in_flight}.items()})
        try:
            self.proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),), env=env,
                                         stdin=subprocess.DEVNULL)
        except OSError as exc:
            log.error("cannot start the shadow worker: %s", exc)
            ours.close()
            return False
        finally:
            theirs.close()
        self._sock = ours
        self.sent = self.answered = 0  # what was in flight died with the old worker
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_readable)
        self.starts += 1
        log.info("shadow worker started (pid %d, nice %d)", self.proc.pid,
                 s.shadow_worker_nice)
        return True

    def _stop_now(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()  # the worker reads end-of-file and exits
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    # Router side ---------------------------------------------------------------------------------
    def submit(self, url: str, req: RecommendRequest, request_id: str,
               baseline_items: list[int], baseline_ms: float,
               at: BucketKey | None = None) -> bool:
        """Hand a mirror to the worker; False (dropped) when it cannot take it now. ``at``
        goes with it and comes back with its outcome."""
        if not self._alive():
            if self.proc is not None:
                log.warning("shadow worker exited (code %s); restarting it",
                            self.proc.returncode)
            if not self._start():
                return False
        msg = orjson.dumps({"u": url, "i": UpstreamClient.instance(req), "id": request_id,
                            "b": baseline_items, "bms": baseline_ms, "at": at})
        try:
            self._sock.send(msg)  # type: ignore[union-attr]
        except OSError:  # buffer full (BlockingIOError), worker gone, or oversized
            return False
        self.sent += 1
        return True

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for data in _datagrams(sock, self._buf):
            if not data:  # the worker closed its end: it is gone
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_reader(sock.fileno())
                return
            self.answered += 1
            try:
                outcome = ShadowOutcome(**orjson.loads(data))
                if outcome.at is not None:  # a JSON array: a bucket key is a tuple
                    time_bucket, epoch = outcome.at
                    outcome.at = (time_bucket, epoch)
            except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                log.error("unreadable shadow result: %s", exc)
                continue
            self.on_outcome(outcome)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until every mirror sent has come back (or the worker died, or timeout)."""
        deadline = time.monotonic() + timeout
        while self.answered < self.sent and self._alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def aclose(self) -> None:
        proc = self.proc
        self._stop_now()
        if proc is not None:
            for _ in range(200):
                if proc.poll() is not None:
                    return
                await asyncio.sleep(0.01)
            proc.kill()
            proc.wait()


def make_mirror(settings: RouterSettings, upstream: UpstreamClient, on_outcome: OnOutcome,
                *, inline: bool = False) -> InlineMirror | WorkerMirror:
    if inline or settings.shadow_mode == "inline":
        return InlineMirror(upstream, settings, on_outcome)
    return WorkerMirror(settings, on_outcome)


# The worker ---------------------------------------------------------------------------------
async def _serve(sock: socket.socket, settings: RouterSettings) -> None:
    loop = asyncio.get_running_loop()
    upstream = make_upstream(settings)
    done = loop.create_future()
    tasks: set[asyncio.Task[None]] = set()
    parent = os.getppid()
    buf = bytearray(_MAX_DATAGRAM)

    def reply(outcome: ShadowOutcome) -> None:
        with contextlib.suppress(OSError):  # the router is gone or its buffer is full
            sock.send(orjson.dumps(asdict(outcome)))

    async def run(msg: dict[str, Any]) -> None:
        outcome = await mirror_once(upstream, msg["u"], msg["i"], msg["id"], msg["b"],
                                    msg["bms"], settings.shadow_timeout_seconds)
        outcome.at = msg.get("at")
        reply(outcome)

    def on_readable() -> None:
        for data in _datagrams(sock, buf):
            if not data:
                if not done.done():
                    done.set_result(None)
                return
            msg = orjson.loads(data)
            if len(tasks) >= settings.shadow_max_in_flight:
                reply(ShadowOutcome(code="dropped", at=msg.get("at")))
                continue
            task = loop.create_task(run(msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    loop.add_reader(sock.fileno(), on_readable)
    try:
        while not done.done():  # also stop if the router died without closing its end
            await asyncio.wait([done], timeout=1.0)
            if os.getppid() != parent:
                break
    finally:
        loop.remove_reader(sock.fileno())
        for t in tasks:
            t.cancel()
        await upstream.aclose()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Marquee's shadow worker (started by the router).")
    ap.add_argument("--fd", type=int, required=True, help="the router's datagram socket")
    ap.add_argument("--nice", type=int, default=0, help="added CPU niceness")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the router's Ctrl-C is the router's
    if args.nice:
        os.nice(args.nice)
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    settings = RouterSettings()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(sock, settings))
    else:
        uvloop.run(_serve(sock, settings))


if __name__ == "__main__":
    main()
