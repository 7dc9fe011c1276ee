"""`marquee drift check` on a window where some features have only a few logged values.

Payload files written before a feature was added (an older payload schema) have no column
for it; read together with a handful of newer rows, the feature had 5 values among 2,000
rows. Before, it was judged on those 5 values: four such features "drifted" (20% of 20,
dataset drift, exit 3, a retraining run) while the 16 features logged on every row showed
none. min_rows now holds per feature too: a feature with fewer values in the window is
reported as skipped (not enough data), left out of the drift share, and no gauge is pushed
for it; a feature with no value at all is skipped likewise instead of failing the whole
check.
"""

from __future__ import annotations

import json

import pyarrow as pa
from pushgateway_stand_in import stand_in_pushgateway
from test_drift_check import HOUR, _drift_cli

from marquee.store import LocalStore
from monitoring.drift.scenarios import payload_table, write_bundle, write_payload_logs

OLD_SCHEMA_LACKS = ["f_genre_share_Children's", "f_genre_share_Horror",
                    "f_history_mean_year", "f_top_genre"]


def _args(tmp_path, *extra: str) -> list[str]:  # noqa: ANN001
    return ["--bundle", str(tmp_path / "bundle"), "--store", str(tmp_path / "store"),
            "--until", "2025-03-01T01:00:00Z", "--since", "1h", "--evidently", "never",
            "--no-embeddings", "--no-publish", *extra]


def test_features_with_too_few_values_are_skipped_not_judged(tmp_path) -> None:
    write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    old = payload_table(2_000, 3, "none", start_ts=HOUR).drop_columns(OLD_SCHEMA_LACKS)
    write_payload_logs(store, old)
    write_payload_logs(store, payload_table(5, 4, "demographic", start_ts=HOUR + 60))
    with stand_in_pushgateway() as gateway:
        out = _drift_cli(_args(tmp_path, "--json", "--pushgateway", gateway.url),
                         tmp_path / "home")
        assert out.returncode == 0, out.stdout + out.stderr
        summary = json.loads(out.stdout)
        assert summary["drifted_features"] == [] and not summary["dataset_drift"]
        skipped = {f["name"]: f for f in summary["features"] if f["skipped"]}
        assert sorted(skipped) == sorted(c[2:] for c in OLD_SCHEMA_LACKS)
        for f in skipped.values():
            assert f["rows_current"] == 5 and not f["drifted"] and f["score"] is None
            assert f["skipped"] == ("only 5 values in the window; a drift verdict needs at "
                                    "least 100 (min_rows in the drift config)")
        assert summary["drift_share"] == 0.0
        body = gateway.pushes[0].body
        assert "nan" not in body.lower()
        assert 'feature="top_genre"' not in body  # no verdict, no series
        assert 'marquee_drift_feature_score{feature="gender",model_version="1"}' in body

    printed = _drift_cli(_args(tmp_path, "--pushgateway", ""), tmp_path / "home")
    assert printed.returncode == 0, printed.stdout + printed.stderr
    assert "skipped feature top_genre: only 5 values in the window" in printed.stdout
    assert "no drift: 0/16 features drifted" in printed.stdout


def test_a_feature_without_any_value_does_not_stop_the_check(tmp_path) -> None:
    """Before: exit 2, "feature 'history_mean_year': the current window has no finite
    value", and no verdict on the 19 other features."""
    write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    table = payload_table(2_000, 4, "demographic", start_ts=HOUR)
    i = table.column_names.index("f_history_mean_year")
    write_payload_logs(store, table.set_column(i, "f_history_mean_year",
                                               pa.nulls(table.num_rows, pa.float64())))
    out = _drift_cli(_args(tmp_path, "--json", "--pushgateway", ""), tmp_path / "home")
    assert out.returncode == 3, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    skipped = [f for f in summary["features"] if f["skipped"]]
    assert [f["name"] for f in skipped] == ["history_mean_year"]
    assert skipped[0]["skipped"].startswith("only 0 values in the window")
    assert summary["drift_share"] == 5 / 19


def test_no_feature_with_enough_values_is_no_verdict(tmp_path) -> None:
    """Every row carries one feature only: min_rows rows, but no feature with min_rows
    values. Exit 2 saying so, not a verdict on nothing."""
    write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    table = payload_table(400, 3, "none", start_ts=HOUR)
    feats = [c for c in table.column_names if c.startswith("f_")]
    for j, name in enumerate(feats):  # row r keeps feature r % 20 only
        i = table.column_names.index(name)
        values = table.column(name).to_pylist()
        kept = [v if r % len(feats) == j else None for r, v in enumerate(values)]
        table = table.set_column(i, name, pa.array(kept, table.schema.field(name).type))
    write_payload_logs(store, table)
    out = _drift_cli(_args(tmp_path, "--pushgateway", ""), tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == ("error: no feature has at least 100 values in the window "
                                  "(the most any has is 20); a drift verdict needs at least "
                                  "100 (min_rows in the drift config)")
