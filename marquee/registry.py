"""The model registry: MLflow registered model versions that point at model bundles.

Each version's ``source`` is the bundle URI (MLflow 3 would otherwise record a ``models:/m-…``
logged-model source) and the contract's tags describe it: ``bundle_uri``, ``metric.<name>``,
``data_fingerprint``, ``params``, ``code_revision``, ``pipeline_run_id``,
``pipeline_run_uid``, ``gate.*`` and
``best_params``. Aliases ``production``, ``candidate`` and ``previous`` say what runs where;
the rollout controller is the only writer of ``production`` (through ``promote``).

``mlflow`` is imported only when a Registry is used, so the platform core imports without it.

Only a writer creates a registry: on a ``sqlite:///`` URI whose file does not exist, a Registry
made with ``create=False`` (every reader, through ``Registry.from_settings``: ``marquee serve``,
``drift check``, ``skew check``, ``registry …``) names the path instead of letting MLflow create
an empty database that answers "no such alias". A reader fails fast on an MLflow server that
does not answer too: its requests are retried twice with a 30 s timeout (MLflow's default, 7
retries with backoff, takes about 4 minutes) unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` /
``MLFLOW_HTTP_REQUEST_TIMEOUT`` say otherwise. Writers keep MLflow's patient retries: the
register step at the end of a long pipeline run rides out a short outage.

Two processes on one ``sqlite:///`` registry (two pipeline runs on one home, a promotion from
the CLI while the controller promotes) take turns through an flock on ``<db>.lock`` beside the
database: while MLflow creates or migrates its tables (two at once left a half-migrated
database that no process could open again), in ``promote`` (a read-modify-write of two aliases),
and in what a caller holds ``Registry.exclusive()`` around (the register step's "no production
yet, so this one becomes the first"). An MLflow server has no such lock: its writers are not
serialized.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from marquee import filelock
from marquee.errors import (
    AliasNotFoundError,
    InvalidArgumentError,
    InvalidReferenceError,
    MarqueeError,
    RegistryError,
    VersionNotFoundError,
    redact_uri,
)
from marquee.settings import MODEL_NAME, Settings

__all__ = [
    "PRODUCTION",
    "CANDIDATE",
    "PREVIOUS",
    "ALIASES",
    "GATE_DECISIONS",
    "ModelVersionInfo",
    "Promotion",
    "Registry",
    "version_number",
]

PRODUCTION, CANDIDATE, PREVIOUS = "production", "candidate", "previous"
ALIASES = (PRODUCTION, CANDIDATE, PREVIOUS)
GATE_DECISIONS = ("promoted-first", "candidate", "rejected")
_FIXED_TAGS = {"bundle_uri", "data_fingerprint", "params", "code_revision", "pipeline_run_id",
               "pipeline_run_uid", "best_params"}
_JSON_TAGS = {"params", "best_params"}
_TAG_PREFIXES = ("metric.", "gate.", "tuning.")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/]+))/?$")


class ModelVersionInfo(BaseModel):
    """One registered version as the platform sees it."""

    model_config = ConfigDict(frozen=True)

    version: int
    bundle_uri: str
    metrics: dict[str, float]
    tags: dict[str, str]
    aliases: list[str]
    created: datetime

    @property
    def gate_decision(self) -> str | None:
        return self.tags.get("gate.decision")


class Promotion(BaseModel):
    """What ``promote`` did: the new ``production`` and the version now called ``previous``."""

    production: int
    previous: int | None


#: The largest version number a registry can hold: MLflow keeps it in a signed 64-bit column.
_MAX_VERSION = 2**63 - 1


def version_number(version: int | str) -> int:
    """A registry version number (1, 2, …) from an int or its text; anything else raises."""
    text = str(version).strip()
    # isdecimal and ASCII: '²'.isdigit() is true, yet int('²') raises
    if isinstance(version, bool) or not (text.isascii() and text.isdecimal()) or int(text) < 1:
        raise InvalidReferenceError(f"{version!r} is not a version number (1, 2, …)")
    return int(text)


def _check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or alias == "latest" \
            or re.fullmatch(r"v\d+", alias):
        raise InvalidArgumentError("alias", alias, "an alias is lower-case letters, digits, "
                                   "'-' or '_', starts with a letter; not 'latest' or 'v<N>'")
    return alias


def _check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Only the contract's tag names, string values, JSON where JSON is due."""
    checked: dict[str, str] = {}
    for key, value in tags.items():
        if key not in _FIXED_TAGS and not key.startswith(_TAG_PREFIXES):
            raise InvalidArgumentError(
                f"tags[{key!r}]", value, "unknown tag; allowed: "
                f"{', '.join(sorted(_FIXED_TAGS))}, metric.<name>, gate.<name>, tuning.<name> "
                "(docs/CONTRACTS.md)")
        if not isinstance(value, str):
            raise InvalidArgumentError(f"tags[{key!r}]", value, "tag values are strings")
        if key in _JSON_TAGS:
            try:
                if not isinstance(json.loads(value), dict):
                    raise ValueError("not an object")
            except ValueError:
                raise InvalidArgumentError(f"tags[{key!r}]", value, "must be a JSON object") \
                    from None
        if key == "gate.decision" and value not in GATE_DECISIONS:
            raise InvalidArgumentError(f"tags[{key!r}]", value, f"one of {GATE_DECISIONS}")
        if key.startswith("metric."):
            _metric_value(key, value)
        checked[key] = value
    return checked


def _metric_value(key: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidArgumentError(key, value, "a metric is a number") from None
    if not math.isfinite(number):
        raise InvalidArgumentError(key, value, "a metric must be finite")
    return number


def _is_number(ref: int | str) -> bool:
    """A reference meant as a version number (``version_number`` then checks it): an int, or
    digits with or without surrounding spaces, as typed or pasted (" 3")."""
    return isinstance(ref, int) or str(ref).strip().isdigit()


def _is_uri(ref: str) -> bool:
    return "://" in ref or ref.startswith("/")


#: MLflow's HTTP client settings for a reader when the environment does not set them: a
#: server that does not answer fails a request within seconds (connection refused) or ~1.5
#: minutes (no reply), not after MLflow's 7 retries with exponential backoff (about 4 minutes).
#: MLflow reads them at every request, from the process environment.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


#: Per lock file: a thread lock (flock is per open file, so a second flock by the same process
#: would wait for itself) and how deep the holding thread is nested.
_LOCKS: dict[Path, tuple[threading.RLock, list[int]]] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Exclusive flock on ``path`` (created if it can be), re-entrant within a thread. A lock
    file that cannot be opened (a read-only directory: no writer can work there) is skipped."""
    with _LOCKS_GUARD:
        rlock, depth = _LOCKS.setdefault(path, (threading.RLock(), [0]))
    with rlock:
        if depth[0]:
            depth[0] += 1
            try:
                yield
            finally:
                depth[0] -= 1
            return
        try:
            with filelock.flock(path, optional=True):
                depth[0] = 1
                yield
        finally:
            depth[0] = 0


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other URIs and in-memory ones)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


class Registry:
    """Versions of one registered model (default ``movie-recommender``) in MLflow.

    ``create=False`` (readers) refuses a ``sqlite:///`` registry whose file does not exist,
    naming the path, and fails within seconds on an MLflow server that does not answer;
    writers that set up the registry on first use (the pipeline's evaluate and register
    steps) keep the default ``create=True`` and MLflow's own retries.
    """

    def __init__(self, tracking_uri: str, model_name: str = MODEL_NAME, *,
                 create: bool = True) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.create = create

    @classmethod
    def from_settings(cls, settings: Settings, *, create: bool = False) -> Registry:
        """The registry that ``settings`` name, for a reader unless ``create``. A reader of an
        explicit ``sqlite:///`` URI whose file does not exist gets an error naming the path;
        the embedded default (no ``registry_uri``: SQLite under ``MARQUEE_HOME``) cannot be
        mistyped and is created as needed, so a fresh home reads as an empty registry."""
        return cls(settings.resolved_registry_uri, settings.model_name,
                   create=create or settings.registry_uri is None)

    def __repr__(self) -> str:
        return f"Registry({redact_uri(self.tracking_uri)!r}, model_name={self.model_name!r})"

    @cached_property
    def client(self) -> Any:
        self._check_location()
        if not self.create and self.tracking_uri.startswith(("http://", "https://")):
            for name, value in _HTTP_DEFAULTS.items():  # a user's own setting wins
                os.environ.setdefault(name, value)
        from mlflow import MlflowClient

        if _sqlite_path(self.tracking_uri) is None:
            return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        # MLflow creates and migrates a database's tables when it opens its stores (the
        # client opens the tracking store, the registry's is opened here): one process at a
        # time, or they trip over each other's half-made tables
        with self._errors("opening the registry"), self.exclusive():
            client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            client._get_registry_client().store  # noqa: B018 - opened now, under the lock
        return client

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the registry against other writers on this machine: an flock on ``<db>.lock``
        for a ``sqlite:///`` registry (nothing for an MLflow server). Re-entrant in a thread."""
        path = _sqlite_path(self.tracking_uri)
        if path is None:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)  # MLflow would make it next
        path = path.resolve()  # one thread lock per file, however its URI spells it
        with _flock(path.with_name(path.name + ".lock")):
            yield

    def _check_location(self) -> None:
        """A reader's SQLite registry must exist: MLflow would create the file (and its
        directory), so a typo in the path answered "no such alias" from a new, empty one."""
        path = _sqlite_path(self.tracking_uri)
        if path is None or self.create:
            return
        if not path.parent.is_dir():
            raise InvalidArgumentError("registry_uri", self.tracking_uri,
                                       f"no such directory {path.parent}")
        if not path.is_file():
            raise InvalidArgumentError(
                "registry_uri", self.tracking_uri,
                f"no registry database {path} (nothing registered there yet, or a wrong path)")

    @contextmanager
    def _errors(self, what: str, not_found: Callable[[], MarqueeError] | None = None
                ) -> Iterator[None]:
        """Translate MLflow failures into RegistryError subclasses."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MarqueeError:
            raise
        except MlflowException as exc:
            if not_found is not None and exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise not_found() from exc
            raise RegistryError(redact_uri(f"{what} failed on {self.tracking_uri}: "
                                           f"{exc.message}")) from exc
        except Exception as exc:  # noqa: BLE001 - network, database: all registry failures
            raise RegistryError(redact_uri(f"{what} failed on {self.tracking_uri}: {exc}")
                                ) from exc

    # Reading ----------------------------------------------------------------------------
    def _aliases(self) -> dict[str, int]:
        """alias -> version for the model ({} when it has no versions yet)."""
        from mlflow.exceptions import MlflowException

        with self._errors("reading aliases"):
            try:
                model = self.client.get_registered_model(self.model_name)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return {}
                raise
        return {alias: int(v) for alias, v in (model.aliases or {}).items()}

    def _info(self, mv: Any, aliases: dict[str, int]) -> ModelVersionInfo:
        tags = dict(mv.tags or {})
        metrics = {}
        for key, value in tags.items():
            if key.startswith("metric."):
                try:  # a tag set by hand (MLflow UI) need not be a number: it stays a tag
                    metrics[key[len("metric."):]] = _metric_value(key, value)
                except InvalidArgumentError:
                    continue
        version = int(mv.version)
        return ModelVersionInfo(
            version=version, bundle_uri=tags.get("bundle_uri", mv.source), metrics=metrics,
            tags=tags, aliases=sorted(a for a, v in aliases.items() if v == version),
            created=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
        )

    def get_version(self, version: int | str) -> ModelVersionInfo:
        number = version_number(version)
        if number > _MAX_VERSION:  # no store holds it (SQLite refuses to even look it up)
            raise VersionNotFoundError(self.model_name, number)
        with self._errors(f"reading version {number}",
                          not_found=lambda: VersionNotFoundError(self.model_name, number)):
            mv = self.client.get_model_version(self.model_name, str(number))
        return self._info(mv, self._aliases())

    def list_versions(self) -> list[ModelVersionInfo]:
        """Every version, oldest first."""
        with self._errors("listing versions"):
            found = self.client.search_model_versions(
                f"name = '{self.model_name}'", order_by=["version_number ASC"])
        aliases = self._aliases()
        return sorted((self._info(mv, aliases) for mv in found), key=lambda i: i.version)

    def get_alias(self, alias: str) -> ModelVersionInfo | None:
        version = self._aliases().get(_check_alias(alias))
        return None if version is None else self.get_version(version)

    def resolve_version(self, ref: int | str) -> int:
        """A version number or an alias name -> an existing version number."""
        if _is_number(ref):
            return self.get_version(ref).version
        info = self.get_alias(str(ref))
        if info is None:
            raise AliasNotFoundError(self.model_name, str(ref))
        return info.version

    def resolve(self, ref: int | str) -> str:
        """``production`` | ``candidate`` | ``previous`` | ``<int>`` | ``models:/…`` | a URI
        -> the bundle URI."""
        if _is_number(ref):
            return self.get_version(ref).bundle_uri
        ref = str(ref).strip()
        match = _MODELS_URI.fullmatch(ref)
        if match:
            if match["name"] != self.model_name:
                raise InvalidReferenceError(f"{ref!r} names model {match['name']!r}, "
                                            f"not {self.model_name!r}")
            return self.resolve(match["version"] or match["alias"])
        if _is_uri(ref):
            return ref
        if not _ALIAS.fullmatch(ref):
            raise InvalidReferenceError(
                f"{ref!r} is not an alias ({', '.join(ALIASES)}), a version number or a URI")
        info = self.get_alias(ref)
        if info is None:
            raise AliasNotFoundError(self.model_name, ref)
        return info.bundle_uri

    # Writing ----------------------------------------------------------------------------
    def register(self, bundle_uri: str, metrics: Mapping[str, float],
                 tags: Mapping[str, str] | None = None) -> int:
        """Register a published bundle as a new version; return its number."""
        if not isinstance(bundle_uri, str) or not _is_uri(bundle_uri):
            raise InvalidArgumentError("bundle_uri", bundle_uri, "must be a URI (s3://, file://)")
        given = _check_tags(tags or {})
        if given.get("bundle_uri", bundle_uri) != bundle_uri:
            raise InvalidArgumentError("tags['bundle_uri']", given["bundle_uri"],
                                       f"differs from bundle_uri={bundle_uri!r}")
        all_tags = {**given, "bundle_uri": bundle_uri}
        for name, value in metrics.items():
            all_tags[f"metric.{name}"] = repr(_metric_value(f"metrics[{name!r}]", value))
        from mlflow.exceptions import MlflowException

        with self._errors(f"registering {bundle_uri}"):
            try:
                self.client.create_registered_model(
                    self.model_name, description="Marquee recommender; each version is a bundle.")
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            mv = self.client.create_model_version(
                self.model_name, source=bundle_uri, tags=all_tags, await_creation_for=0)
        return int(mv.version)

    def set_tags(self, version: int | str, tags: Mapping[str, str]) -> None:
        """Add or overwrite tags (the bundle URI of a version never changes)."""
        checked = _check_tags(tags)
        if "bundle_uri" in checked:
            raise InvalidArgumentError("tags['bundle_uri']", checked["bundle_uri"],
                                       "a version's bundle URI cannot change")
        number = self.get_version(version).version
        with self._errors(f"tagging version {number}"):
            for key, value in checked.items():
                self.client.set_model_version_tag(self.model_name, str(number), key, value)

    def set_alias(self, alias: str, version: int | str) -> None:
        number = self.get_version(version).version
        with self._errors(f"setting alias {alias!r}",
                          not_found=lambda: VersionNotFoundError(self.model_name, number)):
            self.client.set_registered_model_alias(self.model_name, _check_alias(alias),
                                                   str(number))

    def delete_alias(self, alias: str) -> None:
        """Remove an alias; removing one that is not set is not an error."""
        _check_alias(alias)
        if alias not in self._aliases():
            return
        with self._errors(f"deleting alias {alias!r}"):
            self.client.delete_registered_model_alias(self.model_name, alias)

    def promote(self, version: int | str) -> Promotion:
        """Make ``version`` production and the old production ``previous``.

        ``previous`` moves first, ``production`` last, so a rollback target exists whenever
        the new production is visible; if moving ``production`` fails, ``previous`` is put
        back. A ``candidate`` alias on the promoted version is removed. Promoting the version
        that is production already changes nothing but that last step, so promoting again
        after a promotion cut short finishes it (``previous`` is not touched). Two promotions
        at once on one SQLite registry take turns (``exclusive``), so ``previous`` is the
        production the other one left, not the one both read before either moved it.
        """
        with self.exclusive():
            return self._promote(version)

    def _promote(self, version: int | str) -> Promotion:
        target = self.get_version(version).version
        aliases = self._aliases()
        old, old_previous = aliases.get(PRODUCTION), aliases.get(PREVIOUS)
        if old == target:
            if aliases.get(CANDIDATE) == target:
                self.delete_alias(CANDIDATE)
            return Promotion(production=target, previous=old_previous)
        if old is not None:
            self.set_alias(PREVIOUS, old)
        try:
            self.set_alias(PRODUCTION, target)
        except BaseException:
            if old is not None:
                if old_previous is None:
                    self.delete_alias(PREVIOUS)
                else:
                    self.set_alias(PREVIOUS, old_previous)
            raise
        if aliases.get(CANDIDATE) == target:
            self.delete_alias(CANDIDATE)
        return Promotion(production=target, previous=old)
