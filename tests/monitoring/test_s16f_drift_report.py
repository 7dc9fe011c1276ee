"""The drift check's report.html as on-call reads it: the figures and flags of summary.json,
p-value methods the right way round, NaN scores, and reports of two checks never lost."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import REPO

from marquee.store import LocalStore
from monitoring.drift.config import DEFAULT_CONFIG
from monitoring.drift.report import publish, put_evidently, summary_html
from monitoring.drift.scenarios import payload_table, write_bundle, write_payload_logs
from monitoring.drift.summary import DriftSummary, FeatureResult, WindowInfo

HOUR = 1_740_787_200  # 2025-03-01T00:00:00Z


def _drift_cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(home), "COLUMNS": "200",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "marquee.cli", "drift", "check", *args,
                           "--evidently", "never", "--pushgateway", "", "--json"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=180)


def _rows(report: str) -> list[tuple[str, str, str, str, str]]:
    """(feature, method, score, bar colour, drifted) of the features table, in page order."""
    return re.findall(r"<tr class=\w+><td>([^<]*)</td><td>\w+</td><td>(\w+)</td>"
                      r"<td>([^<]*)</td><td>[^<]*</td><td>(?:<div class=\"bar\"><div style="
                      r"\"width:[^;]*;background:(#\w+)\"></div><span[^>]*></span></div>)?"
                      r"</td><td>(yes|)</td>", report)


def _published(store_dir: Path, stdout: str) -> tuple[dict, str]:
    summary = json.loads(stdout)
    key = summary["outputs"]["report_html"].split("/store/", 1)[1]
    return summary, LocalStore(store_dir).get_bytes(key).decode()


def test_p_value_features_are_red_and_first_like_the_summary_flags_them(tmp_path: Path) -> None:
    """chisquare and ks scores are p-values: drift when *below* the threshold. The report
    drew drifted age_bucket (p=0) and history_length (p=0) last with an empty green bar, and
    hour_of_day (p=0.58, no drift) first with a full red bar."""
    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, payload_table(1_000, 4, "demographic", start_ts=HOUR))
    cfg = DEFAULT_CONFIG.read_text()
    for name, method in (("age_bucket", "chisquare"), ("history_length", "ks"),
                         ("hour_of_day", "ks")):
        kind = "categorical" if name == "age_bucket" else "numeric"
        cfg = cfg.replace(f"  {name}: {{kind: {kind}}}",
                          f"  {name}: {{kind: {kind}, method: {method}, threshold: 0.05}}")
    (tmp_path / "cfg.yaml").write_text(cfg)
    out = _drift_cli(["--bundle", str(bundle), "--store", str(tmp_path / "store"),
                      "--since", "2025-03-01T00:00:00Z", "--until", "2025-03-01T01:00:00Z",
                      "--config", str(tmp_path / "cfg.yaml")], tmp_path / "home")
    assert out.returncode == 3, out.stdout + out.stderr
    summary, report = _published(tmp_path / "store", out.stdout)
    by_name = {f["name"]: f for f in summary["features"]}
    assert by_name["age_bucket"]["drifted"] and by_name["history_length"]["drifted"]
    assert not by_name["hour_of_day"]["drifted"]

    rows = _rows(report)
    assert [r[0] for r in rows] and len(rows) == len(summary["features"]), rows
    for name, method, score, colour, drifted in rows:  # the summary's figures and flags
        f = by_name[html.unescape(name)]
        assert (method, score) == (f["method"], f"{f['score']:.4f}"), name
        assert (drifted == "yes") == f["drifted"], name
        assert colour == ("#c0392b" if f["drifted"] else "#27ae60"), name
    n_drifted = len(summary["drifted_features"])
    assert {html.unescape(r[0]) for r in rows[:n_drifted]} == set(summary["drifted_features"])
    assert rows[-1][0] == "hour_of_day"  # p = 0.58 against 0.05: the farthest from drift


def test_a_nan_score_shows_as_n_a_and_the_summary_loads_back(tmp_path: Path) -> None:
    """A t-test on a constant feature returns NaN: the report showed 'nan' and
    'width:nan%', summary.json wrote the score as null and DriftSummary could not read it
    back. One feature with a hostile name and category stays text."""
    n = 300
    evil, label = "<script>alert(1)</script>", "<img src=x onerror=alert(2)>"
    pq.write_table(pa.table({"x": np.ones(n), evil: ["a"] * n}), tmp_path / "ref.parquet")
    pq.write_table(pa.table({"f_x": np.ones(n), f"f_{evil}": [label] * n,
                             "ts": np.arange(n, dtype=float) + HOUR, "model_version": ["1"] * n,
                             "user_id": np.arange(n), "items": [[1, 2]] * n,
                             "scores": [[0.5, 0.4]] * n}), tmp_path / "win.parquet")
    (tmp_path / "cfg.yaml").write_text(
        "defaults:\n  numeric: {method: t_test, threshold: 0.05}\n"
        "  categorical: {method: jensenshannon, threshold: 0.1}\n"
        f"features:\n  x: {{kind: numeric}}\n  '{evil}': {{kind: categorical}}\n")
    out = _drift_cli(["--reference", str(tmp_path / "ref.parquet"), "--window",
                      str(tmp_path / "win.parquet"), "--store", str(tmp_path / "store"),
                      "--config", str(tmp_path / "cfg.yaml")], tmp_path / "home")
    assert out.returncode == 3, out.stdout + out.stderr
    summary, report = _published(tmp_path / "store", out.stdout)
    assert summary["features"][0]["score"] is None and summary["drifted_features"] == [evil]
    rows = _rows(report)
    assert rows[0][0] == "&lt;script&gt;alert(1)&lt;/script&gt;" and rows[0][4] == "yes"
    assert rows[1][:3] == ("x", "t_test", "n/a") and rows[1][3] == ""
    assert ">nan<" not in report and "nan%" not in report and " nan " not in report
    assert evil not in report and label not in report
    key = summary["outputs"]["summary_json"].split("/store/", 1)[1]
    loaded = DriftSummary.model_validate_json(LocalStore(tmp_path / "store").get_bytes(key))
    assert np.isnan(loaded.features[0].score) and loaded.drifted_features == [evil]
    assert "n/a" in summary_html(loaded)


def _summary(created: datetime, share: float) -> DriftSummary:
    feature = FeatureResult(name="gender", kind="categorical", method="jensenshannon",
                            threshold=0.1, score=share, drifted=share >= 0.1,
                            rows_reference=10, rows_current=10, exact=True)
    return DriftSummary(created=created, model_name="movie-recommender", model_version="1",
                        reference="r", reference_rows=10,
                        window=WindowInfo(source="w", files=1, rows=10), drift_share=share,
                        drift_share_threshold=0.2, dataset_drift=share >= 0.2,
                        drifted_features=["gender"] if share >= 0.1 else [],
                        features=[feature], drift_detected=share >= 0.2)


def test_two_checks_in_the_same_second_keep_both_reports(tmp_path: Path) -> None:
    """The stamp had whole seconds: a second check of the version finishing in the same
    second (two jobs, --every under a second) wrote over the first one's report."""
    store = LocalStore(tmp_path / "store")
    t = datetime(2026, 3, 1, 12, 0, 0, 100_000, tzinfo=timezone.utc)
    first, second = _summary(t, 0.5), _summary(t + timedelta(milliseconds=300), 0.0)
    publish(store, first, summary_html(first, None))
    publish(store, second, summary_html(second, None))
    assert first.outputs["report_html"] != second.outputs["report_html"]
    for s, verdict in ((first, "DRIFT: 1 of 1"), (second, "no drift: 0 of 1")):
        key = s.outputs["report_html"].split("/store/", 1)[1]
        assert verdict in store.get_bytes(key).decode()
        saved = json.loads(store.get_bytes(key.replace("report.html", "summary.json")))
        assert saved["drift_share"] == s.drift_share


def test_latest_json_is_not_set_back_by_an_older_checks_evidently_report(
        tmp_path: Path) -> None:
    """Evidently's report arrives seconds after its verdict and rewrote latest.json with it:
    a check published in between (another job) vanished from latest.json."""
    store = LocalStore(tmp_path / "store")
    t = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    older, newer = _summary(t, 0.5), _summary(t + timedelta(seconds=20), 0.0)
    publish(store, older, summary_html(older))
    publish(store, newer, summary_html(newer, None))
    put_evidently(store, older, "<html>evidently</html>")
    latest = json.loads(store.get_bytes("monitoring/drift/movie-recommender/1/latest.json"))
    assert latest["created"].startswith("2026-03-01T12:00:20") and latest["drift_share"] == 0
    key = older.outputs["summary_json"].split("/store/", 1)[1]  # its own summary has the link
    assert "evidently_html" in json.loads(store.get_bytes(key))["outputs"]


def test_a_prediction_drift_verdict_says_so_beside_zero_drifted_features(
        tmp_path: Path) -> None:
    """Model scores moved, the features did not (no dataset drift): the page read 'DRIFT: 0
    of 20 features drifted' and nothing said what drifted without scrolling to the
    predictions table."""
    import pyarrow.compute as pc

    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    window = payload_table(1_000, 4, "none", start_ts=HOUR)
    scores = window.column("scores").combine_chunks()
    shifted = pa.ListArray.from_arrays(scores.offsets, pc.add(scores.values, 0.5))
    pq.write_table(window.set_column(window.column_names.index("scores"), "scores", shifted),
                   tmp_path / "win.parquet")
    out = _drift_cli(["--bundle", str(bundle), "--window", str(tmp_path / "win.parquet"),
                      "--store", str(tmp_path / "store")], tmp_path / "home")
    assert out.returncode == 3, out.stdout + out.stderr
    summary, report = _published(tmp_path / "store", out.stdout)
    assert not summary["dataset_drift"] and summary["drift_detected"]
    moved = [p["name"] for p in summary["prediction"] if p["drifted"]]
    assert "score" in moved
    verdict = re.search(r'<p class="verdict">(.*?)</p>', report, re.S).group(1)
    assert verdict.startswith(f"DRIFT: {len(summary['drifted_features'])} of 20 features")
    assert f"prediction drift: {', '.join(moved)}" in verdict


def test_a_failed_evidently_report_leaves_no_dead_link(tmp_path: Path) -> None:
    """report.html is published before Evidently's report and links to it; when Evidently
    then fails, the page is published again without the link (it led to a missing file).
    The renderer is a stand-in whose result() raises as EvidentlyRenderer's does on a
    worker failure (Evidently itself cannot be made to fail on purpose here)."""
    import time

    from marquee.settings import Settings
    from monitoring.drift.cli import _finish
    from monitoring.drift.report import output_prefix

    class Failing:
        def result(self) -> str:
            raise RuntimeError("the Evidently worker died")

    store = LocalStore(tmp_path / "store")
    summary = _summary(datetime(2026, 3, 1, 12, tzinfo=timezone.utc), 0.3)
    _finish(Settings(home=tmp_path / "home"), DEFAULT_CONFIG, time.perf_counter(), Failing(),
            summary, store, None, True, None)
    page = store.get_bytes(f"{output_prefix(summary)}/report.html").decode()
    assert "DRIFT" in page
    assert "evidently.html" not in page
    assert not store.exists(f"{output_prefix(summary)}/evidently.html")
