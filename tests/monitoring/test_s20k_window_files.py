"""Payload-log files that are valid Parquet but do not fit the window (another or an older
schema): one without a `ts` column, one whose feature column has another type.

Before, the first made `marquee drift check` end in a Python traceback (KeyError: Field "ts"
does not exist, exit 1) and the second failed the whole window (exit 2, "not a readable
Parquet file: Unable to merge: Field f_hour_of_day has incompatible types", naming no
file), whatever the good files held. Like a damaged file, each is now skipped with a
warning naming it and why, and the rest of the window is judged; a window of such files
only is no data (exit 2, one line).
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from test_drift_check import HOUR, _drift_cli

from marquee.store import LocalStore
from monitoring.drift.scenarios import payload_table, write_bundle, write_payload_logs

PARTITION = "payload-logs/date=2025-03-01/hour=00/model_version=1/"


def _put(store: LocalStore, tmp_path, name: str, table: pa.Table) -> None:  # noqa: ANN001
    local = tmp_path / name
    pq.write_table(table, local)
    store.put_file(PARTITION + name, local)


def _args(tmp_path, *extra: str) -> list[str]:  # noqa: ANN001
    return ["--bundle", str(tmp_path / "bundle"), "--store", str(tmp_path / "store"),
            "--until", "2025-03-01T01:00:00Z", "--since", "1h", "--evidently", "never",
            "--no-embeddings", "--no-publish", "--pushgateway", "", *extra]


def test_files_of_another_schema_are_skipped_not_fatal(tmp_path) -> None:
    write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, payload_table(2_000, 4, "demographic", start_ts=HOUR))
    odd = payload_table(50, 5, "none", start_ts=HOUR)
    _put(store, tmp_path, "part-no-ts.parquet", odd.drop_columns(["ts"]))
    i = odd.column_names.index("f_hour_of_day")
    _put(store, tmp_path, "part-typed.parquet", odd.set_column(
        i, "f_hour_of_day", pa.array([str(v) for v in odd.column(i).to_pylist()])))
    out = _drift_cli(_args(tmp_path, "--json"), tmp_path / "home")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 3, out.stdout + out.stderr  # the demographic drift is found
    assert json.loads(out.stdout)["window"]["rows"] == 2_000
    warnings = [line for line in out.stderr.splitlines() if "skipping" in line]
    assert len(warnings) == 2, out.stderr
    assert any(line.endswith("part-no-ts.parquet: it has no ts column") for line in warnings)
    assert any(line.endswith("part-typed.parquet: column f_hour_of_day is string, the "
                             "window's other files have double") for line in warnings)


def test_a_window_of_files_without_ts_is_no_data(tmp_path) -> None:
    write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    _put(store, tmp_path, "part-no-ts.parquet",
         payload_table(500, 5, "none", start_ts=HOUR).drop_columns(["ts"]))
    out = _drift_cli(_args(tmp_path), tmp_path / "home")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 2, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: none of the 1 payload-log files in the window could be read "
                      f"(first: {PARTITION}part-no-ts.parquet)"], out.stderr
