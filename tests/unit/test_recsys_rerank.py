"""Re-ranking: exclusion, deduplication, diversity, freshness and business rules."""

from __future__ import annotations

import numpy as np

from recsys.config import RerankConfig
from recsys.rerank import rerank

# 6 items: rows 0-3 are Drama (genre 0), row 4 Comedy (1), row 5 Horror (2)
GENRES = np.zeros((6, 3), dtype=bool)
GENRES[[0, 1, 2, 3], 0] = True
GENRES[4, 1] = True
GENRES[5, 2] = True
YEARS = np.array([1950, 1960, 1970, 1980, 1990, 1999], dtype=np.float32)
CAND = np.array([0, 1, 2, 3, 4, 5])
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], dtype=np.float32)


def test_without_options_it_keeps_the_score_order_and_cuts_at_k() -> None:
    idx, sc = rerank(CAND, SCORES, 3, RerankConfig(), GENRES, YEARS)
    assert idx.tolist() == [0, 1, 2]
    assert np.all(np.diff(sc) <= 0)


def test_blocked_items_and_duplicates_are_removed() -> None:
    cand = np.array([2, 0, 2, 1, 0])
    scores = np.array([0.5, 0.9, 0.1, 0.8, 0.2], dtype=np.float32)
    idx, _ = rerank(cand, scores, 5, RerankConfig(), GENRES, YEARS, blocked=np.array([1]))
    assert idx.tolist() == [0, 2]  # 1 blocked; 0 and 2 once each, at their first score
    assert len(set(idx.tolist())) == len(idx)


def test_mmr_diversity_brings_other_genres_into_the_top() -> None:
    plain, _ = rerank(CAND, SCORES, 3, RerankConfig(diversity=0.0), GENRES, YEARS)
    diverse, _ = rerank(CAND, SCORES, 3, RerankConfig(diversity=0.7), GENRES, YEARS)
    n_genres = lambda idx: int(GENRES[idx].any(axis=0).sum())  # noqa: E731
    assert n_genres(plain) == 1
    assert n_genres(diverse) == 3
    assert diverse[0] == 0  # the best item still leads


def test_freshness_moves_recent_releases_up() -> None:
    flat = np.full(6, 0.5, dtype=np.float32)
    idx, _ = rerank(CAND, flat, 2, RerankConfig(freshness=1.0), GENRES, YEARS)
    assert idx.tolist() == [5, 4]  # 1999 then 1990


def test_business_rules_filter_and_rescore() -> None:
    def no_horror(cand: np.ndarray, scores: np.ndarray):
        keep = ~GENRES[cand, 2]
        return cand[keep], scores[keep]

    def promote_comedy(cand: np.ndarray, scores: np.ndarray):
        return cand, scores + np.where(GENRES[cand, 1], 1.0, 0.0).astype(np.float32)

    idx, _ = rerank(CAND, SCORES, 6, RerankConfig(), GENRES, YEARS,
                    rules=[no_horror, promote_comedy])
    assert 5 not in idx
    assert idx[0] == 4


def test_fewer_candidates_than_k_returns_them_all() -> None:
    idx, sc = rerank(CAND[:2], SCORES[:2], 10, RerankConfig(diversity=0.5), GENRES, YEARS)
    assert idx.tolist() == [0, 1] and sc.size == 2


def test_diversity_orders_the_list_when_there_are_no_more_candidates_than_k() -> None:
    """With k or fewer candidates the MMR step was skipped and the list came back in plain
    score order: asking for one more item (k 6 instead of 5) undid the genre diversity at the
    top of the list."""
    genres = np.zeros((6, 3), bool)
    genres[[0, 1, 2, 3], 0] = True
    genres[4, 1] = True
    genres[5, 2] = True
    scores = np.array([.9, .8, .7, .6, .5, .4], np.float32)
    years = np.zeros(6, np.float32)
    cfg = RerankConfig(diversity=0.7)
    five, _ = rerank(np.arange(6), scores, 5, cfg, genres, years)
    six, six_scores = rerank(np.arange(6), scores, 6, cfg, genres, years)
    assert list(five) == [0, 4, 5, 1, 2]
    assert list(six[:5]) == list(five) and sorted(six) == list(range(6))
    assert all(np.diff(six_scores) <= 0)  # the scores still follow the list
