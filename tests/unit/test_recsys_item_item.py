"""Item–item models of the ranker: EASE, sparse cosine neighbours, session co-occurrence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.models.item_item import ItemItem, _cosine_top_k, _local_gram, _user_item

RNG = np.random.default_rng(0)
USERS = np.sort(RNG.integers(0, 80, 1_500))
ITEMS = RNG.integers(0, 30, 1_500)


def test_ease_is_the_closed_form_ridge_regression() -> None:
    model = ItemItem.fit(USERS, ITEMS, 80, 30, lam=10.0)
    x = _user_item(USERS, ITEMS, 80, 30).toarray().astype(np.float64)
    b = model.weights
    assert np.allclose(np.diag(b), 0.0)
    # B minimises ||X - XB||² + λ||B||² with diag(B) = 0: the gradient vanishes off-diagonal
    grad = -(x.T @ (x - x @ b)) + 10.0 * b
    off = ~np.eye(30, dtype=bool)
    assert np.abs(grad[off]).max() < 1e-2


def test_time_local_gram_weighs_pairs_by_their_distance_in_each_users_order() -> None:
    # user 0 rated 0, 1, 2 in that order; user 1 rated 2 then 3
    gram = _local_gram(np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 2, 3]), 4, scale=2.0)
    e1, e2 = np.exp(-1 / 2.0), np.exp(-2 / 2.0)
    expected = np.array([[1, e1, e2, 0],
                         [e1, 1, e1, 0],
                         [e2, e1, 2, e1],  # item 2: rated by both users
                         [0, 0, e1, 1]])
    np.testing.assert_allclose(gram, expected)
    # added a few pairs at a time: the same matrix
    np.testing.assert_allclose(
        _local_gram(np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 2, 3]), 4, 2.0, flush_pairs=2),
        expected)


def test_time_local_ease_links_items_rated_in_the_same_sitting() -> None:
    # 60 users each rate 0, then 1 at once, then (many events later) 2; plain co-occurrence
    # cannot tell 1 from 2, the time-local Gram can
    fillers = np.arange(3, 23)
    seqs = [np.r_[0, 1, RNG.permutation(fillers)[:15], 2] for _ in range(60)]
    users = np.repeat(np.arange(60), [s.size for s in seqs])
    items = np.concatenate(seqs)
    plain = ItemItem.fit(users, items, 60, 23, lam=5.0).weights
    local = ItemItem.fit(users, items, 60, 23, lam=5.0, time_share=0.1, time_scale=2.0).weights
    assert abs(plain[0, 1] - plain[0, 2]) < 1e-4
    assert local[0, 1] > local[0, 2] + 0.05
    # still EASE weights: no item explains itself
    assert np.allclose(np.diag(local), 0.0)


def test_sparse_cosine_neighbours_match_the_dense_computation() -> None:
    x = _user_item(USERS, ITEMS, 80, 30)
    dense = (x.T @ x).toarray()
    norms = np.sqrt(np.diag(dense))
    ref = dense / norms[:, None] / norms[None, :]
    np.fill_diagonal(ref, 0.0)
    got = _cosine_top_k(x, top_k=30, block=7).toarray()
    np.testing.assert_allclose(got, ref, atol=1e-6)
    top3 = _cosine_top_k(x, top_k=3, block=7).toarray()
    assert ((top3 > 0).sum(axis=0) <= 3).all()
    for j in range(30):  # the kept neighbours are the most similar ones
        kept = np.flatnonzero(top3[:, j])
        assert ref[kept, j].min() >= np.sort(ref[:, j])[-3] - 1e-6


def test_session_cooccurrence_weights_near_events_more() -> None:
    # one user watched 0, 1, 2, 3 in that order
    model = ItemItem.fit_adjacency(np.zeros(4, int), np.arange(4), 1, 4, window=3)
    w = model.weights
    assert w[0, 1] > w[0, 2] > w[0, 3] > 0
    assert np.allclose(w, w.T) and np.allclose(np.diag(w), 0)
    sparse = ItemItem.fit_adjacency(np.zeros(4, int), np.arange(4), 1, 4, window=3,
                                    dense_max_items=2, top_k=10)
    np.testing.assert_allclose(sparse.weights.toarray(), w, atol=1e-7)


def test_scores_sum_history_weights_dense_and_sparse(tmp_path: Path) -> None:
    dense = ItemItem.fit(USERS, ITEMS, 80, 30, lam=5.0)
    sparse = ItemItem(sp.csr_matrix(dense.weights))
    hist, cand = np.array([1, 4, 7, 4]), np.array([0, 2, 9, 11, 2])  # repeats allowed
    expected = dense.weights[hist][:, cand].sum(axis=0)
    np.testing.assert_allclose(dense.score(hist, cand), expected, rtol=1e-5)
    np.testing.assert_allclose(sparse.score(hist, cand), expected, rtol=1e-5)
    assert dense.score(np.zeros(0, int), cand).tolist() == [0.0] * 5
    for model, prefix in ((dense, "d"), (sparse, "s")):
        model.save(tmp_path, prefix)
        loaded = ItemItem.load(tmp_path, 30, prefix)
        np.testing.assert_allclose(loaded.score(hist, cand), expected, rtol=1e-5)
    assert not list(tmp_path.glob("*.pkl"))
