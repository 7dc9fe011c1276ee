"""What a client of the deployed model gets for cold users and for the model's unavailable
items, through real model servers on 127.0.0.1 (and the router in front of one), compared
with the Python API (``recsys.Recommender.recommend``) on the same bundle.

* A model trained with ``cold_start: popular`` (the default) answers cold users with their
  segment's popularity offline; the model server ignored that and ran the towers unless its
  own setting said ``popular``, so the same user got another list from the server. Likewise
  the ranker's pool size (``ranker.n_candidates``): the server ranked its own 200. Unset,
  both settings now follow the model.
* Unavailable items (``rerank.exclude_items``) were removed by the re-ranker after retrieval
  had cut the pool to ``candidates``: with ``k`` near that setting a client got fewer than
  ``k`` items, without a word (the contract: k items whatever the candidates setting).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import free_port, stop_process
from serving_support import V1_PATH, bundle_dir, start_server  # noqa: F401

from tests.rollout.rollout_support import start_router

pytestmark = pytest.mark.integration


def _v1(url: str, instance: dict) -> dict:
    r = httpx.post(url + V1_PATH, json={"instances": [instance]}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["predictions"][0]


def _python_items(rec, user_id: int, k: int) -> list[int]:
    return rec.recommend([user_id], k=k)["item_id"].tolist()


@pytest.fixture(scope="module")
def served(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """A KServe model server with default settings and the router in front of it."""
    home = tmp_path_factory.mktemp("s17b-cold")
    port = free_port()
    server = start_server("kserve", bundle_dir, home, port, home / "server.log")
    try:
        router = start_router({"1": f"http://127.0.0.1:{port}"}, "1", home, home)
        try:
            yield f"http://127.0.0.1:{port}", router.url
        finally:
            router.stop()
    finally:
        stop_process(server)


# Open defects whose fix lies outside serving/runtime (see the reports of session 17, helper B):
def test_cold_users_get_the_models_cold_start_answer_on_every_path(
        served: tuple[str, str], bundle_dir: Path) -> None:  # noqa: F811
    from recsys import Recommender

    server, router = served
    rec = Recommender.load(bundle_dir)
    assert rec.config.cold_start == "popular"  # the default a trained model carries
    lengths = rec.history.lengths()
    user_ids = rec.users["user_id"].to_numpy()
    known_cold = [int(u) for u in user_ids[lengths < rec.config.cold_start_events][:3]]
    assert known_cold, "the tiny data set has no user with few events"
    unknown = int(user_ids.max()) + 1000
    for user in [*known_cold, unknown]:
        expected = _python_items(rec, user, 10)
        got = _v1(server, {"user_id": user, "k": 10, "context": {"ts": 1_700_000_000}})
        assert got["cold_start"] is True and got["fallback"] is False
        assert got["items"] == expected, f"user {user}: server and Python API disagree"
        via_router = httpx.post(router + "/recommend", json={
            "user_id": user, "k": 10, "context": {"ts": 1_700_000_000}}, timeout=30)
        assert via_router.status_code == 200, via_router.text
        assert via_router.json()["items"] == expected
        assert via_router.json()["cold_start"] is True


@pytest.fixture(scope="module")
def unavailable_bundle(tmp_path_factory: pytest.TempPathFactory):
    """A tiny model trained with the 40 most-watched items marked unavailable."""
    from marquee.bundle import finalize_bundle
    from recsys import Recommender
    from recsys.data.synth import generate
    from serving_support import N_EVENTS, N_ITEMS, N_USERS

    ds = generate(N_USERS, N_ITEMS, N_EVENTS, seed=3)
    counts = ds.interactions["item_id"].value_counts()
    unavailable = sorted(int(i) for i in counts.index[:40])
    config = {"seed": 3, "retrieval": {"epochs": 1, "dim": 16, "batch_size": 1024},
              "ranker": {"enabled": False}, "rerank": {"exclude_items": unavailable}}
    rec = Recommender(config)
    rec.fit(ds.interactions, ds.users, ds.items)
    bundle = tmp_path_factory.mktemp("s17b-unavailable") / "bundle"
    rec.save(bundle)
    finalize_bundle(bundle, "movie-recommender", "unavailable-1", training_config=config,
                    data_fingerprint=ds.fingerprint(), metrics={"ndcg_at_10": 0.0},
                    code_revision="test")
    return bundle, set(unavailable)


def test_unavailable_items_never_shorten_a_list_below_k(
        unavailable_bundle: tuple[Path, set[int]], tmp_path: Path) -> None:
    from recsys import Recommender

    bundle, unavailable = unavailable_bundle
    rec = Recommender.load(bundle)
    lengths = rec.history.lengths()
    user_ids = rec.users["user_id"].to_numpy()
    warm = [int(u) for u in user_ids[lengths >= rec.config.cold_start_events][:8]]
    # Precondition: retrieval's top 10 of these users hold unavailable items.
    _, cand, _ = rec.candidates(warm, 10)
    assert any(set(rec.item_ids[row].tolist()) & unavailable for row in cand)

    port = free_port()
    proc = start_server("kserve", bundle, tmp_path / "home", port, tmp_path / "server.log",
                        candidates=10)
    try:
        url = f"http://127.0.0.1:{port}"
        for user in warm:
            row = int(rec.user_index.lookup([user])[0])
            ts = int(rec.history.last_ts[row])  # the Python API's request time for this user
            got = _v1(url, {"user_id": user, "k": 10, "context": {"ts": ts}})
            assert not set(got["items"]) & unavailable
            assert len(got["items"]) == 10, f"user {user}: {len(got['items'])} items for k=10"
            assert len(set(got["items"])) == 10
            assert np.all(np.diff(got["scores"]) <= 0)
            assert got["items"] == _python_items(rec, user, 10)
    finally:
        stop_process(proc)


def test_a_ranked_model_is_served_with_the_candidate_pool_it_was_trained_with(
        tmp_path: Path) -> None:
    """The model's ranker scores its ``n_candidates`` retrieved items offline; the model
    server ranked its own default of 200 instead, so no warm user got the list the Python
    API gives (0 of 20 on this data)."""
    from conftest import TINY
    from marquee.bundle import finalize_bundle
    from recsys import Recommender
    from recsys.data.synth import generate

    ds = generate(250, 150, 9_000, seed=5)
    rec = Recommender(TINY).fit(ds.interactions, ds.users, ds.items, progress=False)
    assert rec.ranker is not None and rec.config.ranker.n_candidates == 40
    bundle = tmp_path / "bundle"
    rec.save(bundle)
    finalize_bundle(bundle, "movie-recommender", "ranked-1", training_config=TINY,
                    data_fingerprint=ds.fingerprint(), metrics={"ndcg_at_10": 0.0},
                    code_revision="test")
    rec = Recommender.load(bundle)
    lengths = rec.history.lengths()
    warm = [int(u) for u in rec.users["user_id"].to_numpy()[lengths >= 5][:8]]

    port = free_port()
    proc = start_server("kserve", bundle, tmp_path / "home", port, tmp_path / "server.log")
    try:
        url = f"http://127.0.0.1:{port}"
        info = httpx.get(url + "/marquee/model", timeout=10).json()
        assert info["candidates"] == 40
        for user in warm:
            row = int(rec.user_index.lookup([user])[0])
            ts = int(rec.history.last_ts[row])
            got = _v1(url, {"user_id": user, "k": 10, "context": {"ts": ts}})
            assert got["fallback"] is False
            assert got["items"] == _python_items(rec, user, 10), f"user {user}"
    finally:
        stop_process(proc)
