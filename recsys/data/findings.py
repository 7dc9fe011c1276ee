"""One validation finding: which table and column break which rule, how often, with examples."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Finding", "examples_of", "finding_of", "missing_columns", "repeated_columns",
           "rows_of"]

MAX_EXAMPLES = 5


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and value != value:  # NaN
        return None
    if isinstance(value, (int, float, str, bool)):
        return value
    return str(value)


def examples_of(values: pd.Series | list[Any]) -> list[Any]:
    """Up to five distinct offending values, as plain JSON-able Python values."""
    seen: list[Any] = []
    for value in (values.tolist() if isinstance(values, pd.Series) else values):
        plain = _plain(value)
        if plain not in seen:
            seen.append(plain)
        if len(seen) == MAX_EXAMPLES:
            break
    return seen


def rows_of(mask: pd.Series | np.ndarray) -> list[int]:
    """The first five rows where ``mask`` holds, counted from 1 in table order (in a CSV file
    row 1 is the line after the header), whatever the frame's index."""
    return (np.flatnonzero(np.asarray(mask, dtype=bool))[:MAX_EXAMPLES] + 1).tolist()


class Finding(BaseModel):
    """A broken rule. ``column`` is ``"*"`` for table-level rules (empty table, duplicate rows)."""

    model_config = ConfigDict(frozen=True)

    table: str
    column: str
    rule: str = Field(description="Short rule name, e.g. 'positive id', 'missing column'.")
    bad_count: int = Field(ge=0, description="Rows that break the rule.")
    examples: list[Any] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    rows: list[int] = Field(default_factory=list, max_length=MAX_EXAMPLES, description=(
        "The first bad rows, counted from 1 in table order (row 1 of a CSV file is the line "
        "after the header)."))
    detail: str = ""

    def describe(self) -> str:
        where = self.table if self.column == "*" else f"{self.table}.{self.column}"
        text = f"{where}: {self.rule}"
        if self.detail:
            text += f" ({self.detail})"
        if self.bad_count:
            text += f"; {self.bad_count} bad row(s)"
        if self.rows:
            more = ", …" if self.bad_count > len(self.rows) else ""
            text += f" at data row {', '.join(map(str, self.rows))}{more}"
        if self.examples:
            text += f", e.g. {self.examples}"
        return text


def _squashed(name: str) -> str:
    return re.sub(r"[\s_.-]+", "", name).lower()


def missing_columns(table: str, expected: list[str], found: Iterable[object],
                    rows: int) -> list[Finding]:
    """A ``missing column`` finding per expected name not in ``found``. A column whose name
    differs only by case, spaces or underscores ("User_ID", " item_id", "UserID") is named
    with the fix: in the lists of names the difference is easy to miss, a leading space cannot
    be seen at all."""
    names = [str(c) for c in found]
    out = []
    for column in expected:
        if column in names:
            continue
        near = [n for n in names if _squashed(n) == _squashed(column)]
        detail = (f"the columns include {near[0]!r}: rename it {column!r} (names are lower "
                  "case, exactly as listed)" if near
                  else f"expected columns {expected}, found {names}")
        out.append(Finding(table=table, column=column, rule="missing column", bad_count=rows,
                           detail=detail))
    return out


def finding_of(table: str, column: str, rule: str, mask: pd.Series, raw: pd.Series,
               detail: str) -> Finding:
    """A finding for the values of ``raw`` where ``mask`` holds: their count, first rows and
    examples."""
    return Finding(table=table, column=column, rule=rule, bad_count=int(mask.sum()),
                   examples=examples_of(raw[mask]), rows=rows_of(mask), detail=detail)


def repeated_columns(table: str, file_name: str, expected: list[str],
                     header: list[str]) -> list[Finding]:
    """A contract column named twice (an export that joined two tables): which copy holds the
    data is not for the reader to guess."""
    return [Finding(table=table, column=name, rule="duplicate column", bad_count=0,
                    detail=f"{file_name} has {header.count(name)} columns named {name!r}: "
                           "keep one")
            for name in expected if header.count(name) > 1]
