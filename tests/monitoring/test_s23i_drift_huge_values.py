"""`marquee drift check` on a numeric feature logged in huge numbers (past ~1e154, up to the
float64 maximum ±1.8e308): the same verdict, score and chart as for the same values in
small units. Both distances are scale-free.

Before, the reference's spread overflowed (its squares are inf): a window five spreads away
scored a normed Wasserstein of 0.0000, "no drift", exit 0; Jensen-Shannon over values near
±1.8e308 was exit 2 with "`bins` must increase monotonically"; and report.html labelled the
feature's bins nan and inf.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import REPO

MAX = float(np.finfo(np.float64).max)


def _check(tmp: Path, method: str, scale: float, ref: np.ndarray, cur: np.ndarray
           ) -> tuple[subprocess.CompletedProcess, Path]:
    """One drift check of a single numeric feature ``big`` (values times ``scale``),
    published to a local store; (the process, the store directory)."""
    tmp.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"big": ref * scale}), tmp / "ref.parquet")
    n = cur.size
    pq.write_table(pa.table({"ts": np.full(n, 1_740_787_200.0),
                             "model_version": pa.array(["1"] * n),
                             "user_id": np.arange(n), "f_big": cur * scale}),
                   tmp / "window.parquet")
    (tmp / "cfg.yaml").write_text(f"""drift_share: 0.5
min_rows: 100
defaults:
  numeric: {{method: {method}, threshold: 0.1}}
features:
  big: {{kind: numeric}}
""")
    env = {"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(tmp / "home"), "COLUMNS": "200",
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "marquee.cli", "drift", "check",
         "--reference", str(tmp / "ref.parquet"), "--window", str(tmp / "window.parquet"),
         "--config", str(tmp / "cfg.yaml"), "--store", str(tmp / "store"),
         "--evidently", "never", "--no-embeddings", "--pushgateway", "", "--json"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    return out, tmp / "store"


def _feature(out: subprocess.CompletedProcess) -> dict:
    summary = json.loads(out.stdout)
    (big,) = summary["features"]
    assert big["name"] == "big"
    return big


def test_wasserstein_of_huge_values_is_that_of_the_same_values_in_small_units(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 2_000), rng.normal(5, 1, 2_000)  # five spreads away
    small, _ = _check(tmp_path / "small", "wasserstein", 1.0, ref, cur)
    huge, _ = _check(tmp_path / "huge", "wasserstein", 1e300, ref, cur)
    assert small.returncode == 3, small.stdout + small.stderr
    assert huge.returncode == 3, huge.stdout + huge.stderr  # was 0: "no drift"
    expected = _feature(small)["score"]
    assert 4.5 < expected < 5.5
    got = _feature(huge)
    assert got["drifted"] is True
    assert abs(got["score"] - expected) < 1e-9 * expected, (got["score"], expected)  # was 0.0
    assert "overflow" not in huge.stderr, huge.stderr


def test_values_up_to_the_float_maximum_are_judged_and_charted(tmp_path: Path) -> None:
    """Jensen-Shannon (binned like Evidently) over ±1.8e308, and report.html's chart."""
    rng = np.random.default_rng(1)
    ref, cur = rng.uniform(-1, 1, 2_000), rng.uniform(0, 1, 2_000)
    small, _ = _check(tmp_path / "small", "jensenshannon", 1.0, ref, cur)
    huge, store = _check(tmp_path / "huge", "jensenshannon", MAX, ref, cur)
    assert small.returncode == 3, small.stdout + small.stderr
    # was exit 2: "error: feature 'big': `bins` must increase monotonically, when an array"
    assert huge.returncode == 3, huge.stdout + huge.stderr
    expected = _feature(small)["score"]
    got = _feature(huge)
    assert got["drifted"] is True
    assert abs(got["score"] - expected) < 1e-6, (got["score"], expected)

    (report,) = store.glob("monitoring/drift/**/report.html")
    labels = re.findall(r'<text [^>]*text-anchor="middle">([^<]*)</text>',
                        report.read_text())
    assert len(labels) == 12, labels
    values = [float(x) for x in labels]  # were "nan" and "inf"
    assert all(np.isfinite(values)), labels
    assert values == sorted(values)
    assert -MAX <= values[0] < -0.95 * MAX, labels  # the lowest bin starts near -1.8e308
    assert "overflow" not in huge.stderr, huge.stderr
