"""The one exception hierarchy of the ``marquee`` package.

Every error carries an HTTP-ish ``status_code`` on its class, so a network boundary maps any
``MarqueeError`` to a response in one place (``exc.status_code``, ``str(exc)``) and a CLI maps
it to a message and a non-zero exit code.

    MarqueeError                       500  base: something Marquee itself refused or could not do
    ├── InvalidArgumentError           400  a value names what is wrong with it (field and value)
    ├── StoreError                     502  the object store backend failed (network, bucket, auth)
    │   ├── InvalidKeyError            400  key empty, absolute, with '..' or a reserved segment
    │   ├── ObjectNotFoundError        404  nothing stored under the key / prefix
    │   ├── DestinationExistsError     409  refusing to overwrite a non-empty destination
    │   └── ChecksumError              500  stored bytes differ from (or lack) the recorded sha256
    ├── BundleError                    400  not a valid model bundle (manifest, name, layout)
    │   ├── BundleNotFoundError        404  no bundle.json where a bundle was expected
    │   ├── BundleExistsError          409  bundles are immutable: that name/version is taken
    │   └── BundleIntegrityError       500  a file changed, is missing or is not listed (named)
    ├── RegistryError                  502  the model registry (MLflow) failed
    │   ├── InvalidReferenceError      400  not an alias, a version number or a bundle URI
    │   ├── VersionNotFoundError       404  no such model version
    │   └── AliasNotFoundError         404  no version carries that alias
    └── PipelineRunError               500  a training pipeline run failed (its step and cause)
"""

from __future__ import annotations

import re
from typing import ClassVar

__all__ = [
    "MarqueeError",
    "InvalidArgumentError",
    "error_text",
    "StoreError",
    "InvalidKeyError",
    "ObjectNotFoundError",
    "DestinationExistsError",
    "ChecksumError",
    "BundleError",
    "BundleNotFoundError",
    "BundleExistsError",
    "BundleIntegrityError",
    "RegistryError",
    "InvalidReferenceError",
    "VersionNotFoundError",
    "AliasNotFoundError",
    "PipelineRunError",
    "validation_text",
    "redact_uri",
    "unwind_on_sigterm",
]


class MarqueeError(Exception):
    """Base of every error raised on purpose by ``marquee``."""

    status_code: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        """The body a network boundary answers with."""
        return {"error": type(self).__name__, "status": self.status_code, "message": self.message}


class InvalidArgumentError(MarqueeError):
    status_code = 400

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"{field}={value!r}: {reason}")
        self.field = field
        self.value = value


# Object store ---------------------------------------------------------------------------
class StoreError(MarqueeError):
    status_code = 502


class InvalidKeyError(StoreError):
    status_code = 400

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid object key {key!r}: {reason}")
        self.key = key


class ObjectNotFoundError(StoreError):
    status_code = 404

    def __init__(self, key: str, where: str) -> None:
        super().__init__(f"no object under key {key!r} in {where}")
        self.key = key


class DestinationExistsError(StoreError):
    status_code = 409


class ChecksumError(StoreError):
    status_code = 500

    def __init__(self, key: str, expected: str | None, actual: str) -> None:
        if expected is None:
            detail = "no sha256 was recorded when it was stored"
        else:
            detail = f"recorded sha256 {expected}, got {actual}"
        super().__init__(f"integrity check failed for key {key!r}: {detail}")
        self.key = key
        self.expected = expected
        self.actual = actual


# Model bundle ---------------------------------------------------------------------------
class BundleError(MarqueeError):
    status_code = 400


class BundleNotFoundError(BundleError):
    status_code = 404


class BundleExistsError(BundleError):
    status_code = 409


class BundleIntegrityError(BundleError):
    status_code = 500

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"bundle file {file!r} {problem}")
        self.file = file
        self.problem = problem


# Registry -------------------------------------------------------------------------------
class RegistryError(MarqueeError):
    status_code = 502


class InvalidReferenceError(RegistryError):
    status_code = 400


class VersionNotFoundError(RegistryError):
    status_code = 404

    def __init__(self, model_name: str, version: int | str) -> None:
        super().__init__(f"model {model_name!r} has no version {version}")
        self.model_name = model_name
        self.version = version


class AliasNotFoundError(RegistryError):
    status_code = 404

    def __init__(self, model_name: str, alias: str) -> None:
        super().__init__(f"model {model_name!r} has no version with alias {alias!r}")
        self.model_name = model_name
        self.alias = alias


# Pipeline runs ---------------------------------------------------------------------------
class PipelineRunError(MarqueeError):
    status_code = 500

    def __init__(self, pipeline: str, step: str, cause: str) -> None:
        super().__init__(f"pipeline {pipeline!r} failed in step {step!r}: {cause}")
        self.pipeline = pipeline
        self.step = step
        self.cause = cause


def error_text(exc: Exception) -> str:
    """One line for a user: a pydantic ``ValidationError`` through :func:`validation_text`,
    anything else as ``str(exc)`` with its line breaks folded."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if isinstance(exc, ValidationError):
        return validation_text(exc)
    text = str(exc)
    if isinstance(exc, SettingsError) and exc.__cause__ is not None:  # e.g. env var not JSON
        text = f"{text}: {exc.__cause__}"
    return " ".join(text.split())


def validation_text(exc: Exception) -> str:
    """A pydantic ``ValidationError`` in one line: ``field.path: message (got value); …``
    (JSON that does not parse is named without its input: that is the whole document; a
    URI's password is masked, as pydantic echoes a refused store or endpoint URI whole)."""
    return "; ".join(
        f"{'.'.join(str(x) for x in err.get('loc', ())) or 'value'}: {err.get('msg', '')}"
        + ("" if err.get("type") == "json_invalid" else
           f" (got {redact_uri(repr(err.get('input')))})")
        for err in exc.errors())  # type: ignore[attr-defined]


def redact_uri(text: str) -> str:
    """``text`` with the password of every URI's user info in it replaced by ``***``, for
    messages, logs and reprs (``postgresql://mlflow:secret@db/mlflow`` →
    ``postgresql://mlflow:***@db/mlflow``; MLflow's own errors quote the URL whole). An
    http(s) URI's user info without a password is a token (``https://ghp_…@host``, as
    MLflow, Git and HTTP services take one) and is masked whole: ``https://***@host``, as is
    any user info of an object-store URI (``s3://TOKEN@bucket``: no bucket has a user, so it
    is a key or a token); the bare user name of any other scheme (``postgresql://mlflow@db``)
    is kept."""
    text = _STORE_USER.sub(r"\1***@", text)
    return _HTTP_TOKEN.sub(r"\1***@", _URI_PASSWORD.sub(r"\1:***@", text))


# the password runs to the last "@" before the host: one typed with a raw "@" is masked whole
_URI_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*):[^\s/]*@")
# after the above, an http(s) user info with no ":" left in it is a token (git+https too)
_HTTP_TOKEN = re.compile(r"(?i)\b((?:[a-z][a-z0-9.-]*\+)?https?://)[^\s/?#:]+@")
# an object-store URI's user info, whole: a key id and its secret, or a token
_STORE_USER = re.compile(r"(?i)\b((?:s3a?|gs)://)[^\s/?#]+@")


def unwind_on_sigterm() -> None:
    """SIGTERM unwinds this process like Ctrl-C (``SystemExit(128 + 15)``), so ``finally``
    blocks and context managers run: what the process started (child runs, servers,
    temporary directories) is stopped or removed with it, not left behind as the default
    handler's immediate death leaves it. Call it from the main thread."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)

