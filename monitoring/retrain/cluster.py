"""Closing the loop in Kubernetes: a retrained version that passes the gate goes into a shadow
rollout through the Kubernetes API.

The local after-run step (:class:`monitoring.retrain.rollout.AutoRollout`) starts processes.
In a cluster the same decision creates objects instead, which the parts already running
there act on:

1. the candidate's **InferenceService**, from the template the chart renders for it
   (``MARQUEE_RETRAIN_INFERENCE_SERVICE_TEMPLATE``: the chart's own InferenceService of a
   ``shadow: true`` version, with ``__MARQUEE_VERSION__`` where the version goes), so it has
   the resources, logger, security context and shadow scheduling of every other version;
   an InferenceService of that name that already exists is kept;
2. once KServe reports it ``Ready`` (within ``server_ready_timeout``), the **ModelRollout**
   (``strategy: shadow`` from ``production``, ``MARQUEE_RETRAIN_ROLLOUT_SPEC`` merged over
   it), which the rollout controller Deployment picks up; one of that name and spec that
   has not ended is kept (the step run again after the trigger died), as ``marquee rollout
   start`` resumes it. The router reaches the version
   through its predictor URL template, so nothing is announced to it.

At start-up (:meth:`ClusterAutoRollout.resync_started`, called by the trigger) the
InferenceServices this step created (the versions of the trigger's own succeeded candidate
runs, carrying the ``marquee.dev/started-by`` annotation) get the template's ``checksum/*`` pod
annotations, so a ``helm upgrade`` that changes the settings or model-server ConfigMaps (which
also restarts the trigger, whose template ConfigMap changed) restarts them too, as it does the
chart's own. Only those annotations are patched, never the spec: once a version is added to
``models.versions`` Helm owns its InferenceService with that entry's spec (no longer a shadow
one), which the trigger's template would overwrite, while the checksums, computed from the
ConfigMaps alone, are the same in both; spec-only changes (an image, resources) reach a
candidate only through ``models.versions``.

The decisions and their log lines are those of the local step (``rollout-started``,
``rollout-skipped``, ``rollout-failed``, source ``auto-rollout``). A candidate that never
becomes ready gets no rollout (``rollout-failed``, naming KServe's condition); its
InferenceService is left for the on-call engineer to inspect.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from monitoring.retrain.models import RunRecord, RunStatus
from monitoring.retrain.rollout import (AfterRunRollout, AutoRolloutMode, rollout_document,
                                        skip_reason)

__all__ = ["ClusterAutoRollout", "VERSION_PLACEHOLDER", "checksum_annotations",
           "render_inference_service"]

log = logging.getLogger("marquee.retrain.cluster")

VERSION_PLACEHOLDER = "__MARQUEE_VERSION__"
ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
STARTED_BY = {"marquee.dev/started-by": "retrain-trigger"}
CHECKSUM_PREFIX = "checksum/"
#: At most this many of the newest candidate versions are brought up to date at start-up, so a
#: trigger with a long history does not spend its start on versions long deleted.
RESYNC_LIMIT = 50


def render_inference_service(template: str, version: str, namespace: str) -> dict[str, Any]:
    """The template with ``version`` in place of :data:`VERSION_PLACEHOLDER`, as an object."""
    if not re.fullmatch(r"[1-9][0-9]*", str(version)):
        raise ValueError(f"model version {version!r} is not a registry version number")
    if VERSION_PLACEHOLDER not in template:
        raise ValueError(f"the InferenceService template has no {VERSION_PLACEHOLDER} "
                         "placeholder")
    obj = yaml.safe_load(template.replace(VERSION_PLACEHOLDER, str(version)))
    if not isinstance(obj, dict) or obj.get("kind") != "InferenceService" or \
            obj.get("apiVersion") != f"{ISVC_GROUP}/{ISVC_VERSION}":
        raise ValueError("the InferenceService template is not one "
                         f"{ISVC_GROUP}/{ISVC_VERSION} InferenceService")
    meta = obj.setdefault("metadata", {})
    meta["namespace"] = namespace
    meta["annotations"] = {**(meta.get("annotations") or {}), **STARTED_BY}
    return obj


def checksum_annotations(isvc: Mapping[str, Any]) -> dict[str, str]:
    """The ``checksum/*`` pod annotations of an InferenceService's predictor: the hashes of
    the ConfigMaps its server reads through ``envFrom``, whose change must restart it."""
    annotations = ((isvc.get("spec") or {}).get("predictor") or {}).get("annotations") or {}
    return {k: str(v) for k, v in annotations.items() if k.startswith(CHECKSUM_PREFIX)}


def candidate_versions(runs: Iterable[RunRecord], model_name: str) -> list[str]:
    """The versions, newest first and once each, whose InferenceService the step created:
    succeeded runs of ``model_name`` that the step did not skip, whatever the mode is now."""
    return list(dict.fromkeys(
        str(run.model_version) for run in runs
        if run.status is RunStatus.SUCCEEDED and skip_reason("shadow", model_name, run) is None))


def _ready(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """KServe's Ready condition of an InferenceService: (ready, what it says)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            said = " ".join(str(cond.get(k)) for k in ("reason", "message") if cond.get(k))
            return str(cond.get("status")) == "True", said or f"Ready={cond.get('status')}"
    return False, "no Ready condition yet"


class ClusterAutoRollout(AfterRunRollout):
    """The after-run step of the trigger in Kubernetes (``MARQUEE_RETRAIN_ROLLOUT_TARGET=
    kubernetes``). ``api`` is a ``kubernetes.client.CustomObjectsApi``."""

    def __init__(self, *, api: Any, namespace: str, model_name: str, template: str,
                 mode: AutoRolloutMode = "shadow",
                 spec_overrides: Mapping[str, Any] | None = None,
                 server_ready_timeout: float = 600.0, poll_seconds: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not namespace:
            raise ValueError("the Kubernetes rollout needs a namespace "
                             "(MARQUEE_RETRAIN_NAMESPACE)")
        self.api = api
        self.namespace = namespace
        self.model_name = model_name
        self.template = template
        self.mode = mode
        self.spec_overrides = dict(spec_overrides or {})
        self.server_ready_timeout = server_ready_timeout
        self.poll_seconds = poll_seconds
        self._clock = clock
        self._closed = threading.Event()
        from serving.rollout.store import KUBE_REQUEST_TIMEOUT, kube_timeout

        self._request_timeout = kube_timeout(KUBE_REQUEST_TIMEOUT)  # as the store's calls

    @classmethod
    def from_template_file(cls, path: str | Path, **kw: Any) -> ClusterAutoRollout:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ValueError(f"MARQUEE_RETRAIN_INFERENCE_SERVICE_TEMPLATE={str(path)!r}: "
                             f"{exc}") from exc
        render_inference_service(text, "1", kw.get("namespace") or "default")  # fail at start
        return cls(template=text, **kw)

    # the effects -------------------------------------------------------------------------
    def _isvc(self, fn: str, *args: Any) -> Any:
        return getattr(self.api, fn)(ISVC_GROUP, ISVC_VERSION, self.namespace, ISVC_PLURAL,
                                     *args, _request_timeout=self._request_timeout)

    def _start(self, version: str) -> tuple[str, str]:
        from kubernetes.client.exceptions import ApiException

        from serving.rollout.spec import parse_rollout
        from serving.rollout.store import KubernetesStatusStore, RolloutExists

        doc = rollout_document(self.model_name, version, self.spec_overrides)
        doc["metadata"]["namespace"] = self.namespace
        rollout = parse_rollout(doc, "MARQUEE_RETRAIN_ROLLOUT_SPEC")  # refuse a bad spec early
        isvc = render_inference_service(self.template, version, self.namespace)
        isvc_name = isvc["metadata"]["name"]
        try:
            self._isvc("create_namespaced_custom_object", copy.deepcopy(isvc))
            made = "created"
        except ApiException as exc:
            if exc.status != 409:
                raise RuntimeError(f"InferenceService {isvc_name} not created "
                                   f"({exc.status} {exc.reason}): {exc.body}") from None
            made = "already there, kept"
        log.info("InferenceService %s/%s %s; waiting until it is Ready", self.namespace,
                 isvc_name, made)
        self._wait_ready(isvc_name)
        store = KubernetesStatusStore(self.api, self.namespace)
        created = "created"
        try:
            store.create(rollout)
        except RolloutExists:
            # this step's own, created by a trigger that died before logging its decision (the
            # step is run again after a restart): kept, as `marquee rollout start` resumes one
            try:
                current = store.get(rollout.name)
            except Exception as exc:  # noqa: BLE001 - gone again, damaged: not ours to judge
                raise RuntimeError(f"a ModelRollout named {rollout.name} already exists in "
                                   f"{self.namespace} and cannot be read: {exc}") from None
            if current.rollout.spec != rollout.spec or current.status.phase.terminal:
                raise RuntimeError(
                    f"a ModelRollout named {rollout.name} already exists in {self.namespace}"
                    + (f" and has ended ({current.status.phase.value})"
                       if current.status.phase.terminal else " with a different spec"))
            created = f"already there ({current.status.phase.value}), kept"
        except ApiException as exc:
            raise RuntimeError(f"ModelRollout {rollout.name} not created ({exc.status} "
                               f"{exc.reason}): {exc.body}") from None
        detail = (f"shadow rollout {rollout.name} of version {version} against production "
                  f"{created} in namespace {self.namespace}; InferenceService {isvc_name} "
                  f"{made}, Ready")
        log.info(detail)
        return detail, rollout.name

    def _wait_ready(self, name: str) -> None:
        deadline = time.monotonic() + self.server_ready_timeout
        said = "not read yet"
        while True:
            try:
                ready, said = _ready(self._isvc("get_namespaced_custom_object", name))
            except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
                ready, said = False, f"reading it failed: {exc}"
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"InferenceService {name} not Ready within "
                                   f"{self.server_ready_timeout:.0f}s ({said}); no rollout "
                                   "was created")
            if self._closed.wait(self.poll_seconds):
                raise RuntimeError("the trigger is stopping")

    # the InferenceServices created before the last helm upgrade ---------------------------
    def resync_started(self, runs: Callable[[], Iterable[RunRecord]]
                       ) -> threading.Thread | None:
        """Bring the InferenceServices this step created up to the template's checksum
        annotations, on a thread (a slow API server must not hold up the trigger's start).
        ``runs`` lists the trigger's runs, newest first; it is called on that thread."""
        if not self.template:  # auto_rollout none without a template: nothing was created
            return None
        thread = threading.Thread(target=self._resync, args=(runs,), daemon=True,
                                  name="retrain-isvc-resync")
        thread.start()
        return thread

    def _resync(self, runs: Callable[[], Iterable[RunRecord]]) -> None:
        """Every failure is a warning: the trigger works on with stale model servers."""
        try:
            versions = candidate_versions(runs(), self.model_name)
        except Exception as exc:  # noqa: BLE001 - the state volume; the next start tries again
            log.warning("the retrained versions' InferenceServices were not brought up to the "
                        "current template: the trigger's runs could not be read: %s", exc)
            return
        if len(versions) > RESYNC_LIMIT:
            log.warning("%d retrained versions; only the newest %d InferenceServices are "
                        "brought up to the current template (versions %s are left as they are)",
                        len(versions), RESYNC_LIMIT, ", ".join(versions[RESYNC_LIMIT:]))
            versions = versions[:RESYNC_LIMIT]
        outcomes: dict[str, list[str]] = {}
        for version in versions:
            if self._closed.is_set():
                return
            outcomes.setdefault(self._resync_one(version), []).append(version)
        if versions:
            log.info("InferenceServices of retrained versions against the current template's "
                     "checksums: %s", "; ".join(f"{what}: {', '.join(vs)}"
                                                for what, vs in outcomes.items()))

    def _resync_one(self, version: str) -> str:
        """Patch one version's checksum annotations if they are stale; what happened."""
        from kubernetes.client.exceptions import ApiException

        try:
            want_obj = render_inference_service(self.template, version, self.namespace)
        except ValueError as exc:  # a version the registry numbered oddly: not ours to guess
            log.warning("version %s: its InferenceService not checked: %s", version, exc)
            return "not checked"
        name, want = want_obj["metadata"]["name"], checksum_annotations(want_obj)
        try:
            live = self._isvc("get_namespaced_custom_object", name)
        except ApiException as exc:
            if exc.status == 404:
                return "gone"
            log.warning("InferenceService %s/%s not read, its checksums not checked (%s %s)",
                        self.namespace, name, exc.status, exc.reason)
            return "not checked"
        except Exception as exc:  # noqa: BLE001 - unreachable API server: a warning
            log.warning("InferenceService %s/%s not read, its checksums not checked: %s",
                        self.namespace, name, exc)
            return "not checked"
        annotations = (live.get("metadata") or {}).get("annotations") or {}
        if any(annotations.get(k) != v for k, v in STARTED_BY.items()):
            return "not created by the trigger, left alone"
        have = checksum_annotations(live)
        stale = {k: v for k, v in want.items() if have.get(k) != v}
        if not stale:
            return "up to date"
        try:
            self._isvc("patch_namespaced_custom_object", name,
                       {"spec": {"predictor": {"annotations": stale}}})
        except Exception as exc:  # noqa: BLE001 - e.g. 403: a Role without patch
            said = f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else str(exc)
            log.warning("InferenceService %s/%s keeps its old configuration: patching %s "
                        "failed (%s)", self.namespace, name, ", ".join(sorted(stale)), said)
            return "patch failed"
        log.info("InferenceService %s/%s: %s set to the current template's, so KServe restarts "
                 "it with the current settings", self.namespace, name, ", ".join(sorted(stale)))
        return "patched"

    def close(self) -> None:
        self._closed.set()

    def status(self) -> dict[str, Any]:
        return {"mode": self.mode, "target": "kubernetes", "namespace": self.namespace}
