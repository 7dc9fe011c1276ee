"""Leader election of rollout controllers: one ``coordination.k8s.io/v1`` Lease.

Several controller replicas (``controller.replicaCount`` > 1, or the old and the new pod of a
rolling update) may watch the same ModelRollout objects; only the holder of the Lease ticks
them, so no rollout is judged or moved twice. The others stand by and take over when the
holder stops renewing.

The rules are client-go's ``leaderelection``:

- the holder renews every ``retry_period`` seconds and acts only while its last successful
  renewal is less than ``renew_deadline`` seconds old (so it stops acting before anyone may
  take over);
- a candidate takes the Lease only when its record (holder, renew time, resourceVersion) has
  not changed for ``duration`` seconds by the candidate's *own* clock: no two nodes' clocks
  are compared;
- every write carries the resourceVersion it read, so of two candidates writing at once the
  API server accepts one and answers the other 409 Conflict;
- a holder that stops cleanly empties ``holderIdentity``, so a standby takes over at its next
  try instead of waiting out the lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from serving.rollout.store import kube_timeout

__all__ = ["LeaderLease", "default_identity"]

log = logging.getLogger("marquee.rollout.lease")


def default_identity() -> str:
    """The pod's name (``POD_NAME`` from the downward API, else the host name) and a random
    suffix, so a restarted container is a new candidate."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _micro_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderLease:
    """``api`` is a ``kubernetes.client.CoordinationV1Api``. Each call to it gets half the
    renew deadline (as client-go bounds a renewal by its deadline): a call that hangs fails,
    and the loop tries again, instead of holding the lease thread forever."""

    def __init__(self, api: Any, namespace: str, name: str, identity: str | None = None, *,
                 duration: float = 15.0, renew_deadline: float = 10.0,
                 retry_period: float = 2.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        if not 0 < retry_period < renew_deadline < duration:
            raise ValueError("leader election needs 0 < retry_period < renew_deadline < "
                             f"duration, got {retry_period}, {renew_deadline}, {duration}")
        self.api, self.namespace, self.name = api, namespace, name
        self.identity = identity or default_identity()
        self.duration, self.renew_deadline, self.retry_period = (
            duration, renew_deadline, retry_period)
        self.clock = clock
        self.request_timeout = kube_timeout(renew_deadline / 2)
        self._renewed_at: float | None = None
        self._observed: tuple[str, str, str] | None = None
        self._observed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ one attempt
    def _body(self, resource_version: str | None, holder: str, acquire: str | None,
              renew: str, transitions: int) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            meta["resourceVersion"] = resource_version
        spec: dict[str, Any] = {"holderIdentity": holder,
                                "leaseDurationSeconds": int(round(self.duration)),
                                "renewTime": renew, "leaseTransitions": transitions}
        if acquire is not None:
            spec["acquireTime"] = acquire
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": spec}

    def try_acquire_or_renew(self) -> bool:
        """Take or renew the Lease once; True when this process holds it now."""
        from kubernetes.client.exceptions import ApiException

        now = _micro_time(datetime.now(timezone.utc))
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace,
                                                   _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            try:
                self.api.create_namespaced_lease(
                    self.namespace, self._body(None, self.identity, now, now, 0),
                    _request_timeout=self.request_timeout)
            except ApiException as exc2:
                if exc2.status == 409:  # another candidate created it first
                    return False
                raise
            return self._held()
        spec, version = lease.spec, lease.metadata.resource_version
        holder = spec.holder_identity or ""
        record = (holder, str(spec.renew_time), str(version))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        duration = spec.lease_duration_seconds or self.duration
        if holder and holder != self.identity and \
                self.clock() - self._observed_at < duration:
            self._renewed_at = None
            return False  # held by a live holder
        ours = holder == self.identity
        acquire = spec.acquire_time if ours else None
        body = self._body(version, self.identity,
                          _micro_time(acquire) if isinstance(acquire, datetime) else now, now,
                          (spec.lease_transitions or 0) + (0 if ours or not holder else 1))
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, body,
                                              _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status == 409:  # changed since we read it: someone else renewed or took it
                self._renewed_at = None
                return False
            raise
        if not ours:
            log.info("lease %s/%s: acquired by %s (was %s)", self.namespace, self.name,
                     self.identity, holder or "free")
        return self._held()

    def _held(self) -> bool:
        self._renewed_at = self.clock()
        return True

    def leading(self) -> bool:
        """Whether this process may act now: its last renewal is within ``renew_deadline``."""
        at = self._renewed_at
        return at is not None and self.clock() - at < self.renew_deadline

    def release(self) -> None:
        """Give the Lease up if held, so a standby takes over at its next try."""
        from kubernetes.client.exceptions import ApiException

        if self._renewed_at is None:
            return
        self._renewed_at = None
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace,
                                                   _request_timeout=self.request_timeout)
            if lease.spec.holder_identity != self.identity:
                return
            now = _micro_time(datetime.now(timezone.utc))
            self.api.replace_namespaced_lease(self.name, self.namespace, self._body(
                lease.metadata.resource_version, "", None, now,
                lease.spec.lease_transitions or 0), _request_timeout=self.request_timeout)
            log.info("lease %s/%s: released by %s", self.namespace, self.name, self.identity)
        except (ApiException, OSError) as exc:
            log.warning("lease %s/%s: not released (%s); it expires in %.0fs", self.namespace,
                        self.name, exc, self.duration)

    # ------------------------------------------------------------------ the loop
    def start(self) -> LeaderLease:
        self._thread = threading.Thread(target=self._loop, name="leader-lease", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        was = False
        while not self._stop.is_set():
            try:
                self.try_acquire_or_renew()
            except Exception as exc:  # noqa: BLE001 - the API may be briefly unreachable
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            now = self.leading()
            if now != was:
                log.info("lease %s/%s: %s %s", self.namespace, self.name, self.identity,
                         "leads" if now else "stands by")
                was = now
            self._stop.wait(self.retry_period)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.retry_period + 5)
        self.release()
