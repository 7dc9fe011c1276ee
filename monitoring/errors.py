"""The exception hierarchy of the ``monitoring`` package.

Each error carries an HTTP status on its class and a CLI exit code, mapped once at the
boundary (the retrain webhook's exception handler, the commands' ``main`` functions).

    MonitoringError (marquee.errors.MarqueeError)  500  base
    ├── MonitoringInputError                       400  exit 2: bad configuration or arguments
    │   └── NoDataError                            404  exit 2: nothing to check (empty window,
    │                                                   missing reference)
    ├── UnauthorizedError                          401  missing or wrong bearer token
    ├── MalformedAlertError                        400  body is not JSON or not a v4 message
    │   └── BodyTooLargeError                      413  a body over the webhook's limit
    ├── LaunchError                                502  the pipeline launcher failed to start a run
    │   └── StoppedFollowing                       502  the trigger stopped following a remote
    │                                                   run, which goes on (handed over)
    ├── RunNotCancelableError                      409  exit 1: a cancel for a run that has ended,
    │                                                   or that another trigger process runs
    └── StateCorruptError                          503  exit 1: the retrain trigger's state file
                                                        cannot be read; no decision is taken
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from marquee.errors import MarqueeError

__all__ = [
    "MonitoringError",
    "MonitoringInputError",
    "NoDataError",
    "UnauthorizedError",
    "MalformedAlertError",
    "BodyTooLargeError",
    "LaunchError",
    "StoppedFollowing",
    "RunNotCancelableError",
    "StateCorruptError",
]


class MonitoringError(MarqueeError):
    status_code: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1


class MonitoringInputError(MonitoringError):
    status_code = 400
    exit_code = 2


class NoDataError(MonitoringInputError):
    status_code = 404


class UnauthorizedError(MonitoringError):
    status_code = 401


class MalformedAlertError(MonitoringError):
    status_code = 400


class BodyTooLargeError(MalformedAlertError):
    status_code = 413


class LaunchError(MonitoringError):
    status_code = 502


class StoppedFollowing(LaunchError):
    """``close`` stopped the wait for a remote run, which goes on without this process: the
    trigger hands it over to the next trigger instead of failing it."""


class RunNotCancelableError(MonitoringError):
    """A cancel for a run that has ended, or that this trigger process does not run."""

    status_code = 409


class StateCorruptError(MonitoringError):
    """``state.json`` exists but cannot be read: no decision can be taken safely (503 at the
    webhook, not ready; exit 1 in the commands)."""

    status_code = 503
    exit_code = 1

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"retrain state {path}: not valid trigger state ({reason}); no retraining run is "
            "started or refused until it is repaired or moved aside (monitoring/README.md, "
            "\"Retrain trigger state\")")
        self.path = path
        self.reason = reason
