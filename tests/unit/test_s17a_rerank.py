"""Re-ranking rules that earlier tests left unpinned (found by hand mutation, session 17).

Each test calls ``recsys.rerank.rerank`` on hand-made candidates and asserts an order that a
broken rule (unknown years, tie order, genre similarity, freshness scale) would change.
"""

from __future__ import annotations

import numpy as np

from recsys.config import RerankConfig
from recsys.rerank import rerank


def test_an_unknown_release_year_is_not_pushed_below_the_oldest_known_one() -> None:
    """Unknown years (0) get no freshness boost: neither a boost nor a penalty."""
    genres = np.eye(3, dtype=bool)
    years = np.array([0, 1950, 1999], dtype=np.float32)  # row 0: year unknown
    scores = np.array([0.9, 0.5, 0.1], dtype=np.float32)
    idx, sc = rerank(np.array([0, 1, 2]), scores, 3, RerankConfig(freshness=1.0), genres, years)
    assert idx[0] == 0  # the best item, its year unknown, keeps the lead
    assert sc[0] == np.float32(0.9)  # and its score: no boost, no penalty
    assert np.all(np.diff(sc) <= 0)


def test_equal_scores_keep_the_incoming_candidate_order() -> None:
    """The sort is stable: ties keep the order retrieval/ranking gave them, on any size."""
    n = 300
    rows = np.arange(n)[::-1].copy()  # incoming order: 299, 298, ..., 0
    scores = np.repeat(np.array([3.0, 2.0, 1.0], dtype=np.float32), n // 3)
    rng = np.random.default_rng(0)
    perm = rng.permutation(n)
    rows, scores = rows[perm], scores[perm]
    genres = np.ones((n, 1), dtype=bool)
    years = np.zeros(n, dtype=np.float32)
    idx, sc = rerank(rows, scores, n, RerankConfig(), genres, years)
    for level in (3.0, 2.0, 1.0):
        expected = [int(r) for r, s in zip(rows, scores) if s == level]
        assert [int(r) for r, s in zip(idx, sc) if s == level] == expected


def test_genre_similarity_is_cosine_so_a_multi_genre_item_is_less_alike() -> None:
    """MMR compares genre vectors by cosine: {Drama} and {Drama, Comedy, Horror} are less
    alike (0.58) than {Drama} and {Drama} (1.0), so diversity prefers the broader item."""
    genres = np.zeros((3, 3), dtype=bool)
    genres[0, 0] = True            # Drama, the best item
    genres[1, 0] = True            # Drama again, a little better scored than row 2
    genres[2, [0, 1, 2]] = True    # Drama + Comedy + Horror
    years = np.zeros(3, dtype=np.float32)
    scores = np.array([1.0, 0.8, 0.75], dtype=np.float32)
    idx, _ = rerank(np.array([0, 1, 2]), scores, 2, RerankConfig(diversity=0.5), genres, years)
    assert idx.tolist() == [0, 2]


def test_the_freshness_boost_follows_the_scale_of_the_scores() -> None:
    """The boost is freshness × recency × the scores' spread: multiplying every score by
    1000 (another ranker's scale) must not change what freshness does to the order."""
    genres = np.eye(6, dtype=bool)
    years = np.array([1960, 1950, 1999, 1970, 1980, 1990], dtype=np.float32)
    cand = np.arange(6)
    scores = np.array([0.9, 0.85, 0.84, 0.5, 0.2, 0.1], dtype=np.float32)
    cfg = RerankConfig(freshness=1.0)
    small, _ = rerank(cand, scores, 6, cfg, genres, years)
    large, _ = rerank(cand, scores * 1000, 6, cfg, genres, years)
    tiny, _ = rerank(cand, scores / 1000, 6, cfg, genres, years)
    assert small.tolist() == large.tolist() == tiny.tolist()
    assert small.tolist() != cand.tolist()  # freshness did move something
