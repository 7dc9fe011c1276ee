"""`marquee drift check --evidently always` when the reference or the payload logs lack a
configured feature: the clear error of `--evidently never` (exit 2, naming the column).

Before, Evidently's report worker was handed its samples before the features were checked:
`Table.select` raised `KeyError: 'Field "big" does not exist in schema'` out of the command,
a Python traceback and exit 1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO

CONFIG = """drift_share: 0.5
min_rows: 100
defaults:
  numeric: {method: wasserstein, threshold: 0.1}
features:
  big: {kind: numeric}
"""


def _check(tmp: Path, reference: pa.Table, window: pa.Table) -> subprocess.CompletedProcess:
    pq.write_table(reference, tmp / "ref.parquet")
    pq.write_table(window, tmp / "window.parquet")
    (tmp / "cfg.yaml").write_text(CONFIG)
    env = {"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(tmp / "home"), "COLUMNS": "200",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "marquee.cli", "drift", "check",
         "--reference", str(tmp / "ref.parquet"), "--window", str(tmp / "window.parquet"),
         "--config", str(tmp / "cfg.yaml"), "--no-publish", "--evidently", "always",
         "--no-embeddings", "--pushgateway", ""],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=180)


def _window(column: str, n: int = 500) -> pa.Table:
    return pa.table({"ts": np.full(n, 1_740_787_200.0), "model_version": pa.array(["1"] * n),
                     "user_id": np.arange(n), column: np.random.default_rng(0).normal(0, 1, n)})


@pytest.mark.parametrize(("reference", "window", "message"), [
    (pa.table({"other": np.arange(500.0)}), _window("f_big"),
     "error: reference has no column 'big' (columns: other)"),
    (pa.table({"big": np.arange(500.0)}), _window("f_other"),
     "error: payload logs have no column 'f_big'"),
], ids=["reference", "window"])
def test_a_missing_feature_column_is_named_not_a_traceback(
        tmp_path: Path, reference: pa.Table, window: pa.Table, message: str) -> None:
    out = _check(tmp_path, reference, window)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().splitlines()[-1] == message
