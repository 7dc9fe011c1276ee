"""Synthetic data: deterministic by seed, valid, and carrying the structure it claims to plant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data import AGE_BUCKETS, INTERACTIONS, Dataset
from recsys.data.fingerprint import canonical_order
from recsys.data.synth import Drift, PlantedStructure, generate, generate_with_truth
from recsys.data.validate import check_dataset

N_USERS, N_ITEMS, N_EVENTS = 3_000, 800, 90_000


@pytest.fixture(scope="module")
def synth() -> tuple[Dataset, PlantedStructure]:
    return generate_with_truth(N_USERS, N_ITEMS, N_EVENTS, seed=5, n_groups=6)


def _group_hit_rate(ds: Dataset, truth: PlantedStructure) -> tuple[np.ndarray, np.ndarray]:
    """Per event: whether the item has one of the user's group genres, and the chance of that
    under the global popularity distribution."""
    users = ds.interactions["user_id"].to_numpy() - 1
    items = ds.interactions["item_id"].to_numpy() - 1
    groups = truth.user_group[users]
    hit = np.zeros(len(users), dtype=bool)
    chance = np.zeros(len(users))
    for g in range(len(truth.group_genres)):
        in_group = truth.group_item_mask(g)
        sel = groups == g
        hit[sel] = in_group[items[sel]]
        chance[sel] = truth.item_popularity[in_group].sum()
    return hit, chance


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = generate(500, 200, 5_000, seed=1)
    b = generate(500, 200, 5_000, seed=1)
    c = generate(500, 200, 5_000, seed=2)
    for name in ("interactions", "users", "items"):
        pd.testing.assert_frame_equal(a.tables()[name], b.tables()[name])
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_chunked_generation_is_valid_and_exact(synth: tuple[Dataset, PlantedStructure]) -> None:
    ds, _ = synth
    assert ds.counts() == {"interactions": N_EVENTS, "users": N_USERS, "items": N_ITEMS}
    assert check_dataset(ds) == []
    small_chunks = generate(400, 100, 6_000, seed=9, chunk_events=500)
    assert len(small_chunks.interactions) == 6_000
    assert check_dataset(small_chunks) == []


def test_dense_data_has_no_duplicates_and_comes_in_canonical_order() -> None:
    # one week, few items: same-second repeats are likely and must be nudged apart
    dense = generate(50, 5, 60_000, seed=2, days=7)
    assert check_dataset(dense) == []
    assert canonical_order(dense.interactions, INTERACTIONS.sort_keys) is None


def test_users_concentrate_on_their_groups_genres(synth: tuple[Dataset, PlantedStructure]
                                                  ) -> None:
    ds, truth = synth
    hit, chance = _group_hit_rate(ds, truth)
    assert hit.mean() > 0.75
    assert hit.mean() > 2.0 * chance.mean()
    # and per user, not just on average: most active users are far above chance
    per_user = pd.DataFrame({"u": ds.interactions["user_id"], "hit": hit, "chance": chance})
    stats = per_user.groupby("u").agg(n=("hit", "size"), hit=("hit", "mean"),
                                      chance=("chance", "first"))
    active = stats[stats["n"] >= 20]
    assert (active["hit"] > active["chance"] + 0.2).mean() > 0.9


def test_ratings_are_higher_for_the_groups_genres(synth: tuple[Dataset, PlantedStructure]
                                                 ) -> None:
    ds, truth = synth
    hit, _ = _group_hit_rate(ds, truth)
    rated = (ds.interactions["event"] == "rating").to_numpy()
    ratings = ds.interactions["rating"].to_numpy()
    assert ratings[rated & hit].mean() > ratings[rated & ~hit].mean() + 0.5
    assert (ratings[~rated] == 0).all()


def test_popularity_is_long_tailed(synth: tuple[Dataset, PlantedStructure]) -> None:
    counts = synth[0].interactions["item_id"].value_counts()
    top = counts.iloc[: N_ITEMS // 100].sum() / N_EVENTS
    assert top > 0.10  # the top 1 % of items gets over 10 % of the events
    assert counts.median() < counts.mean()


def test_timestamps_have_daily_and_weekly_seasonality(synth: tuple[Dataset, PlantedStructure]
                                                      ) -> None:
    when = pd.to_datetime(synth[0].interactions["timestamp"], unit="s", utc=True)
    hours = when.dt.hour.value_counts().reindex(range(24), fill_value=0)
    days = when.dt.dayofweek.value_counts().reindex(range(7), fill_value=0)
    assert hours.loc[19:22].sum() > 3 * hours.loc[3:6].sum()  # evening peak, night trough
    assert days.loc[[4, 5, 6]].mean() > 1.2 * days.loc[[0, 1, 2]].mean()  # Fri-Sun busier


def test_demographics_correlate_with_groups(synth: tuple[Dataset, PlantedStructure]) -> None:
    ds, truth = synth
    table = pd.crosstab(truth.user_group, ds.users["age_bucket"].to_numpy())
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.to_numpy().sum()
    chi2 = ((table.to_numpy() - expected) ** 2 / expected).sum()
    cramers_v = np.sqrt(chi2 / (table.to_numpy().sum() * (min(table.shape) - 1)))
    assert cramers_v > 0.3
    assert set(ds.users["age_bucket"]) <= set(AGE_BUCKETS)


def test_drift_shifts_demographics_and_genres() -> None:
    base, truth = generate_with_truth(2_000, 400, 40_000, seed=4)
    young = {"<18", "18-24"}
    shifted = generate(2_000, 400, 40_000, seed=4, drift=Drift(demographic_shift=0.6))
    assert shifted.users["age_bucket"].isin(young).mean() > \
        base.users["age_bucket"].isin(young).mean() + 0.15
    assert (shifted.users["occupation"] == "student").mean() > \
        (base.users["occupation"] == "student").mean() + 0.3
    moved, moved_truth = generate_with_truth(2_000, 400, 40_000, seed=4,
                                             drift=Drift(genre_shift=0.7))
    assert _group_hit_rate(moved, moved_truth)[0].mean() < \
        _group_hit_rate(base, truth)[0].mean() - 0.15
    with pytest.raises(ValueError, match="genre_shift"):
        Drift(genre_shift=1.5)
