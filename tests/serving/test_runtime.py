"""The serving runtime on a real bundle: stages, exclusions, cold start, budgets, integrity."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from serving_support import bundle_dir  # noqa: F401 - fixture

from marquee.bundle import BundleIntegrityError, read_manifest
from marquee.settings import Settings
from serving.runtime.index import RetrievalIndex
from serving.runtime.loader import load_recommender, load_runtime
from serving.runtime.runtime import Runtime, StageBudgets
from serving.settings import ServingSettings

TS = 1_700_000_000.0
# Budgets no stage reaches, for tests of what the stages do (a loaded machine can take a
# first request past the default budgets, which is the popularity fallback's test).
NO_BUDGETS = StageBudgets(retrieve_ms=60_000, rank_ms=60_000, rerank_ms=60_000)


@pytest.fixture(scope="module")
def runtime(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Runtime:  # noqa: F811
    home = tmp_path_factory.mktemp("home")
    return load_runtime(Settings(home=home), ServingSettings(bundle_uri=str(bundle_dir)))


def _known_user(rt: Runtime) -> int:
    users = rt.rec.users["user_id"].to_numpy()
    lengths = rt.rec.history.lengths()
    return int(users[int(np.argmax(lengths))])


def test_recommend_returns_k_unseen_items_with_version_and_ids(runtime: Runtime) -> None:
    user = _known_user(runtime)
    rec = runtime.recommend(user, k=10, context={"ts": TS})
    assert len(rec.items) == 10 and len(set(rec.items)) == 10
    assert rec.model_version == read_manifest(runtime.bundle_dir).version
    assert rec.request_id and not rec.cold_start and not rec.fallback
    seen = set(runtime.item_ids[runtime.rec.seen_idx(runtime.rec.user_state(user))].tolist())
    assert seen and not seen & set(rec.items)
    assert set(rec.features) >= {"history_length", "age_bucket", "hour_of_day"}
    assert {"retrieve", "rank", "rerank", "total"} <= set(rec.timings_ms)


def test_same_request_same_answer_and_history_override(runtime: Runtime) -> None:
    user = _known_user(runtime)
    a = runtime.recommend(user, 10, {"ts": TS})
    b = runtime.recommend(user, 10, {"ts": TS})
    assert (a.items, a.scores) == (b.items, b.scores)
    history = runtime.item_ids[:7].tolist()
    c = runtime.recommend(user, 10, {"ts": TS}, history=history)
    assert c.features["history_length"] == 7.0
    assert not set(history) & set(c.items)


def test_unknown_user_gets_cold_start_results_not_an_error(runtime: Runtime) -> None:
    rec = runtime.recommend(10**12, k=5, context={"ts": TS})
    assert rec.cold_start and len(rec.items) == 5 and not rec.fallback
    assert set(rec.items) <= set(runtime.item_ids.tolist())


def test_stage_over_budget_falls_back_to_popularity(runtime: Runtime) -> None:
    user = _known_user(runtime)
    slow = Runtime(runtime.rec, candidates=runtime.candidates, index=runtime.index,
                   budgets=StageBudgets(retrieve_ms=1e-6))
    rec = slow.recommend(user, 10, {"ts": TS})
    assert rec.fallback and rec.fallback_reason == "retrieve_timeout"
    state = runtime.rec.user_state(user, ts=TS)
    pop_idx, _ = runtime.rec.popular(state, 10, exclude=set(runtime.rec.seen_idx(state).tolist()))
    assert rec.items == runtime.item_ids[pop_idx].tolist()


def test_failing_stage_falls_back_to_popularity(runtime: Runtime) -> None:
    class BrokenRanker:
        def __getattr__(self, name: str):
            return getattr(runtime.rec, name)

        def rank(self, *args, **kwargs):
            raise RuntimeError("ranker down")

    broken = Runtime(BrokenRanker(), candidates=runtime.candidates, index=runtime.index)
    rec = broken.recommend(_known_user(runtime), 10, {"ts": TS})
    assert rec.fallback and rec.fallback_reason == "rank_error" and len(rec.items) == 10


def test_retrieval_takes_at_least_the_configured_candidates(runtime: Runtime) -> None:
    assert runtime.candidates == min(200, runtime.n_items)
    seen_rows: list[np.ndarray] = []

    class Spy:
        def __getattr__(self, name: str):
            return getattr(runtime.rec, name)

        def rank(self, state, cand_idx, scores):
            seen_rows.append(cand_idx)
            return runtime.rec.rank(state, cand_idx, scores)

    Runtime(Spy(), candidates=200, index=runtime.index, budgets=NO_BUDGETS).recommend(
        _known_user(runtime), 10, {"ts": TS})
    assert len(seen_rows[0]) == 200


def test_a_k_above_the_candidates_setting_still_gets_k_items(runtime: Runtime) -> None:
    """k may be up to 500 while retrieval takes 200 candidates by default: before, such a
    request silently got 200 items (and V2 answers 300 padding slots)."""
    user = _known_user(runtime)
    small = Runtime(runtime.rec, candidates=20, index=runtime.index, budgets=NO_BUDGETS)
    rec = small.recommend(user, 50, {"ts": TS})
    assert len(rec.items) == len(set(rec.items)) == 50 and not rec.fallback
    seen = set(runtime.item_ids[runtime.rec.seen_idx(runtime.rec.user_state(user))].tolist())
    assert not seen & set(rec.items)
    assert small.recommend(user, 10, {"ts": TS}).items == \
        small.recommend(user, 10, {"ts": TS}).items[:10]


def test_approximate_index_reaches_target_recall_and_scores_are_exact() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(50, 16)).astype(np.float32)
    items = centers[rng.integers(0, 50, 20_000)] + 0.3 * rng.normal(size=(20_000, 16))
    items = items.astype(np.float32)
    queries = (centers[rng.integers(0, 50, 100)] + 0.3 * rng.normal(size=(100, 16))
               ).astype(np.float32)
    for kind in ("ivf", "hnsw"):
        index = RetrievalIndex(items, kind=kind, k=200, nprobe=1, ef_search=8,
                               hnsw_ef_construction=40, hnsw_m=16)
        report = index.calibrate(queries, target_recall=0.95)
        assert report.kind == kind and report.recall >= 0.95 and report.sample == 100
        rows, scores = index.search(queries[0], 200)
        np.testing.assert_allclose(scores, items[rows] @ queries[0], rtol=1e-5)
        assert np.all(np.diff(scores) <= 1e-6)


def test_tampered_bundle_is_refused(bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    emb = copy / "model" / "item_embeddings.npy"
    data = bytearray(emb.read_bytes())
    data[-1] ^= 0xFF
    emb.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="item_embeddings.npy"):
        load_runtime(Settings(home=tmp_path / "home"), ServingSettings(bundle_uri=str(copy)))
    emb.write_bytes(bytes(data[:-1]) + bytes([data[-1] ^ 0xFF]))  # restored
    (copy / "model" / "extra.npy").write_bytes(b"unlisted")
    with pytest.raises(BundleIntegrityError, match="extra.npy"):
        load_runtime(Settings(home=tmp_path / "home"), ServingSettings(bundle_uri=str(copy)))


def test_load_by_registry_alias_and_version_from_s3(bundle_dir: Path, tmp_path: Path,  # noqa: F811
                                                   s3_env: str) -> None:
    from marquee.bundle import publish_bundle
    from marquee.registry import Registry
    from marquee.store import open_store

    settings = Settings(home=tmp_path / "home", store_uri="s3://serving-test/store",
                        s3_endpoint_url=s3_env)
    store = open_store(settings.resolved_store_uri, s3_env, create_bucket=True)
    uri = publish_bundle(store, bundle_dir, "movie-recommender", "1")
    assert uri.startswith("s3://")
    registry = Registry(settings.resolved_registry_uri, settings.model_name)
    version = registry.register(uri, {"ndcg_at_10": 0.1})
    registry.set_alias("production", version)
    by_alias = load_runtime(settings, ServingSettings(alias="production"))
    by_version = load_runtime(settings, ServingSettings(model_version=str(version)))
    assert by_alias.bundle_uri == by_version.bundle_uri == uri
    local = load_recommender(bundle_dir)
    assert by_alias.version == local.version == "1"
    # the S3 copy was verified and yields the same recommendations as the local bundle
    a = by_alias.recommend(1, 10, {"ts": TS})
    b = Runtime(local).recommend(1, 10, {"ts": TS})
    assert a.items == b.items


def test_warm_up_records_nothing_and_leaves_the_budgets(runtime: Runtime,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The model server warms the request path up at load (the ranker runs for known users):
    no request counted, no latency observed, no fallback, and the real budgets back in force
    afterwards."""
    from prometheus_client import REGISTRY

    ranked: list[int] = []
    rank = runtime.rec.rank
    monkeypatch.setattr(runtime.rec, "rank", lambda *a, **kw: ranked.append(1) or rank(*a, **kw))

    def samples() -> dict:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for m in REGISTRY.collect() if m.name.startswith("marquee_serving")
                for s in m.samples}

    budgets = runtime.budgets
    before = samples()
    runtime.warm_up()
    assert len(ranked) >= 1  # the whole path ran, ranker included
    assert samples() == before
    assert runtime.budgets is budgets
    rec = runtime.recommend(_known_user(runtime), 10, {"ts": TS})
    assert len(rec.items) == 10
    assert samples() != before  # a real request is recorded again


def test_an_alias_asks_the_registry_even_beside_a_folder_of_that_name(
        bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """``--alias production`` run where a ``production/`` folder holds a bundle served that
    folder (a bare word that named a directory was taken for a path), not the registry's
    production."""
    import shutil

    from marquee.registry import Registry

    settings = Settings(home=tmp_path / "home")
    registry = Registry(settings.resolved_registry_uri, settings.model_name)
    registry.set_alias("production", registry.register(str(bundle_dir), {"ndcg_at_10": 0.1}))
    workdir = tmp_path / "work"
    shutil.copytree(bundle_dir, workdir / "production")  # some other bundle, named production
    monkeypatch.chdir(workdir)
    rt = load_runtime(settings, ServingSettings(alias="production"))
    assert rt.bundle_uri == str(bundle_dir)
