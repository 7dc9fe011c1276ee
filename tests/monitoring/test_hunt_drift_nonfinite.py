"""`marquee drift check` on a window whose model answered with NaN scores (a model broken
by its training, or an overflow in ranking): a clear one-line error naming the prediction
metric and why (exit 2, bad input), as for a feature without a finite value.

Before, the Wasserstein of the score distribution raised a bare ValueError out of the
command: a Python traceback, exit 1, "empty column after dropping NaN/inf" naming neither
the metric nor the side.
"""

from __future__ import annotations

import pyarrow as pa
from test_drift_check import HOUR, _drift_cli

from marquee.store import LocalStore
from monitoring.drift.scenarios import payload_table, write_bundle, write_payload_logs


def _nan_scores(table: pa.Table) -> pa.Table:
    i = table.column_names.index("scores")
    nan_lists = [[float("nan")] * len(s) for s in table.column("scores").to_pylist()]
    return table.set_column(i, "scores", pa.array(nan_lists, pa.list_(pa.float64())))


def test_a_window_of_nan_scores_is_a_clear_error_not_a_traceback(tmp_path) -> None:
    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, _nan_scores(payload_table(500, 3, "none", start_ts=HOUR)))
    out = _drift_cli(["--bundle", str(bundle), "--store", str(tmp_path / "store"), "--until",
                      "2025-03-01T01:00:00Z", "--since", "1h", "--evidently", "never",
                      "--no-embeddings"], tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip() == ("error: prediction drift 'score': the current window has no "
                                  "finite value (all 500 values are NaN or ±inf)")
    assert not list((tmp_path / "store").glob("monitoring/drift/**/summary.json"))


def test_a_window_with_some_nan_scores_is_still_judged(tmp_path) -> None:
    """Non-finite values are left out, as Evidently does: the rest of the window is judged."""
    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    window = payload_table(500, 3, "none", start_ts=HOUR)
    write_payload_logs(store, pa.concat_tables([_nan_scores(window.slice(0, 50)),
                                                window.slice(50)]))
    out = _drift_cli(["--bundle", str(bundle), "--store", str(tmp_path / "store"), "--until",
                      "2025-03-01T01:00:00Z", "--since", "1h", "--evidently", "never",
                      "--no-embeddings", "--no-publish"], tmp_path / "home")
    assert out.returncode in (0, 3), out.stdout + out.stderr
    assert "pred. score" in out.stdout
