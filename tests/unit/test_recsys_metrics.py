"""Offline metrics against values computed by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recsys.metrics import evaluate, per_user_metrics, segment_of


def _recs(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])


RECS = _recs([(1, 10, 1), (1, 11, 2), (1, 12, 3),
              (2, 13, 1), (2, 14, 2), (2, 15, 3)])
TRUTH = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [11, 13, 13, 99]})


def test_per_user_metrics_match_hand_computed_values() -> None:
    m = per_user_metrics(RECS, TRUTH, k=3)
    # user 1: one hit (item 11) at rank 2 out of 2 relevant items
    u1 = m.loc[1]
    assert u1["precision"] == pytest.approx(1 / 3)
    assert u1["recall"] == pytest.approx(1 / 2)
    dcg = 1 / math.log2(3)
    idcg = 1 + 1 / math.log2(3)
    assert u1["ndcg"] == pytest.approx(dcg / idcg)  # 0.3869
    assert u1["map"] == pytest.approx((1 / 2) / 2)  # precision at the hit, over min(2, 3)
    assert u1["mrr"] == pytest.approx(1 / 2)
    assert u1["hit"] == 1.0
    # user 2: the only relevant item at rank 1
    u2 = m.loc[2]
    assert (u2["precision"], u2["recall"], u2["ndcg"], u2["map"], u2["mrr"]) == \
        pytest.approx((1 / 3, 1.0, 1.0, 1.0, 1.0))
    # user 3 has a held-out item but no recommendations: scored, all zero
    assert m.loc[3].tolist() == [0.0] * 6


def test_cutoff_k_ignores_lower_ranks() -> None:
    m = per_user_metrics(RECS, TRUTH, k=1)
    assert m.loc[1, "ndcg"] == 0.0 and m.loc[2, "ndcg"] == 1.0
    assert m.loc[1, "recall"] == 0.0 and m.loc[2, "precision"] == 1.0


def test_evaluate_averages_over_users_and_splits_segments() -> None:
    train = pd.DataFrame({"user_id": [1] * 3 + [2] * 120 + [3] * 10,
                          "item_id": list(range(3)) + list(range(120)) + list(range(10))})
    out = evaluate(RECS, TRUTH, train, k_values=(3,), n_items=200)
    ndcg1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert out["ndcg_at_3"] == pytest.approx((ndcg1 + 1.0 + 0.0) / 3)
    assert out["precision_at_3"] == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)
    assert out["mrr"] == pytest.approx((0.5 + 1 + 0) / 3)
    # user 1 has 3 training events (cold), user 2 has 120 (heavy), user 3 has 10 (warm)
    assert out["ndcg_at_3.cold"] == pytest.approx(ndcg1)
    assert out["ndcg_at_3.heavy"] == pytest.approx(1.0)
    assert out["ndcg_at_3.warm"] == 0.0
    assert (out["users.cold"], out["users.warm"], out["users.heavy"]) == (1, 1, 1)
    assert out["coverage_at_3"] == pytest.approx(6 / 200)
    assert out["users_evaluated"] == 3


def test_segment_of_uses_training_event_counts() -> None:
    counts = pd.Series({1: 4, 2: 5, 3: 100})
    seg = segment_of(counts, [1, 2, 3, 4])
    assert seg.tolist() == ["cold", "warm", "heavy", "cold"]  # unknown user 4: 0 events
