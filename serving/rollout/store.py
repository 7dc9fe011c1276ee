"""Where rollouts and their status live: a local directory, or the Kubernetes API.

``StatusStore`` is the narrow interface the controller and the CLI use. Two backends:

* :class:`FileStatusStore` — ``<root>/<name>/rollout.yaml`` (the spec as applied),
  ``status.json`` (written atomically: temp file, fsync, rename) and ``command`` (a pending
  ``promote``/``abort`` from the CLI). A controller holds ``controller.lock`` (flock), which
  the kernel releases when the process dies, so a restarted controller can take over.
* :class:`KubernetesStatusStore` — the ``ModelRollout`` custom resource: the spec is the
  object's ``spec``, the status is written through the status subresource
  (``patch_namespaced_custom_object_status``) with the resourceVersion last read as its
  precondition (a stale writer gets :class:`StatusConflict`), and commands are the annotation
  ``marquee.dev/command`` (what ``kubectl annotate`` would set).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml

from marquee.durable import write_text_atomic, write_text_exclusive
from marquee.filelock import LockHeld, flock
from serving.rollout.analysis import Command
from serving.rollout.spec import ModelRollout, SpecError, parse_rollout
from serving.rollout.status import Phase, RolloutStatus

__all__ = ["StoredRollout", "StatusStore", "FileStatusStore", "KubernetesStatusStore",
           "RolloutNotFound", "RolloutExists", "RolloutUnreadable", "ROLLOUT_UNUSABLE",
           "ControllerBusy", "StatusConflict", "COMMAND_ANNOTATION", "GROUP", "VERSION", "PLURAL",
           "KUBE_REQUEST_TIMEOUT", "kube_timeout", "load_kube_config", "rollout_in_the_way"]

GROUP, VERSION, PLURAL = "marquee.dev", "v1alpha1", "modelrollouts"
COMMAND_ANNOTATION = "marquee.dev/command"
_COMMANDS = ("promote", "abort")


class RolloutNotFound(KeyError):
    pass


class RolloutExists(ValueError):
    pass


class RolloutUnreadable(ValueError):
    """A stored rollout or status that does not parse (damaged, or written by a newer
    Marquee): the message names the file or object and what is wrong with it."""


def _status_from(data: Any, where: str) -> RolloutStatus:
    from pydantic import ValidationError

    from marquee.errors import validation_text

    if data is not None and not isinstance(data, dict):
        raise RolloutUnreadable(f"{where}: status is not a mapping (got "
                                f"{type(data).__name__})")
    try:
        return RolloutStatus.from_dict(data)
    except ValidationError as exc:
        raise RolloutUnreadable(f"{where}: status not readable by this version of Marquee "
                                f"(damaged, or written by a newer one): "
                                f"{validation_text(exc)}") from None


#: A rollout that is gone or can no longer be read (its spec or its status): nothing to tick.
ROLLOUT_UNUSABLE = (RolloutNotFound, RolloutUnreadable, SpecError)


class ControllerBusy(RuntimeError):
    """Another live controller holds this rollout."""


class StatusConflict(RuntimeError):
    """The status changed since this store read it (another controller, e.g. the new leader
    after this one's lease lapsed mid-tick, wrote it): the older decision is not written over
    it. The tick fails and the next one starts from what is stored."""


@dataclass(frozen=True)
class StoredRollout:
    rollout: ModelRollout
    status: RolloutStatus
    #: When the store created it (unix seconds; None when the store does not say): orders
    #: two rollouts of one model that wait to start (:func:`rollout_in_the_way`)
    created: float | None = None

    @property
    def name(self) -> str:
        return self.rollout.name

    @property
    def order(self) -> tuple[float, str]:
        """Creation order (the name breaks ties, and orders rollouts of unknown age)."""
        return (self.created if self.created is not None else float("inf"), self.name)


@runtime_checkable
class StatusStore(Protocol):
    def create(self, rollout: ModelRollout) -> None: ...
    def get(self, name: str) -> StoredRollout: ...
    def get_status(self, name: str) -> RolloutStatus: ...
    def list(self) -> list[str]: ...
    def save_status(self, name: str, status: RolloutStatus) -> None: ...
    def request(self, name: str, command: Command) -> None: ...
    def pending_command(self, name: str) -> Command | None: ...
    def clear_command(self, name: str, command: Command) -> None: ...


class FileStatusStore:
    """Rollouts under a local directory (the embedded default: ``<MARQUEE_HOME>/rollouts``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _dir(self, name: str) -> Path:
        if "/" in name or name.startswith("."):
            raise ValueError(f"invalid rollout name {name!r}")
        return self.root / name

    def create(self, rollout: ModelRollout) -> None:
        """Create-if-absent, atomically: the spec is written to a synced temp file and
        hard-linked to ``rollout.yaml``, which fails when that name exists. Of two creates of
        one name at once (two ``rollout start``), one wins and the other gets
        :class:`RolloutExists`; a check then a write let both pass the check, and the second
        spec replaced the first under its running controller."""
        d = self._dir(rollout.name)
        final = d / "rollout.yaml"
        if final.exists():
            raise RolloutExists(f"rollout {rollout.name} exists in {d}")
        try:
            write_text_exclusive(final, rollout.to_yaml())
        except FileExistsError:
            raise RolloutExists(f"rollout {rollout.name} exists in {d}") from None
        write_text_atomic(d / "status.json", json.dumps(RolloutStatus().to_dict(), indent=2))

    def get(self, name: str) -> StoredRollout:
        d = self._dir(name)
        try:
            doc = yaml.safe_load((d / "rollout.yaml").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RolloutNotFound(name) from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise RolloutUnreadable(f"{d / 'rollout.yaml'}: not valid YAML: "
                                    f"{' '.join(str(exc).split())}") from None
        rollout = parse_rollout(doc, str(d / "rollout.yaml"))
        try:
            created = (d / "rollout.yaml").stat().st_mtime  # written once, by create()
        except OSError:
            created = None
        return StoredRollout(rollout, self._status(d), created)

    def spec_document(self, name: str) -> Any:
        """The rollout's ``spec`` as stored, not validated (what a spec refused for one field
        still says: its model, strategy, salt)."""
        doc = yaml.safe_load((self._dir(name) / "rollout.yaml").read_text(encoding="utf-8"))
        return doc.get("spec") if isinstance(doc, dict) else None

    def get_status(self, name: str) -> RolloutStatus:
        """The status alone, the spec not parsed: readable when the spec no longer is."""
        d = self._dir(name)
        if not (d / "rollout.yaml").exists():
            raise RolloutNotFound(name)
        return self._status(d)

    @staticmethod
    def _status(d: Path) -> RolloutStatus:
        path = d / "status.json"
        try:
            data = json.loads(path.read_bytes())  # UTF-8 whatever the locale
        except FileNotFoundError:
            data = None
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise RolloutUnreadable(f"{path}: damaged, not JSON ({exc})") from None
        return _status_from(data, str(path))

    def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "rollout.yaml").is_file())

    def save_status(self, name: str, status: RolloutStatus) -> None:
        d = self._dir(name)
        if not (d / "rollout.yaml").exists():
            raise RolloutNotFound(name)
        write_text_atomic(d / "status.json", json.dumps(status.to_dict(), indent=2))

    def request(self, name: str, command: Command) -> None:
        if command not in _COMMANDS:
            raise ValueError(f"command must be one of {_COMMANDS}, got {command!r}")
        self.get_status(name)  # it exists (its spec may no longer parse: abort it all the same)
        write_text_atomic(self._dir(name) / "command", command)

    def pending_command(self, name: str) -> Command | None:
        try:
            text = (self._dir(name) / "command").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text if text in _COMMANDS else None  # type: ignore[return-value]

    def clear_command(self, name: str, command: Command) -> None:
        path = self._dir(name) / "command"
        if self.pending_command(name) == command:
            path.unlink(missing_ok=True)

    def lock(self, name: str) -> ControllerLock:
        return ControllerLock(self._dir(name) / "controller.lock")

    def manager_lock(self) -> ControllerLock:
        """Held by a ``marquee rollout controller`` for its life: one per store."""
        return ControllerLock(self.root / "manager.lock")


class ControllerLock:
    """An exclusive flock on a file, taken without waiting; released by the kernel if the
    holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._held: ExitStack | None = None

    def __enter__(self) -> ControllerLock:
        with ExitStack() as stack:
            try:
                stack.enter_context(flock(self.path, wait=False, record_pid=True))
            except LockHeld:
                raise ControllerBusy(f"another controller holds {self.path}") from None
            self._held = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None


#: Seconds any one Kubernetes API call may take (the official client has no default).
KUBE_REQUEST_TIMEOUT = 30.0


def kube_timeout(seconds: float) -> tuple[float, float]:
    """``_request_timeout`` for the official client: (connect, read). It must be a pair: a
    lone float is silently ignored (its ``rest.py`` accepts only an ``int`` or a 2-tuple)."""
    return (seconds, seconds)


def load_kube_config() -> None:
    """Configure the ``kubernetes`` client: the pod's service account in a cluster, else the
    kubeconfig (``KUBECONFIG``)."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except config.ConfigException as exc:
            from marquee.errors import InvalidArgumentError

            raise InvalidArgumentError(
                "KUBECONFIG", os.environ.get("KUBECONFIG", "~/.kube/config"),
                f"no usable Kubernetes configuration ({exc}); run in a pod or point KUBECONFIG "
                "at a kubeconfig") from None


def _created(obj: dict[str, Any]) -> float | None:
    """``metadata.creationTimestamp`` (RFC 3339, set by the API server) in unix seconds."""
    from datetime import datetime

    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def rollout_in_the_way(store: StatusStore, model_name: str, mine: StoredRollout | None = None,
                       ) -> StoredRollout | None:
    """Another rollout of ``model_name`` that keeps ``mine`` (or a new rollout, when None)
    from starting, or None.

    A model has one router routing its traffic and one ``production`` alias, so two rollouts
    of it would undo each other (as Flagger and Argo Rollouts allow one canary per target).
    What is in the way: any other rollout that runs (not Pending and not ended), and one
    still Pending that was created before ``mine`` (so of two created together the first
    starts and the second fails, whichever controller ticks first). A rollout whose spec or
    status cannot be read is not counted (its model is unknown)."""
    name = mine.name if mine is not None else None
    for other in store.list():
        if other == name:
            continue
        try:
            stored = store.get(other)
        except (*ROLLOUT_UNUSABLE, ValueError):
            continue
        if stored.rollout.spec.model_name != model_name or stored.status.phase.terminal:
            continue
        if mine is None or stored.status.phase != Phase.PENDING or stored.order < mine.order:
            return stored
    return None


class KubernetesStatusStore:
    """``ModelRollout`` objects in one namespace, through the official Python client.

    ``api`` is a ``kubernetes.client.CustomObjectsApi``; build it from the in-cluster service
    account (``kubernetes.config.load_incluster_config()``) or a kubeconfig. Every call gets
    ``request_timeout`` seconds: the client sets none of its own, so an API server (or a
    proxy in front of it) that stops answering would otherwise hang the controller's loop.
    """

    def __init__(self, api: Any, namespace: str = "default",
                 request_timeout: float = KUBE_REQUEST_TIMEOUT) -> None:
        self.api = api
        self.namespace = namespace
        self.request_timeout = kube_timeout(request_timeout)
        # name -> the resourceVersion of the object as this store last read or wrote it
        self._read: dict[str, str | None] = {}

    def _call(self, fn: Any, *args: Any, name: str | None = None,
              conflict: Callable[[], Exception] | None = None, **kw: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(GROUP, VERSION, self.namespace, PLURAL, *args,
                      _request_timeout=self.request_timeout, **kw)
        except ApiException as exc:
            if exc.status == 404 and name is not None:
                raise RolloutNotFound(name) from None
            if exc.status == 409:
                raise (conflict() if conflict is not None else RolloutExists(str(name))) \
                    from None
            raise

    @staticmethod
    def _version(obj: Any) -> str | None:
        return ((obj or {}).get("metadata") or {}).get("resourceVersion") \
            if isinstance(obj, dict) else None

    def create(self, rollout: ModelRollout) -> None:
        body = rollout.model_dump(by_alias=True, exclude_none=True, mode="json")
        body.pop("status", None)
        body["metadata"]["namespace"] = self.namespace
        self._call(self.api.create_namespaced_custom_object, body, name=rollout.name)

    def _object(self, name: str) -> dict[str, Any]:
        return self._call(self.api.get_namespaced_custom_object, name, name=name)

    def spec_document(self, name: str) -> Any:
        """The object's ``spec`` as the API has it, not validated."""
        return self._object(name).get("spec")

    def get(self, name: str) -> StoredRollout:
        obj = self._object(name)
        self._read[name] = self._version(obj)
        status = _status_from(obj.get("status"), f"{self.namespace}/{name}")
        doc = {k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in obj}
        return StoredRollout(parse_rollout(doc, f"{self.namespace}/{name}"), status,
                             _created(obj))

    def get_status(self, name: str) -> RolloutStatus:
        """The status alone, the spec not parsed: readable when the spec no longer is. A
        later :meth:`save_status` is conditional on the object as read here."""
        obj = self._object(name)
        self._read[name] = self._version(obj)
        return _status_from(obj.get("status"), f"{self.namespace}/{name}")

    def list(self) -> list[str]:
        objs = self._call(self.api.list_namespaced_custom_object)
        return sorted(o["metadata"]["name"] for o in objs.get("items", []))

    def save_status(self, name: str, status: RolloutStatus) -> None:
        """Written only over the object as this store last read or wrote it (its
        resourceVersion is the patch's precondition): a controller whose tick outlived its
        lease cannot put an older decision over the new leader's."""
        body: dict[str, Any] = {"status": status.to_dict()}
        seen = self._read.get(name)
        if seen is not None:
            body["metadata"] = {"resourceVersion": seen}

        def conflict() -> StatusConflict:  # later saves conflict too, until a new get()
            return StatusConflict(
                f"rollout {self.namespace}/{name}: its status changed since this controller "
                f"read it (resourceVersion {seen}); not overwritten")

        obj = self._call(self.api.patch_namespaced_custom_object_status, name, body,
                         name=name, conflict=conflict)
        self._read[name] = self._version(obj)

    def request(self, name: str, command: Command) -> None:
        if command not in _COMMANDS:
            raise ValueError(f"command must be one of {_COMMANDS}, got {command!r}")
        self._call(self.api.patch_namespaced_custom_object, name,
                   {"metadata": {"annotations": {COMMAND_ANNOTATION: command}}}, name=name)

    def pending_command(self, name: str) -> Command | None:
        annotations = self._object(name).get("metadata", {}).get("annotations") or {}
        cmd = annotations.get(COMMAND_ANNOTATION)
        return cmd if cmd in _COMMANDS else None

    def clear_command(self, name: str, command: Command) -> None:
        obj = self._object(name)
        annotations = obj.get("metadata", {}).get("annotations") or {}
        if annotations.get(COMMAND_ANNOTATION) != command:
            return
        patch: dict[str, Any] = {"metadata": {"annotations": {COMMAND_ANNOTATION: None}}}
        seen = self._read.get(name)
        if seen is not None and self._version(obj) == seen:
            # Nobody else wrote since this store did: the object this write makes is still
            # the one it knows (its own write must not look like someone else's to the next
            # save_status), provided nobody writes in between either.
            try:
                done = self._call(self.api.patch_namespaced_custom_object, name,
                                  {"metadata": {**patch["metadata"], "resourceVersion": seen}},
                                  name=name, conflict=lambda: StatusConflict(name))
            except StatusConflict:
                pass  # someone else wrote meanwhile: the next save_status must conflict
            else:
                self._read[name] = self._version(done)
                return
        self._call(self.api.patch_namespaced_custom_object, name, patch, name=name)
