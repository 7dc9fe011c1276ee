"""Errors raised by the data layer.

Hierarchy::

    DataError                      base of everything raised by ``recsys.data``
    ├── DataSourceError            a source path is missing or has no recognised layout
    │   └── DataFetchError         downloading a source failed (pip download of the wheel)
    └── DataValidationError        data breaks the schema; ``.report`` lists the findings

``DataValidationError.report`` is a list of :class:`recsys.data.findings.Finding`; each names
the table, column, rule, how many rows break it and up to five example values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from recsys.data.findings import Finding

__all__ = ["DataError", "DataSourceError", "DataFetchError", "DataValidationError"]


class DataError(Exception):
    """Base class of every error raised by ``recsys.data``."""


class DataSourceError(DataError):
    """A data source is missing, unreadable, or not in a layout this package knows."""


class DataFetchError(DataSourceError):
    """Fetching a data source from a package registry failed."""


class DataValidationError(DataError):
    """Data breaks the contract; ``report`` holds one finding per broken rule."""

    def __init__(self, report: Sequence[Finding], title: str = "data validation failed") -> None:
        self.report: list[Finding] = list(report)
        lines = [f"{title}: {len(self.report)} problem(s)"]
        lines += [f"  - {finding.describe()}" for finding in self.report]
        super().__init__("\n".join(lines))
