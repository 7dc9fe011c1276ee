"""The online fast paths give the same numbers as the reference (batch/torch) paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.recommender import DEMO_COLUMNS, Recommender

@pytest.fixture(scope="module")
def data(tiny_data):
    return tiny_data


@pytest.fixture(scope="module")
def rec(tiny_rec) -> Recommender:
    return tiny_rec


def _torch_user_vector(rec: Recommender, state) -> np.ndarray:
    """The reference: the batch path's torch tower on the same (padded) inputs."""
    L = rec.config.retrieval.history_len
    hist = np.zeros((1, L), dtype=np.int64)
    tail = state.history[-L:] + 1
    if tail.size:
        hist[0, L - tail.size:] = tail
    batch = rec._user_batch(np.array([state.row]), np.array([state.user_id]), hist,
                            np.array([state.ts]))
    with torch.no_grad():
        return rec.model.user_vectors(batch).numpy()[0]


def test_numpy_user_tower_equals_the_torch_tower(rec: Recommender, data) -> None:
    users = data.users["user_id"].to_numpy()
    items = data.items["item_id"].to_numpy()
    states = [rec.user_state(int(u)) for u in users[:40]]
    states += [rec.user_state(10**9),  # unknown user, no history
               rec.user_state(10**9 + 1, history=items[:5].tolist(), ts=1.0e9),
               rec.user_state(int(users[0]), history=[], ts=2.0e9),
               rec.user_state(int(users[1]), history=items[::-1].tolist())]  # > history_len
    for state in states:
        fast = rec.user_embedding(state)
        assert fast.dtype == np.float32 and fast.shape == (rec.config.retrieval.dim,)
        np.testing.assert_allclose(fast, _torch_user_vector(rec, state), rtol=1e-4, atol=1e-5)


def test_online_user_vectors_match_the_offline_batch(rec: Recommender, data) -> None:
    users = data.users["user_id"].to_numpy()[:30]
    rows = rec.user_index.lookup(users)
    batch = rec.user_vectors(rows, users)
    online = np.stack([rec.user_embedding(rec.user_state(int(u))) for u in users])
    np.testing.assert_allclose(online, batch, rtol=1e-4, atol=1e-5)


def test_user_state_demographics_are_the_users_table(rec: Recommender, data) -> None:
    for row, u in enumerate(rec.users["user_id"].to_numpy()[:50]):
        state = rec.user_state(int(u))
        assert state.user == {c: str(rec.users[c].iat[row]) for c in DEMO_COLUMNS}
    assert rec.user_state(10**9).user == {}


def _item_item_models():
    import scipy.sparse as sp

    from recsys.models.item_item import ItemItem

    rng = np.random.default_rng(3)
    w = rng.random((60, 60)).astype(np.float32)
    w[w < 0.7] = 0.0  # sparse enough that some rows have no neighbours among candidates
    w[5] = 0.0
    return ItemItem(w), ItemItem(sp.csr_matrix(w)), w


@pytest.mark.parametrize("history", [[], [3], [5], [1, 2], [4, 9, 4, 30, 5, 7, 7, 59, 0, 12],
                                     list(range(0, 60, 2)) * 2])
def test_item_item_scores_in_one_pass_equal_two_reference_scores(history) -> None:
    dense, sparse, w = _item_item_models()
    hist = np.asarray(history, dtype=np.int64)
    cand = np.array([0, 7, 7, 12, 33, 59, 5, 2], dtype=np.int64)  # repeats allowed
    for recent in (1, 5, 100):
        ref_full = w[hist][:, cand].sum(axis=0) if hist.size else np.zeros(cand.size)
        tail = hist[-recent:]
        ref_recent = w[tail][:, cand].sum(axis=0) if tail.size else np.zeros(cand.size)
        for model in (dense, sparse):
            full, part = model.scores(hist, cand, recent)
            assert full.dtype == np.float32 and part.dtype == np.float32
            np.testing.assert_allclose(full, ref_full, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(part, ref_recent, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(full, model.score(hist, cand), rtol=1e-5, atol=1e-6)


def test_rank_features_item_item_columns_equal_the_reference_scores(rec: Recommender,
                                                                   data) -> None:
    from recsys.models.rank_features import FEATURES, RECENT

    ctx = rec.rank_ctx
    rng = np.random.default_rng(0)
    for u in data.users["user_id"].to_numpy()[:20]:
        state = rec.user_state(int(u))
        cand = rng.choice(len(rec.item_ids), 40, replace=False)
        x = ctx.features(rec.state_view(state), cand, rng.random(40).astype(np.float32))
        for name, model in (("cooc", ctx.item_item), ("session", ctx.session)):
            np.testing.assert_allclose(x[:, FEATURES.index(f"{name}_score")],
                                       model.score(state.history, cand), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(x[:, FEATURES.index(f"{name}_recent")],
                                       model.score(state.history[-RECENT:], cand),
                                       rtol=1e-5, atol=1e-6)


def test_isin_small_equals_numpy_isin() -> None:
    from recsys.rerank import isin_small

    rng = np.random.default_rng(0)
    for n_values, n_members in ((0, 3), (5, 0), (200, 1), (280, 80), (50, 500)):
        values = rng.integers(0, 300, n_values)
        members = rng.integers(0, 300, n_members)
        assert np.array_equal(isin_small(values, members), np.isin(values, members))


def test_rank_features_popularity_windows_equal_naive_counts(rec: Recommender, data) -> None:
    from recsys.models.rank_features import DAY, FEATURES, WINDOWS_DAYS

    inter = rec.indexed(data.interactions)
    item_row = inter["item_row"].to_numpy()
    ts = inter["timestamp"].to_numpy(np.int64)
    rng = np.random.default_rng(1)
    for u in data.users["user_id"].to_numpy()[:10]:
        state = rec.user_state(int(u))
        cand = rng.choice(len(rec.item_ids), 30, replace=False)
        x = rec.rank_ctx.features(rec.state_view(state), cand, rng.random(30).astype(np.float32))
        t = state.ts
        for w in WINDOWS_DAYS:
            naive = [np.sum((item_row == c) & (ts <= t) & (ts > t - w * DAY)) for c in cand]
            np.testing.assert_allclose(x[:, FEATURES.index(f"pop_{w}d_log")],
                                       np.log1p(naive), rtol=1e-6)
        for j, c in enumerate(cand):
            before = ts[(item_row == c) & (ts <= t)]
            want = np.log1p((t - before.max()) / DAY) if before.size else -1.0
            assert x[j, FEATURES.index("days_since_item_event")] == pytest.approx(want, rel=1e-5)


def test_compiled_rank_kernels_equal_their_numpy_twins() -> None:
    import scipy.sparse as sp

    from recsys.models import rank_kernels as rk

    rng = np.random.default_rng(7)
    n_items, shift = 300, 32
    item = np.sort(rng.integers(0, n_items, 5000))
    keys = np.sort((item << shift) + rng.integers(0, 10_000, item.size))
    offsets = np.r_[0, np.cumsum(np.bincount(item, minlength=n_items))].astype(np.int64)
    cand = rng.choice(n_items, 120, replace=False).astype(np.int64)
    rel = np.array([9_000, 5_000, 0, 20_000], dtype=np.int64)
    assert np.array_equal(rk.count_before(keys, offsets, cand, shift, rel),
                          rk.count_before_numpy(keys, offsets, cand, shift, rel))
    w = sp.random(n_items, n_items, density=0.05, random_state=1, dtype=np.float32).tocsc()
    for history in (rng.integers(0, n_items, 40), np.array([3, 3, 3]), np.zeros(0, int)):
        for tail in (0, 1, 5):
            got = rk.column_scores(w.indptr, w.indices, w.data, cand, history, tail)
            want = rk.column_scores_numpy(w.indptr, w.indices, w.data, cand, history, tail)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("sparse", [False, True])
def test_rank_features_kernel_equals_the_numpy_reference(rec: Recommender, data,
                                                         sparse: bool) -> None:
    """The compiled features (one kernel into the matrix) against their numpy definition,
    with dense (EASE) and sparse (top-k columns) item-item weights; the ranker's scores of
    both matrices are the same."""
    from recsys.models.rank_features import RankContext, UserView
    from recsys.models.rank_kernels import rank_features_kernel

    if rank_features_kernel() is None:
        pytest.skip("numba not installed")
    ctx = rec.rank_ctx
    if sparse:
        ctx = rec.build_rank_context(rec.indexed(data.interactions))
        ctx = RankContext(*(getattr(ctx, a) for a in ("item_item", "session")), ctx.item_vecs,
                          ctx.genres_bool, ctx.years, ctx.counts, ctx.time_keys,
                          ctx.item_offsets, ctx.t0, ctx.first_ts, ctx.mean_rating,
                          ctx.segment_share, ctx.segment_keys)
        inter = rec.indexed(data.interactions)
        u, i = inter["user_row"].to_numpy(np.int64), inter["item_row"].to_numpy(np.int64)
        from recsys.models.item_item import ItemItem

        n_u, n_i = len(rec.user_index), len(rec.item_ids)
        ctx.item_item = ItemItem.fit(u, i, n_u, n_i, dense_max_items=10, top_k=8)
        order = np.lexsort((inter["timestamp"].to_numpy(), u))
        ctx.session = ItemItem.fit_adjacency(u[order], i[order], n_u, n_i, dense_max_items=10,
                                             top_k=8)
        assert not ctx.item_item.dense and ctx.merged_columns()[0] is not None
    forest = rec.ranker.compiled()
    rng = np.random.default_rng(3)
    views = [rec.state_view(rec.user_state(int(u))) for u in data.users["user_id"][:30]]
    views.append(UserView(np.zeros(0, np.int64), views[0].ts, views[0].demo, -1))
    views.append(UserView(np.array([5, 5, 7, 5], np.int64), views[0].ts - 1e6, views[0].demo,
                          0))
    for view in views:
        n = int(rng.integers(1, 60))
        cand = rng.choice(len(rec.item_ids), n, replace=False)
        scores = rng.normal(size=n).astype(np.float32)
        if n > 3:
            scores[1] = scores[2]  # a tie: ranks stay stable
        got = ctx.features(view, cand, scores)
        want = ctx.features_reference(view, cand, scores)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        if forest is not None:
            np.testing.assert_array_equal(forest.predict(got), forest.predict(want))
    assert ctx.features(views[0], np.zeros(0, np.int64), np.zeros(0, np.float32)).shape == \
        ctx.features_reference(views[0], np.zeros(0, np.int64), np.zeros(0, np.float32)).shape
