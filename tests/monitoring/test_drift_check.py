"""The drift check: Evidently's numbers on numpy, verdicts on planted scenarios, the command.

Windows come from monitoring.drift.scenarios (recsys.features is not there yet): a new
demographic mix, a genre shift, and fresh no-drift samples of the reference population.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import REPO

from marquee.store import LocalStore
from monitoring.drift.config import DriftConfig, load_config
from monitoring.drift.job import run_check
from monitoring.drift.scenarios import (
    FEATURES,
    expected_drifted,
    feature_frame,
    payload_table,
    write_bundle,
    without_features,
    write_payload_logs,
)
from monitoring.drift.stats import (
    jensenshannon_counts,
    jensenshannon_numeric,
    wasserstein_norm,
)
from monitoring.drift.summary import WindowInfo
from monitoring.reference import Reference

CFG = load_config()
HOUR = 1_740_787_200  # 2025-03-01T00:00:00Z


def reference_of(n: int = 20_000, seed: int = 1) -> Reference:
    return Reference(features=pa.Table.from_pandas(feature_frame(n, seed), preserve_index=False),
                     model_name="movie-recommender", model_version="1", source="synthetic")


def window_of(n: int, seed: int, scenario: str) -> pa.Table:
    frame = feature_frame(n, seed, scenario)
    return pa.table({f"f_{c}": frame[c].to_numpy() for c in FEATURES})


def check(reference: Reference, window: pa.Table, config: DriftConfig = CFG):
    return run_check(config, reference, window, WindowInfo(source="test", files=1,
                                                           rows=window.num_rows),
                     with_prediction=False, with_embedding=False)


def test_scores_are_evidentlys_to_the_last_digit() -> None:
    """Same definitions as Evidently's registered stat tests, on exact (unsampled) data."""
    import pandas as pd
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    ref, cur = feature_frame(8_000, 1), feature_frame(6_000, 2, "genre")
    rng = np.random.default_rng(0)
    for name in FEATURES:
        r, c = ref[name], cur[name]
        if r.dtype == object:
            mine = jensenshannon_counts(r.value_counts().to_dict(), c.value_counts().to_dict(),
                                        0.1).score
            kind, method = ColumnType.Categorical, "jensenshannon"
        else:
            mine = wasserstein_norm(r.to_numpy(), c.to_numpy(), 0.1, sample_rows=10**9,
                                    exact_margin=0, rng=rng).score
            kind, method = ColumnType.Numerical, "wasserstein"
            js = jensenshannon_numeric(r.to_numpy(), c.to_numpy(), 0.1).score
            ev_js = get_stattest(r, c, kind, "jensenshannon")(r, c, kind, 0.1).drift_score
            assert js == pytest.approx(ev_js, abs=1e-12), name
        ev = get_stattest(r, c, kind, method)(pd.Series(r), pd.Series(c), kind, 0.1)
        assert mine == pytest.approx(ev.drift_score, abs=1e-12), name


def test_verdicts_agree_with_data_drift_preset_on_planted_scenarios() -> None:
    from monitoring.drift.crosscheck import preset_verdicts

    ref = feature_frame(5_000, 1)
    reference = Reference(features=pa.Table.from_pandas(ref, preserve_index=False),
                          model_name="m", model_version="1", source="synthetic")
    for seed, scenario in enumerate(("none", "demographic", "genre"), start=2):
        cur = feature_frame(5_000, seed, scenario)
        ours = check(reference, pa.table({f"f_{c}": cur[c].to_numpy() for c in FEATURES}))
        theirs = preset_verdicts(CFG, ref, cur)
        assert {f.name: f.drifted for f in ours.features} == theirs.drifted, scenario
        assert ours.dataset_drift == theirs.dataset_drift == (scenario != "none"), scenario
        for f in ours.features:
            assert f.score == pytest.approx(theirs.scores[f.name], abs=1e-9), (scenario, f.name)


@pytest.mark.parametrize("scenario", ["demographic", "genre"])
def test_planted_drift_is_flagged_on_exactly_the_moved_features(scenario: str) -> None:
    summary = check(reference_of(), window_of(100_000, 7, scenario))
    assert sorted(summary.drifted_features) == sorted(expected_drifted(scenario))
    assert summary.dataset_drift and summary.drift_detected
    assert summary.drift_share == len(expected_drifted(scenario)) / 20


def test_no_drift_windows_raise_no_alarm() -> None:
    reference = reference_of()
    for seed in range(10, 15):
        summary = check(reference, window_of(50_000, seed, "none"))
        assert summary.drifted_features == [] and not summary.drift_detected, seed
        assert max(f.score / f.threshold for f in summary.features) < 0.5


def test_continuous_features_are_sampled_but_exact_near_the_threshold() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 1, 50_000)
    far = wasserstein_norm(ref, rng.normal(0.5, 1, 400_000), 0.1, sample_rows=100_000,
                           exact_margin=0.02, rng=rng)
    assert not far.exact and far.rows_current == 100_000 and far.drifted
    near = wasserstein_norm(ref, rng.normal(0.1, 1, 400_000), 0.1, sample_rows=100_000,
                            exact_margin=0.02, rng=rng)
    assert near.exact and near.rows_current == 400_000  # recomputed on every row
    hours = rng.integers(0, 24, 400_000).astype(float)  # integer-valued: counts, every row
    grid = wasserstein_norm(hours[:50_000], hours, 0.1, sample_rows=100_000, exact_margin=0.02,
                            rng=rng)
    assert grid.exact and grid.rows_current == 400_000 and grid.score < 0.01


def test_prediction_drift_flags_a_collapse_toward_the_long_tail(tmp_path: Path) -> None:
    from monitoring.reference import load_reference
    from marquee.settings import Settings

    bundle = write_bundle(tmp_path / "bundle", n_reference=20_000)
    reference = load_reference(str(bundle), Settings(home=tmp_path / "home"))
    for zipf, drifted in ((1.3, set()), (1.05, {"item_popularity", "genre_mix"})):
        window = payload_table(30_000, 9, "none", item_zipf=zipf)
        summary = run_check(CFG, reference, window,
                            WindowInfo(source="t", files=1, rows=window.num_rows),
                            with_embedding=False)
        got = {p.name for p in summary.prediction if p.drifted}
        assert all(p.skipped is None for p in summary.prediction)
        assert got == drifted, (zipf, [(p.name, p.score) for p in summary.prediction])


class ShiftedGaussians:
    """An EmbeddingSource over plain numpy (the recommender's lands with recsys)."""

    def __init__(self, shift: float) -> None:
        self.shift = shift
        self.handed_out: list[np.ndarray] = []

    def reference(self, n: int, rng: np.random.Generator) -> np.ndarray:
        x = rng.normal(0, 1, (n, 16))
        self.handed_out.append(x)
        return x

    def current(self, window: pa.Table, n: int, rng: np.random.Generator) -> np.ndarray:
        x = rng.normal(self.shift, 1, (n, 16))
        self.handed_out.append(x)
        return x


@pytest.mark.parametrize(("shift", "drifted"), [(0.0, False), (0.6, True)])
def test_embedding_drift_uses_evidentlys_method_on_copies(shift: float, drifted: bool) -> None:
    from monitoring.drift.config import EmbeddingConfig
    from monitoring.drift.embedding import embedding_drift

    source = ShiftedGaussians(shift)
    cfg = EmbeddingConfig(method="mmd", threshold=0.015, sample_rows=500)
    result = embedding_drift(source, pa.table({"user_id": [1]}), cfg, np.random.default_rng(0))
    assert result.skipped is None and result.drifted is drifted, result
    before = [x.copy() for x in source.handed_out]
    assert all(np.array_equal(a, b) for a, b in zip(before, source.handed_out))


def test_metrics_export_replaces_the_previous_run() -> None:
    from prometheus_client import generate_latest

    from monitoring.drift import metrics

    summary = check(reference_of(5_000), window_of(20_000, 4, "demographic"))
    metrics.export(summary, 1.5, now=1234.0)
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'marquee_drift_share{model_version="1"} 0.25' in text
    assert 'marquee_drift_share_threshold{model_version="1"} 0.2' in text
    assert 'marquee_drift_feature_drifted{feature="gender",model_version="1"} 1.0' in text
    assert "marquee_drift_last_run_timestamp_seconds 1234.0" in text
    # PredictionDrift fires on the job's own verdict per prediction feature: a p-value test
    # (ks) drifts below its threshold, so score >= threshold cannot tell
    from monitoring.drift.summary import PredictionResult

    summary.prediction = [PredictionResult(name="score", method="ks", score=0.001,
                                           threshold=0.05, drifted=True),
                          PredictionResult(name="genre_mix", method="ks", score=0.6,
                                           threshold=0.05, drifted=False)]
    metrics.export(summary, 1.5, now=1234.0)
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'marquee_prediction_drift_drifted{feature="score",model_version="1"} 1.0' in text
    assert 'marquee_prediction_drift_drifted{feature="genre_mix",model_version="1"} 0.0' in text
    summary.model_version = "2"
    metrics.export(summary, 1.0)
    assert 'model_version="1"' not in generate_latest(metrics.REGISTRY).decode()


def _drift_cli(args: list[str], home: Path,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(home), "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "marquee.cli", "drift", "check", *args],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=180)


def test_drift_check_command_reads_the_store_publishes_and_exits_3_on_drift(
        tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "bundle", n_reference=20_000)
    store = LocalStore(tmp_path / "store")
    # hour 0: the reference population; hour 1: a new demographic mix
    write_payload_logs(store, payload_table(20_000, 3, "none", start_ts=HOUR), n_files=2)
    write_payload_logs(store, payload_table(20_000, 4, "demographic", start_ts=HOUR + 3600),
                       n_files=2)
    common = ["--bundle", str(bundle), "--store", str(tmp_path / "store"), "--until"]

    clean = _drift_cli([*common, "2025-03-01T01:00:00Z", "--since", "1h", "--evidently",
                        "on_drift"], tmp_path / "home")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no drift" in clean.stdout
    assert "report_html" in clean.stdout and "evidently_html" not in clean.stdout

    drifted = _drift_cli([*common, "2025-03-01T02:00:00Z", "--since", "1h", "--json",
                          "--evidently", "on_drift"], tmp_path / "home")
    assert drifted.returncode == 3, drifted.stderr
    summary = json.loads(drifted.stdout)
    assert sorted(summary["drifted_features"]) == sorted(expected_drifted("demographic"))
    assert summary["window"]["rows"] == 20_000 and summary["window"]["files"] == 2
    assert [p["drifted"] for p in summary["prediction"]] == [False, False, False]
    outputs = summary["outputs"]
    prefix = outputs["summary_json"].rsplit("/", 1)[0].split("/store/", 1)[1]
    assert store.exists(f"{prefix}/summary.json") and store.exists(f"{prefix}/report.html")
    evidently_page = store.get_bytes(f"{prefix}/evidently.html").decode()
    assert "age_bucket" in evidently_page and len(evidently_page) > 100_000
    report = store.get_bytes(f"{prefix}/report.html").decode()
    assert "DRIFT: 5 of 20 features drifted" in report
    assert report.count("<svg") == 20  # a reference-vs-current chart per feature
    assert report.index("age_bucket — jensenshannon") < report.index("Other features")
    latest = json.loads(store.get_bytes("monitoring/drift/movie-recommender/1/latest.json"))
    assert latest["created"] == summary["created"]


def test_drift_check_exits_2_on_an_empty_window(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    out = _drift_cli(["--bundle", str(bundle), "--store", str(tmp_path / "store"), "--since",
                      "1h", "--evidently", "never"], tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("error: no payload logs in the window")  # one line, stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_exporter_mode_serves_gauges_for_prometheus(tmp_path: Path) -> None:
    """`--metrics-port --every`: the long-running local exporter Prometheus scrapes."""
    import httpx
    from conftest import free_port, stop_process, wait_until

    bundle = write_bundle(tmp_path / "bundle", n_reference=5_000)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, payload_table(5_000, 4, "demographic", start_ts=HOUR))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "marquee.cli", "drift", "check", "--bundle", str(bundle),
         "--store", str(tmp_path / "store"), "--since", "2025-03-01T00:00:00Z", "--until",
         "2025-03-01T01:00:00Z", "--evidently", "never", "--no-publish",
         "--metrics-port", str(port), "--every", "1"],
        env={"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(tmp_path / "home"),
             "MARQUEE_BIND_HOST": "127.0.0.1"},
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(lambda: 'marquee_drift_share{model_version="1"} 0.25'
                   in httpx.get(url, timeout=1).text, timeout=90, what="drift gauges served")
        first = float(next(line.split()[-1] for line in httpx.get(url).text.splitlines()
                           if line.startswith("marquee_drift_last_run_timestamp_seconds")))
        wait_until(lambda: float(next(
            line.split()[-1] for line in httpx.get(url).text.splitlines()
            if line.startswith("marquee_drift_last_run_timestamp_seconds"))) > first,
            timeout=60, what="a second check")
        assert proc.poll() is None  # drift does not end the exporter
    finally:
        stop_process(proc)


def test_a_window_of_a_few_rows_is_no_verdict(tmp_path: Path) -> None:
    """Two requests of a quiet hour 'drifted' on 20 of 20 features (exit 3, drift share 1.0
    published): ModelDataDrift would start a retraining run. Below min_rows it is exit 2,
    nothing published; the same traffic with enough rows is judged."""
    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, payload_table(2, 3, "demographic", start_ts=HOUR), n_files=1)
    args = ["--bundle", str(bundle), "--store", str(tmp_path / "store"), "--until",
            "2025-03-01T01:00:00Z", "--since", "1h", "--evidently", "never"]
    out = _drift_cli(args, tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == ("error: only 2 payload rows in the window; a drift verdict "
                                  "needs at least 100 (min_rows in the drift config)")
    assert not list((tmp_path / "store").glob("monitoring/drift/**/summary.json"))
    write_payload_logs(store, payload_table(500, 4, "demographic", start_ts=HOUR + 60),
                       n_files=1)
    assert _drift_cli(args, tmp_path / "home").returncode == 3


def test_a_damaged_payload_file_is_skipped_not_fatal(tmp_path: Path) -> None:
    """Before, one truncated or random-bytes part file failed the check (exit 2) for its
    whole window, whatever the good files held."""
    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, payload_table(2_000, 3, "demographic", start_ts=HOUR), n_files=2)
    good = store.list("payload-logs")[0]
    store.put_bytes(good.rsplit("/", 1)[0] + "/part-damaged.parquet", b"PAR1 not parquet")
    out = _drift_cli(["--bundle", str(bundle), "--store", str(tmp_path / "store"), "--until",
                      "2025-03-01T01:00:00Z", "--since", "1h", "--evidently", "never"],
                     tmp_path / "home")
    assert out.returncode == 3, out.stdout + out.stderr  # the demographic drift is found
    assert "skipping an unreadable payload-log file" in out.stderr


def _published(store_dir: Path) -> list[Path]:
    return sorted(store_dir.glob("monitoring/drift/**/summary.json"))


def test_a_bundle_is_never_judged_on_traffic_of_another_version(tmp_path: Path) -> None:
    """--bundle 1 over an hour that version 2 served: before, the verdict (drift, exit 3)
    was published as version 1's. The rows of another version are no verdict on this one."""
    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)  # version "1"
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, payload_table(2_000, 3, "demographic", start_ts=HOUR,
                                            model_version="2"))
    window = ["--store", str(tmp_path / "store"), "--until", "2025-03-01T01:00:00Z",
              "--since", "1h", "--evidently", "never"]
    out = _drift_cli(["--bundle", str(bundle), *window], tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith("error: no payload rows of model version 1 "), out.stderr
    assert "model_version=2" in out.stderr, out.stderr
    assert not _published(tmp_path / "store")
    # asking for version 2's rows against version 1's bundle is refused, naming both
    other = _drift_cli(["--bundle", str(bundle), "--model-version", "2", *window],
                       tmp_path / "home")
    assert other.returncode == 2, other.stdout + other.stderr
    assert "--model-version 2" in other.stderr and "version 1" in other.stderr, other.stderr
    assert not _published(tmp_path / "store")


def test_a_mixed_window_is_judged_on_the_bundles_own_rows_only(tmp_path: Path) -> None:
    """A canary hour: version 1 and version 2 both served. Version 1's verdict is taken on
    version 1's rows (before: on all of them, the candidate's drifted traffic included)."""
    bundle = write_bundle(tmp_path / "bundle", n_reference=5_000)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, payload_table(3_000, 3, "none", start_ts=HOUR))
    write_payload_logs(store, payload_table(3_000, 4, "demographic", start_ts=HOUR,
                                            model_version="2"))
    out = _drift_cli(["--bundle", str(bundle), "--store", str(tmp_path / "store"), "--until",
                      "2025-03-01T01:00:00Z", "--since", "1h", "--evidently", "never",
                      "--json"], tmp_path / "home")
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    assert summary["model_version"] == "1"
    assert summary["window"]["rows"] == 3_000
    assert summary["window"]["model_versions"] == {"1": 3_000}
    assert summary["drifted_features"] == []


def test_the_exporter_drops_its_verdict_when_the_store_goes_away(tmp_path: Path) -> None:
    """`--metrics-port --every`: once the checks fail (store gone), the last drift share is
    no longer served as if fresh; the last-success timestamp stays, so DriftJobStale
    (time() - marquee_drift_last_run_timestamp_seconds) fires when the failures go on."""
    import shutil

    import httpx
    from conftest import free_port, stop_process, wait_until

    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, payload_table(2_000, 4, "demographic", start_ts=HOUR))
    port = free_port()
    log = open(tmp_path / "exporter.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "marquee.cli", "drift", "check", "--bundle", str(bundle),
         "--store", str(tmp_path / "store"), "--since", "2025-03-01T00:00:00Z", "--until",
         "2025-03-01T01:00:00Z", "--evidently", "never", "--no-publish", "--no-embeddings",
         "--metrics-port", str(port), "--every", "1"],
        env={"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(tmp_path / "home"),
             "MARQUEE_BIND_HOST": "127.0.0.1"},
        cwd=REPO, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(lambda: 'marquee_drift_share{model_version="1"}'
                   in httpx.get(url, timeout=1).text, timeout=90, what="drift gauges served")
        shutil.rmtree(tmp_path / "store")
        wait_until(lambda: "marquee_drift_share{" not in httpx.get(url, timeout=1).text,
                   timeout=30, what="the stale drift share dropped")
        text = httpx.get(url, timeout=1).text
        assert "marquee_drift_feature_score{" not in text
        assert "marquee_drift_window_rows{" not in text
        assert "\nmarquee_drift_last_run_timestamp_seconds " in text  # last success kept
        assert proc.poll() is None  # the exporter goes on
    finally:
        stop_process(proc)
        log.close()
    assert "error: " in (tmp_path / "exporter.log").read_text()


def test_rows_without_logged_features_are_no_drift_evidence(tmp_path: Path) -> None:
    """Before, 30 rows with features among 2,000 sink rows without any passed min_rows and
    were judged alone: 19 of 20 features "drifted" (exit 3, a retraining run). Rows without
    logged features are left out and counted; min_rows counts the rows that have them, and a
    window of featureless rows only is no data (exit 2, saying why)."""
    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, without_features(payload_table(2_000, 5, start_ts=HOUR)))
    args = ["--bundle", str(bundle), "--store", str(tmp_path / "store"), "--until",
            "2025-03-01T01:00:00Z", "--since", "1h", "--evidently", "never", "--no-publish",
            "--no-embeddings"]
    only_sink = _drift_cli(args, tmp_path / "home")
    assert only_sink.returncode == 2, only_sink.stdout + only_sink.stderr
    assert len(only_sink.stderr.strip().splitlines()) == 1, only_sink.stderr
    assert only_sink.stderr.startswith(
        "error: none of the 2,000 payload rows of model version 1 in the window carries "
        "logged features (every f_* column is null"), only_sink.stderr

    write_payload_logs(store, payload_table(30, 3, "none", start_ts=HOUR))
    few = _drift_cli(args, tmp_path / "home")
    assert few.returncode == 2, few.stdout + few.stderr
    assert few.stderr.strip() == (
        "error: only 30 payload rows with logged features in the window (2,000 more carry "
        "none and are left out); a drift verdict needs at least 100 (min_rows in the drift "
        "config)")

    write_payload_logs(store, payload_table(2_000, 3, "none", start_ts=HOUR))
    ok = _drift_cli([*args, "--json"], tmp_path / "home")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["drifted_features"] == []
    assert summary["window"]["rows"] == 2_030
    assert summary["window"]["rows_without_features"] == 2_000
    assert {f["rows_current"] for f in summary["features"]} == {2_030}


def test_drift_check_pushes_to_the_settings_pushgateway(tmp_path: Path) -> None:
    """MARQUEE_PUSHGATEWAY_URL (the chart's settings.pushgatewayUrl) is where the gauges go
    without --pushgateway: before, nothing read it, the CronJob pushed nothing and the drift
    alerts could never fire in a cluster. The push is grouped by the job's namespace
    (POD_NAMESPACE), so with honor_labels the series, and the alerts built on them, carry
    the release's namespace. An explicit --pushgateway wins; an empty one pushes nothing.
    The Pushgateway is a stand-in (pushgateway_stand_in.py)."""
    from pushgateway_stand_in import stand_in_pushgateway

    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, payload_table(2_000, 4, "demographic", start_ts=HOUR))
    args = ["--bundle", str(bundle), "--store", str(tmp_path / "store"), "--until",
            "2025-03-01T01:00:00Z", "--since", "1h", "--evidently", "never", "--no-publish",
            "--no-embeddings"]
    with stand_in_pushgateway() as setting, stand_in_pushgateway() as flag:
        env = {"MARQUEE_PUSHGATEWAY_URL": setting.url, "POD_NAMESPACE": "marquee"}
        out = _drift_cli(args, tmp_path / "home", env)
        assert out.returncode == 3, out.stdout + out.stderr
        assert setting.paths() == ["/metrics/job/marquee-drift/namespace/marquee"]
        push = setting.pushes[0]
        assert push.method == "PUT"  # replaces the job's last push: no stale feature series
        assert 'marquee_drift_share{model_version="1"} 0.25' in push.body
        assert "marquee_drift_last_run_timestamp_seconds " in push.body

        out = _drift_cli([*args, "--pushgateway", flag.url], tmp_path / "home", env)
        assert out.returncode == 3, out.stdout + out.stderr
        assert flag.paths() == ["/metrics/job/marquee-drift/namespace/marquee"]
        assert len(setting.pushes) == 1

        out = _drift_cli([*args, "--pushgateway", ""], tmp_path / "home", env)
        assert out.returncode == 3, out.stdout + out.stderr
        assert len(setting.pushes) == 1 and len(flag.pushes) == 1
