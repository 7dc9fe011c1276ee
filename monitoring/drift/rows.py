"""Which payload rows a verdict is taken on (shared by the drift and the skew check).

* **The version's own rows.** A bundle's verdict is published under its model version, so it
  is taken on the rows that version served only: the window is restricted to its
  ``model_version`` (partitions and rows), and a window without any of its rows is no data,
  naming the versions it does hold. ``--model-version`` may only repeat the bundle's version.
* **Rows with logged features.** Rows that KServe's logger writes through the payload sink
  carry no features (every ``f_*`` null: V1 responses hold none). They are left out and
  counted; they are neither drift nor skew evidence, and a window of such rows only is no
  data.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from marquee.store import ObjectStore
from monitoring.errors import MonitoringInputError, NoDataError
from monitoring.window import Window, list_window_keys

__all__ = ["checked_version", "version_keys", "only_version", "row_versions",
           "split_featured", "no_logged_features"]


def checked_version(bundle: str | None, bundle_version: str,
                    model_version: str | None) -> str | None:
    """Whose rows are checked: the bundle's version (``--model-version`` may only repeat
    it); without a bundle (``--reference`` alone), ``--model-version`` or every row."""
    if bundle is None:
        return model_version
    if model_version is not None and model_version != bundle_version:
        raise MonitoringInputError(
            f"--model-version {model_version}: bundle {bundle!r} is model version "
            f"{bundle_version}; its verdict is published as version {bundle_version}, so it "
            f"is never taken on the rows of version {model_version} (check that version with "
            "its own bundle)")
    return bundle_version


def _no_rows_of(version: str, found: dict[str, int], unit: str, where: str) -> NoDataError:
    """The window holds rows of other versions only."""
    held = ", ".join(f"model_version={v} ({n:,} {unit}{'' if n == 1 else 's'})"
                     for v, n in sorted(found.items()))
    return NoDataError(f"no payload rows of model version {version} in {where}; it holds "
                       f"{held} only: a verdict is taken and published for the version that "
                       "served the rows (check --bundle)")


def row_versions(table: pa.Table) -> dict[str, int]:
    """Rows per ``model_version``."""
    if "model_version" not in table.column_names:
        return {}
    counts = pc.value_counts(table.column("model_version").cast(pa.string()))
    return {str(c["values"]): int(c["counts"]) for c in counts.to_pylist()}


def _key_versions(keys: list[str]) -> dict[str, int]:
    """Files per ``model_version=`` partition."""
    return dict(Counter(m[1] for k in keys if (m := re.search(r"model_version=([^/]+)/", k))))


def version_keys(store: ObjectStore, window: Window, version: str | None) -> list[str]:
    """The window's payload-log files of ``version`` (every file when None); none while the
    window holds other versions' files is no data, naming them."""
    keys = list_window_keys(store, window, version)
    if not keys and version is not None:
        others = _key_versions(list_window_keys(store, window))
        if others:
            raise _no_rows_of(version, others, "file", f"the window {window.since.isoformat()}"
                              f" .. {window.until.isoformat()}")
    return keys


def only_version(table: pa.Table, version: str | None, where: str) -> pa.Table:
    """The rows ``version`` served (every row when None or without a ``model_version``
    column); none while ``table`` holds other versions' rows is no data, naming them."""
    if version is None or "model_version" not in table.column_names:
        return table
    found = row_versions(table)
    kept = table.filter(pc.equal(table.column("model_version").cast(pa.string()), version))
    if kept.num_rows == 0 and found:
        raise _no_rows_of(version, found, "row", where)
    return kept


def split_featured(table: pa.Table, columns: Sequence[str]) -> tuple[pa.Table, int]:
    """(rows with at least one of the feature ``columns`` logged, number of rows without
    any). Columns the table lacks are left to whoever needs them to report."""
    present = [c for c in columns if c in table.column_names]
    if not present or table.num_rows == 0:
        return table, 0
    mask = pc.is_valid(table.column(present[0]))
    for c in present[1:]:
        mask = pc.or_(mask, pc.is_valid(table.column(c)))
    kept = table.filter(mask)
    return kept, table.num_rows - kept.num_rows


def no_logged_features(rows: int, version: str | None, verdict: str) -> NoDataError:
    """Every row of the window lacks features: no data for ``verdict``, saying why."""
    of = f" of model version {version}" if version is not None else ""
    return NoDataError(
        f"none of the {rows:,} payload rows{of} in the window carries logged features "
        "(every f_* column is null, as in the rows KServe's logger writes through the "
        f"payload sink); {verdict} needs the rows the model server logs with its features")
