"""Splits are leakage-safe partitions of the interactions."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.data.split import (
    Split,
    per_user_random_split,
    per_user_temporal_split,
    temporal_split,
)
from recsys.data.synth import generate

KEY = ["user_id", "item_id", "timestamp", "event"]


@pytest.fixture(scope="module")
def interactions() -> pd.DataFrame:
    inter = generate(300, 120, 9_000, seed=11).interactions
    # a few users with only one or two events, who must stay in train
    extra = pd.DataFrame({"user_id": [1001, 1002, 1002], "item_id": [1, 2, 3],
                          "rating": pd.array([4, 0, 3], dtype="float32"),
                          "timestamp": [1_700_000_000, 1_700_000_100, 1_700_000_200],
                          "event": pd.array(["rating", "click", "rating"], dtype="string")})
    return pd.concat([inter, extra], ignore_index=True)


def _assert_partition(split: Split, interactions: pd.DataFrame) -> None:
    parts = pd.concat([split.train, split.val, split.test], ignore_index=True)
    assert len(parts) == len(interactions)
    left = parts.sort_values(KEY, ignore_index=True)
    right = interactions.sort_values(KEY, ignore_index=True)
    pd.testing.assert_frame_equal(left, right)
    assert list(split.train.dtypes) == list(interactions.dtypes)


def test_temporal_split_has_a_global_cutoff(interactions: pd.DataFrame) -> None:
    split = temporal_split(interactions, val_frac=0.1, test_frac=0.2)
    _assert_partition(split, interactions)
    assert split.train["timestamp"].max() < split.val["timestamp"].min()
    assert split.val["timestamp"].max() < split.test["timestamp"].min()
    n = len(interactions)
    assert abs(len(split.test) - 0.2 * n) <= 0.01 * n
    assert abs(len(split.val) - 0.1 * n) <= 0.01 * n


def test_temporal_split_puts_ties_at_the_cutoff_on_one_side() -> None:
    inter = pd.DataFrame({"user_id": [1] * 10, "item_id": range(1, 11),
                          "rating": [1.0] * 10, "timestamp": [1, 2, 3, 4, 5, 5, 5, 5, 9, 10],
                          "event": ["rating"] * 10})
    split = temporal_split(inter, val_frac=0.0, test_frac=0.5)
    assert split.train["timestamp"].max() < split.test["timestamp"].min()
    assert split.test["timestamp"].tolist() == [5, 5, 5, 5, 9, 10]
    assert len(split.val) == 0


def test_per_user_temporal_split_holds_out_each_users_latest_events(
        interactions: pd.DataFrame) -> None:
    split = per_user_temporal_split(interactions, test_frac=0.25, val_frac=0.1, min_events=3)
    _assert_partition(split, interactions)
    last_train = split.train.groupby("user_id")["timestamp"].max()
    first_val = split.val.groupby("user_id")["timestamp"].min()
    first_test = split.test.groupby("user_id")["timestamp"].min()
    last_val = split.val.groupby("user_id")["timestamp"].max()
    assert (first_test >= last_train.reindex(first_test.index)).all()
    assert (first_val >= last_train.reindex(first_val.index)).all()
    both = first_test.index.intersection(last_val.index)
    assert (first_test[both] >= last_val[both]).all()
    # users with too few events stay in train
    assert {1001, 1002} <= set(split.train["user_id"])
    assert {1001, 1002}.isdisjoint(set(split.test["user_id"]) | set(split.val["user_id"]))
    counts = interactions.groupby("user_id").size()
    eligible = counts[counts >= 3].index
    assert set(split.test["user_id"]) == set(eligible)
    assert set(split.train["user_id"]) == set(counts.index)
    share = split.test.groupby("user_id").size() / counts[eligible]
    assert share.mean() == pytest.approx(0.25, abs=0.06)


def test_per_user_random_split_is_seeded_and_stratified(interactions: pd.DataFrame) -> None:
    split = per_user_random_split(interactions, test_frac=0.25, seed=7)
    _assert_partition(split, interactions)
    again = per_user_random_split(interactions.sample(frac=1.0, random_state=1), test_frac=0.25,
                                  seed=7)
    pd.testing.assert_frame_equal(split.test.sort_values(KEY, ignore_index=True),
                                  again.test.sort_values(KEY, ignore_index=True))
    other = per_user_random_split(interactions, test_frac=0.25, seed=8)
    assert not split.test.sort_values(KEY, ignore_index=True).equals(
        other.test.sort_values(KEY, ignore_index=True))
    counts = interactions.groupby("user_id").size()
    eligible = counts[counts >= 3]
    test_counts = split.test.groupby("user_id").size().reindex(eligible.index, fill_value=0)
    expected = (eligible * 0.25).round().clip(lower=1)
    assert (test_counts == expected).all()  # exactly round(25 %) of every user's events
    assert {1001, 1002}.isdisjoint(split.test["user_id"])
    # random, not temporal: some test events precede the same user's training events
    first_test = split.test.groupby("user_id")["timestamp"].min()
    last_train = split.train.groupby("user_id")["timestamp"].max().reindex(first_test.index)
    assert (first_test < last_train).any()


def test_bad_fractions_are_rejected(interactions: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="fractions"):
        temporal_split(interactions, val_frac=0.6, test_frac=0.5)
    with pytest.raises(ValueError, match="fractions"):
        per_user_random_split(interactions, test_frac=1.2)
