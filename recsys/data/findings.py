"""One validation finding: which table and column break which rule, how often, with examples."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Finding", "examples_of", "rows_of"]

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
