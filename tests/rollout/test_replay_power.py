"""The click model and the offline power computation of serving/replay/power.py.

The exact per-visit probabilities are checked against Monte Carlo with the router's own team
draft and credit; the vectorised sequential tests against the controller's scalar ones.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from serving.replay.power import (
    click_probability,
    interleave_win_probabilities,
    msprt_log_lr,
    sign_test_log_lr,
    clustered_rate_variance_vec,
    users_to_decision,
    users_to_decision_varying,
)
from serving.replay.users import ClickModel, ReplayUser, sample_stream
from serving.stats import clustered_rate_variance, credit, msprt_two_proportions, sequential_sign_test, team_draft

MODEL = ClickModel(position_bias=0.5, relevant_click=0.4, noise_click=0.03)
BASE = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
CAND = [3, 11, 12, 1, 13, 14, 2, 15, 16, 17]
FUTURE = frozenset({3, 11, 2, 15, 9})


def test_click_model_probabilities_and_draws_agree() -> None:
    p = MODEL.probabilities(BASE, FUTURE)
    assert p[1] == pytest.approx(0.4 / 2 ** 0.5)    # relevant, second position
    assert p[0] == pytest.approx(0.03)              # irrelevant, first position
    rng = random.Random(1)
    n = 20_000
    clicked = sum(bool(MODEL.clicks(BASE, FUTURE, rng)) for _ in range(n))
    expect = click_probability(BASE, FUTURE, MODEL)
    assert abs(clicked / n - expect) < 4 * (expect * (1 - expect) / n) ** 0.5
    # Without noise, nothing irrelevant is ever clicked; with relevant_click < 1 not every
    # relevant one.
    quiet = ClickModel(relevant_click=0.5)
    seen = [quiet.clicks(BASE, FUTURE, rng) for _ in range(2000)]
    assert all(set(c) <= FUTURE for c in seen)
    assert 800 < sum(2 in c for c in seen) < 1200
    with pytest.raises(ValueError):
        ClickModel(relevant_click=1.5)


def test_stream_draws_with_replacement() -> None:
    users = [ReplayUser(u, frozenset({u})) for u in range(1, 6)]
    stream = sample_stream(users, 1000, seed=3)
    assert len(stream) == 1000 and {u.user_id for u in stream} == {1, 2, 3, 4, 5}
    assert stream == sample_stream(users, 1000, seed=3)


def test_exact_interleaving_win_probabilities_match_the_router_draft() -> None:
    pc, pb = interleave_win_probabilities(BASE, CAND, FUTURE, MODEL)
    rng = random.Random(0)
    n = 40_000
    wins = {"a": 0, "b": 0}
    for _ in range(n):
        il = team_draft(BASE, CAND, 10, rng)
        won = credit(il, MODEL.clicks(il.items, FUTURE, rng))
        if won in wins:
            wins[won] += 1
    for exact, seen in ((pc, wins["b"] / n), (pb, wins["a"] / n)):
        assert abs(seen - exact) < 4 * (exact * (1 - exact) / n) ** 0.5
    assert pc > pb  # the candidate holds more of this user's future items, higher up
    # Identical lists: each side wins equally often.
    same_c, same_b = interleave_win_probabilities(BASE, BASE, FUTURE, MODEL)
    assert same_c == pytest.approx(same_b)


def test_vectorised_sequential_tests_equal_the_controller_tests() -> None:
    for s_a, n_a, s_b, n_b in ((30, 400, 45, 390), (5, 20, 1, 25), (300, 4000, 300, 4100)):
        got = msprt_log_lr(np.array([s_a]), np.array([n_a]), np.array([s_b]), np.array([n_b]))
        assert got[0] == pytest.approx(
            msprt_two_proportions(s_a, n_a, s_b, n_b).log_likelihood_ratio)
    for wb, wa in ((60, 40), (130, 70), (5, 0)):
        got = sign_test_log_lr(np.array([float(wb)]), np.array([float(wa)]))[0]
        ref = sequential_sign_test(wb, wa)
        assert (got >= np.log(20)) == ref.reject
        assert min(1.0, float(np.exp(-got))) == pytest.approx(ref.p_value)


def test_users_to_decision_finds_a_real_difference_and_rarely_a_false_one() -> None:
    users = 50
    better = np.column_stack([np.full(users, 0.10), np.full(users, 0.20)])
    res = users_to_decision("ab", better, streams=20, cap=20_000, alpha=0.05, minimum=50)
    s = res.summary()
    assert s["correct"] == 1.0 and s["undecided"] == 0.0
    wins = np.column_stack([np.full(users, 0.30), np.full(users, 0.15)])
    s2 = users_to_decision("interleave", wins, streams=20, cap=20_000, alpha=0.05,
                           minimum=20).summary()
    assert s2["correct"] == 1.0 and s2["median"] < s["median"]
    # No difference: decisions are rare (alpha 0.05 bounds the share ever deciding).
    null = np.column_stack([np.full(users, 0.2), np.full(users, 0.2)])
    s3 = users_to_decision("interleave", null, streams=100, cap=5_000, alpha=0.05,
                           minimum=20, seed=1).summary(correct=None)
    assert s3["wrong"] <= 0.12 and s3["undecided"] >= 0.88


def test_vectorised_clustered_variance_equals_the_controller_one() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        k = int(rng.integers(1, 40))
        n = rng.integers(1, 30, size=k)
        s = rng.binomial(n, rng.random(k))
        sums = [float(x) for x in (s.sum(), n.sum(), (n * n).sum(), (s * s).sum(),
                                   (n * s).sum())]
        want = clustered_rate_variance(int(sums[0]), int(sums[1]), sums[2], sums[3], sums[4], k)
        got = clustered_rate_variance_vec(*(np.array([x]) for x in sums), np.array([k]))[0]
        assert got == pytest.approx(want, rel=1e-12)


def test_varying_visits_finds_a_real_difference_and_rarely_a_false_one() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.5, size=300)
    visits = np.maximum(1, rng.geometric(0.2, size=300))
    sampler = lambda _rng, u: visits[u]  # noqa: E731
    ab_real = np.column_stack([base, base + 0.05])
    il_real = np.column_stack([np.full(300, 0.2), np.full(300, 0.1)])
    kw = {"streams": 20, "cap": 20_000, "alpha": 0.05, "seed": 1}
    ab = users_to_decision_varying("ab", ab_real, sampler, minimum=200, **kw)
    il = users_to_decision_varying("interleave", il_real, sampler, minimum=100, **kw)
    assert ab.summary()["correct"] >= 0.9 and il.summary()["correct"] >= 0.9
    ab_null = users_to_decision_varying("ab", np.column_stack([base, base]), sampler,
                                        minimum=200, **kw)
    il_null = users_to_decision_varying("interleave", np.full((300, 2), 0.15), sampler,
                                        minimum=100, **kw)
    assert ab_null.summary(None)["wrong"] <= 0.15 and il_null.summary(None)["wrong"] <= 0.15
