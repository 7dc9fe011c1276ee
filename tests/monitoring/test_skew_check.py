"""The skew check flags planted serving bugs and passes a clean window.

"Serving" and "offline" compute features with the same stand-in of
recsys.features.request_features (the contract's definitions: UTC hour and weekday, genre
shares over MovieLens' genre vocabulary), serving with a planted bug:
hour of day in the wrong time zone, or a genre vocabulary off by one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from monitoring.features import CONTRACT_FEATURES
from monitoring.errors import NoDataError
from monitoring.skew.job import OfflineRecompute, SkewConfig, compare, run_skew
from monitoring.drift.scenarios import item_tables, without_features
from recsys.data.schema import AGE_BUCKETS, GENDERS, GENRES, REGIONS

SHARE = ("Drama", "Comedy", "Action", "Thriller", "Romance", "Adventure", "Sci-Fi", "Crime",
         "Horror", "Children's")
DEFAULTS = {"age_bucket": "unknown", "gender": "U", "occupation": "unknown",
            "region": "unknown"}


def make_features(items: pd.DataFrame, counts: np.ndarray, *, tz_hours: float = 0.0,
                  genre_shift: int = 0):
    """A stand-in for recsys.features.request_features, with optional planted bugs."""
    ids = items["item_id"].to_numpy()
    index = {int(i): r for r, i in enumerate(ids)}
    vocab = {g: (j + genre_shift) % len(GENRES) for j, g in enumerate(GENRES)}
    genre_rows = np.zeros((len(items), len(GENRES)), dtype=np.int64)
    for r, gs in enumerate(items["genres"]):
        for g in gs.split("|"):
            genre_rows[r, vocab[g]] = 1
    years = items["year"].to_numpy(np.float64)
    log_pop = np.log1p(np.asarray(counts, dtype=np.float64))
    zone = timezone(timedelta(hours=tz_hours))

    def features(user: Mapping[str, object] | None, history: Sequence[int], ts: float) -> dict:
        out: dict[str, object] = {k: str((user or {}).get(k) or d) for k, d in DEFAULTS.items()}
        rows = np.array([index[h] for h in history if h in index], dtype=np.int64)
        n = rows.size
        when = datetime.fromtimestamp(ts, tz=zone)
        g = genre_rows[rows].sum(axis=0) if n else np.zeros(len(GENRES), dtype=np.int64)
        out["top_genre"] = GENRES[int(np.argmax(g))] if n and g.max() > 0 else "none"
        out["history_length"] = float(n)
        out["hour_of_day"] = float(when.hour)
        out["day_of_week"] = float(when.weekday())
        out["history_mean_year"] = float(years[rows].mean()) if n else 0.0
        out["history_mean_popularity"] = float(log_pop[rows].mean()) if n else 0.0
        for name in SHARE:
            out[f"genre_share_{name}"] = float(g[GENRES.index(name)] / n) if n else 0.0
        return out

    return features


@pytest.fixture(scope="module")
def world() -> dict:
    rng = np.random.default_rng(5)
    items, pop = item_tables(n_items=500, seed=3)
    n_users = 300
    users = pd.DataFrame({
        "user_id": np.arange(1, n_users + 1),
        "age_bucket": rng.choice(AGE_BUCKETS, n_users),
        "gender": rng.choice(GENDERS, n_users),
        "occupation": rng.choice(["student", "engineer", "artist", "other"], n_users),
        "region": rng.choice(REGIONS, n_users),
        "history": [list(rng.choice(items["item_id"], rng.integers(0, 40), replace=False))
                    for _ in range(n_users)],
    })
    n = 3000
    uid = rng.integers(1, n_users + 40, n)  # some users the bundle does not know
    ts = 1_740_787_200 + rng.random(n) * 7 * 86400
    bodies = [json.dumps({"user_id": int(u), "k": 10,
                          **({"history": [int(x) for x in rng.choice(items["item_id"], 5)]}
                             if rng.random() < 0.2 else {})}) for u in uid]
    requests = pd.DataFrame({"request_id": [f"r{i}" for i in range(n)], "user_id": uid,
                             "ts": ts, "request_json": bodies})
    return {"items": items, "counts": pop["count"].to_numpy(), "users": users,
            "requests": requests}


def served_window(world: dict, **bug: float) -> pa.Table:
    """What serving logged: its (possibly buggy) features for each request, as f_<name>."""
    fn = make_features(world["items"], world["counts"], **bug)
    feats = OfflineRecompute(fn, world["users"])(world["requests"])
    frame = world["requests"].merge(feats, on="request_id")
    frame = frame.rename(columns={n: f"f_{n}" for n in CONTRACT_FEATURES})
    return pa.Table.from_pandas(frame, preserve_index=False)


def skew(world: dict, window: pa.Table, **cfg: object):
    offline = OfflineRecompute(make_features(world["items"], world["counts"]), world["users"])
    return run_skew(window, offline, CONTRACT_FEATURES, SkewConfig(**cfg),
                    model_name="movie-recommender", model_version="1")


def test_clean_window_passes(world: dict) -> None:
    s = skew(world, served_window(world))
    assert s.joined == 3000 and s.unmatched == 0
    assert s.skewed_features == [] and not s.skew_detected
    assert max(f.mismatch_rate for f in s.features) == 0.0


def test_hour_in_the_wrong_time_zone_is_flagged(world: dict) -> None:
    s = skew(world, served_window(world, tz_hours=-5))
    assert set(s.skewed_features) == {"hour_of_day", "day_of_week"}
    hour = next(f for f in s.features if f.name == "hour_of_day")
    assert hour.mismatch_rate == 1.0
    ex = hour.examples[0]
    assert (ex.offline - ex.served) % 24 == 5
    day = next(f for f in s.features if f.name == "day_of_week")
    assert 0.1 < day.mismatch_rate < 0.35  # only requests within 5 h after midnight UTC


def test_genre_vocabulary_off_by_one_is_flagged(world: dict) -> None:
    s = skew(world, served_window(world, genre_shift=1))
    genre_features = {"top_genre", *(f"genre_share_{g}" for g in SHARE)}
    assert set(s.skewed_features) <= genre_features
    assert "top_genre" in s.skewed_features
    assert len(set(s.skewed_features) & genre_features) >= 9
    for f in s.features:
        if f.name not in genre_features:
            assert f.mismatch_rate == 0.0, f.name


def test_request_history_is_used_offline_as_in_serving(world: dict) -> None:
    """Serving honours a request's own history; an offline side that ignored it would
    report skew on history features for exactly those requests."""
    window = served_window(world)
    stripped = world["requests"].assign(request_json=None)
    ignore_history = OfflineRecompute(make_features(world["items"], world["counts"]),
                                      world["users"])(stripped)
    served = window.to_pandas().drop(columns=["request_json"])
    results, _ = compare(served, ignore_history, CONTRACT_FEATURES, SkewConfig())
    with_history = sum("history" in b for b in world["requests"]["request_json"])
    length = next(r for r in results if r.name == "history_length")
    assert 0 < length.mismatches <= with_history


def test_float32_rounding_in_the_logs_is_not_skew(world: dict) -> None:
    frame = served_window(world).to_pandas()
    for c in frame.columns:
        if c.startswith("f_") and frame[c].dtype == np.float64:
            frame[c] = frame[c].astype(np.float32).astype(np.float64)
    s = skew(world, pa.Table.from_pandas(frame, preserve_index=False))
    assert s.skewed_features == []


def test_sample_and_unmatched_requests_are_reported(world: dict) -> None:
    s = skew(world, served_window(world), max_requests=500)
    assert s.requests_sampled == 500 and s.joined == 500 and s.window_rows == 3000


def test_metrics_export() -> None:
    from prometheus_client import generate_latest

    from monitoring.skew import metrics
    from monitoring.skew.job import SkewFeatureResult, SkewSummary

    s = SkewSummary(created=datetime.now(timezone.utc), model_name="m", model_version="4",
                    window_rows=10, requests_sampled=10, joined=10, unmatched=0,
                    features=[SkewFeatureResult(name="hour_of_day", kind="numeric", compared=10,
                                                mismatches=9, mismatch_rate=0.9, threshold=0.01,
                                                skewed=True, distance=0.3,
                                                distance_method="wasserstein")],
                    skewed_features=["hour_of_day"], skew_detected=True)
    metrics.export(s, now=99.0)
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'marquee_skew_mismatch_rate{feature="hour_of_day",model_version="4"} 0.9' in text
    assert 'marquee_skew_mismatch_threshold{feature="hour_of_day",model_version="4"} 0.01' in text
    assert "marquee_skew_last_run_timestamp_seconds 99.0" in text


def test_contract_features_match_recsys_feature_spec_and_drift_config() -> None:
    from monitoring.drift.config import load_config

    assert {n: f.kind for n, f in load_config().features.items()} == CONTRACT_FEATURES
    features = pytest.importorskip("recsys.features")
    assert dict(features.FEATURE_SPEC) == CONTRACT_FEATURES


def test_rows_without_logged_features_are_left_out_not_skew(world: dict) -> None:
    """The same requests logged twice: by the model server with its features, and by
    KServe's logger sink without any. Before, null against the offline value counted as a
    mismatch, so every feature was "skewed" (TrainingServingSkew paged on every window)."""
    clean = served_window(world)
    s = skew(world, pa.concat_tables([clean, without_features(clean)]))
    assert s.skewed_features == [] and not s.skew_detected
    assert s.window_rows == 6000 and s.rows_without_features == 3000
    assert s.requests_sampled == 3000 and s.joined == 3000 and s.unmatched == 0
    assert max(f.mismatch_rate for f in s.features) == 0.0
    # a real bug among such rows is still found, on the right features only
    buggy = served_window(world, tz_hours=-5)
    s = skew(world, pa.concat_tables([without_features(clean), buggy]))
    assert set(s.skewed_features) == {"hour_of_day", "day_of_week"}
    assert s.rows_without_features == 3000 and s.joined == 3000


def test_a_window_without_logged_features_is_no_data(world: dict) -> None:
    """Only sink rows: nothing to compare, so no verdict (exit 2), not skew on every
    feature."""
    with pytest.raises(NoDataError) as err:
        skew(world, without_features(served_window(world)))
    assert err.value.message.startswith(
        "none of the 3,000 payload rows in the window carries logged features (every f_* "
        "column is null"), err.value.message


def _skew_bundle(world: dict, tmp_path) -> tuple:  # noqa: ANN001
    """A bundle directory (model version "1") with the tables recsys.features reads, and
    the feature function it builds."""
    import pyarrow.parquet as pq

    from marquee.bundle import finalize_bundle
    from monitoring.skew.offline import bundle_feature_fn

    bundle = tmp_path / "bundle"
    (bundle / "model").mkdir(parents=True)
    items, pop = item_tables(n_items=500, seed=3)
    items.to_parquet(bundle / "model" / "items.parquet", index=False)
    pop.to_parquet(bundle / "model" / "popularity.parquet", index=False)
    users = world["users"].assign(history=[[int(x) for x in h] for h in world["users"]["history"]])
    pq.write_table(pa.Table.from_pandas(users, preserve_index=False),
                   bundle / "model" / "user_features.parquet")
    finalize_bundle(bundle, "movie-recommender", "1", {}, "0" * 64, {}, code_revision="t")
    return bundle, bundle_feature_fn(bundle)


def _served_logs(world: dict, fn, start: int, *, shift: float = 0.0,  # noqa: ANN001
                 version: str = "1") -> pa.Table:
    """3,000 requests from ``start`` (one a second) with the features serving logged:
    ``fn`` with the clock shifted by ``shift`` seconds (a time-zone bug when non-zero)."""
    req = world["requests"].assign(ts=start + np.arange(3000) * 1.0,
                                   request_id=[f"{version}-{start}-{i}" for i in range(3000)])
    feats = OfflineRecompute(lambda u, h, ts: fn(u, h, ts + shift), world["users"])(req)
    frame = req.merge(feats, on="request_id").rename(
        columns={n: f"f_{n}" for n in CONTRACT_FEATURES})
    frame["model_version"] = version
    return pa.Table.from_pandas(frame, preserve_index=False)


def _skew_cli(tmp_path, bundle, until: str, *extra: str,  # noqa: ANN001
              env: dict[str, str] | None = None):
    import subprocess
    import sys

    from conftest import REPO

    return subprocess.run(
        [sys.executable, "-m", "marquee.cli", "skew", "check", "--bundle", str(bundle),
         "--store", str(tmp_path / "store"), "--since", "2h", "--until", until, "--json",
         *extra],
        env={"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(tmp_path / "home"), **(env or {})},
        cwd=REPO, capture_output=True, text=True, timeout=120)


def test_skew_check_command_with_the_pipelines_feature_code(world: dict, tmp_path) -> None:
    """`marquee skew check` end to end: bundle tables, payload logs in a store, and the
    offline side computed by recsys.features itself."""
    from marquee.store import LocalStore
    from monitoring.drift.scenarios import write_payload_logs

    pytest.importorskip("recsys.features")
    bundle, fn = _skew_bundle(world, tmp_path)
    store = LocalStore(tmp_path / "store")
    for shift, start in ((0, 1_740_787_200), (-5 * 3600, 1_740_787_200 + 86400)):
        write_payload_logs(store, _served_logs(world, fn, start, shift=shift))

    clean = _skew_cli(tmp_path, bundle, "2025-03-01T02:00:00Z")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["joined"] == 3000
    buggy = _skew_cli(tmp_path, bundle, "2025-03-02T02:00:00Z")
    assert buggy.returncode == 3, buggy.stderr
    summary = json.loads(buggy.stdout)
    assert set(summary["skewed_features"]) == {"hour_of_day", "day_of_week"}
    assert store.exists(summary["outputs"]["summary_json"].split("/store/", 1)[1])


def test_skew_check_judges_only_the_bundles_version_and_pushes_by_default(
        world: dict, tmp_path) -> None:
    """A canary window: version 1 (the bundle) logs clean features, version 2 a time-zone
    bug. Before, the check read both versions' rows and published version 2's skew as
    version 1's (exit 3). Now only version 1's rows are compared; a window of version 2's
    rows alone is no data (exit 2, naming it), and --model-version may only repeat the
    bundle's. The gauges go to MARQUEE_PUSHGATEWAY_URL without --pushgateway (before,
    nothing read it), grouped by the job's namespace. The Pushgateway is a stand-in
    (pushgateway_stand_in.py)."""
    from pushgateway_stand_in import stand_in_pushgateway

    from marquee.store import LocalStore
    from monitoring.drift.scenarios import write_payload_logs

    pytest.importorskip("recsys.features")
    bundle, fn = _skew_bundle(world, tmp_path)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, _served_logs(world, fn, 1_740_787_200))
    write_payload_logs(store, _served_logs(world, fn, 1_740_787_200, shift=-5 * 3600,
                                           version="2"))
    write_payload_logs(store, _served_logs(world, fn, 1_740_787_200 + 86400,
                                           shift=-5 * 3600, version="2"))

    with stand_in_pushgateway() as gateway:
        env = {"MARQUEE_PUSHGATEWAY_URL": gateway.url, "POD_NAMESPACE": "marquee"}
        canary = _skew_cli(tmp_path, bundle, "2025-03-01T02:00:00Z", env=env)
        assert canary.returncode == 0, canary.stdout + canary.stderr
        summary = json.loads(canary.stdout)
        assert summary["model_version"] == "1" and summary["skewed_features"] == []
        assert summary["window_rows"] == 3000 and summary["joined"] == 3000
        assert gateway.paths() == ["/metrics/job/marquee-skew/namespace/marquee"]
        assert ('marquee_skew_mismatch_rate{feature="hour_of_day",model_version="1"} 0.0'
                in gateway.pushes[0].body)

        other = _skew_cli(tmp_path, bundle, "2025-03-02T02:00:00Z", env=env)
        assert other.returncode == 2, other.stdout + other.stderr
        assert other.stderr.startswith("error: no payload rows of model version 1 "), \
            other.stderr
        assert "model_version=2" in other.stderr
        asked = _skew_cli(tmp_path, bundle, "2025-03-01T02:00:00Z", "--model-version", "2",
                          env=env)
        assert asked.returncode == 2, asked.stdout + asked.stderr
        assert "--model-version 2" in asked.stderr and "version 1" in asked.stderr
        assert len(gateway.pushes) == 1  # no verdict, nothing pushed
