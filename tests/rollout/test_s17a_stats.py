"""Statistics properties that earlier tests left unpinned (found by hand mutation, session 17).

Each test calls the public functions of ``serving.stats`` and asserts a property that a
broken formula or a dropped check would make false.
"""

from __future__ import annotations

import itertools
import math

import pytest

from serving.stats import (
    credit,
    msprt_two_proportions,
    sequential_sign_test,
    sign_test,
    srm_check,
    topk_overlap,
)
from serving.stats.interleaving import InterleavedList


# --- interleaving ------------------------------------------------------------------------------
def test_a_repeated_click_on_one_item_credits_its_team_once() -> None:
    il = InterleavedList(items=[10, 20, 30], teams=["a", "b", "a"], source_rank=[0, 0, 1])
    # one click on an a-item (twice: a double click or a replayed event), one on a b-item
    assert credit(il, [10, 10, 20]) == "tie"
    assert credit(il, [10, 30, 20, 20, 20]) == "a"
    assert credit(il, [99]) is None  # a click on an item not shown


def test_the_fixed_horizon_sign_test_reports_the_candidates_share() -> None:
    r = sign_test(30, 10)
    assert (r.wins_b, r.wins_a, r.n) == (30, 10, 40)
    assert r.share_b == 0.75
    assert sequential_sign_test(30, 10).share_b == 0.75


def test_the_sequential_sign_test_rejects_exactly_when_its_p_value_is_at_most_alpha() -> None:
    """p = 1/Λ and the boundary is Λ ≥ 1/α, so reject ⇔ p ≤ α, at any alpha."""
    seen_reject = 0
    for alpha in (0.05, 0.01):
        for wins_b, wins_a in itertools.product(range(0, 120, 3), range(0, 120, 7)):
            r = sequential_sign_test(wins_b, wins_a, alpha)
            if abs(r.p_value - alpha) < 1e-9 * alpha:
                continue  # on the boundary itself
            assert r.reject == (r.p_value <= alpha), (wins_b, wins_a, alpha, r.p_value)
            seen_reject += r.reject
    assert seen_reject > 10


# --- mSPRT -------------------------------------------------------------------------------------
def test_msprt_confidence_sequence_excludes_zero_exactly_when_it_rejects() -> None:
    """The confidence sequence is the inverted test: 0 is outside it iff Λ(0) ≥ 1/α."""
    checked = rejected = 0
    for n in (200, 1000, 5000):
        for rate_a, rate_b in itertools.product((0.05, 0.2, 0.3), (0.04, 0.1, 0.21, 0.25, 0.33)):
            r = msprt_two_proportions(int(rate_a * n), n, int(rate_b * n), n)
            assert r.ci_low < r.difference < r.ci_high
            if abs(r.log_likelihood_ratio - math.log(1 / r.alpha)) < 1e-6:
                continue
            excludes_zero = r.ci_low > 0 or r.ci_high < 0
            assert excludes_zero == r.reject, (n, rate_a, rate_b, r)
            checked += 1
            rejected += r.reject
    assert checked > 30 and 0 < rejected < checked


def test_msprt_refuses_more_successes_than_trials_naming_the_variant() -> None:
    with pytest.raises(ValueError, match="variant b: need 0 <= successes <= n, got 150/100"):
        msprt_two_proportions(10, 100, 150, 100)
    with pytest.raises(ValueError, match="variant a"):
        msprt_two_proportions(101, 100, 10, 100)


# --- SRM ---------------------------------------------------------------------------------------
def test_srm_weights_are_relative_fractions_as_well_as_percentages() -> None:
    """Docstring: weights are relative (50/50, 0.95/0.05 ...)."""
    for weights in ([95, 5], [0.95, 0.05], [19, 1]):
        r = srm_check([9500, 500], weights)
        assert not r.mismatch, weights
        assert r.expected == pytest.approx((9500.0, 500.0))
    for weights in ([0.5, 0.5], [1, 1]):
        r = srm_check([5000, 5000], weights)
        assert not r.mismatch and r.expected == pytest.approx((5000.0, 5000.0))
        assert srm_check([5400, 4600], weights).mismatch


def test_srm_needs_at_least_two_variants() -> None:
    with pytest.raises(ValueError, match="at least two variants"):
        srm_check([100], [1.0])


# --- ranking agreement -------------------------------------------------------------------------
def test_topk_overlap_without_k_divides_by_the_longer_list() -> None:
    """Docstring: k is the longer list's length when not given."""
    assert topk_overlap([1, 2, 3, 4], [1, 2]) == 0.5
    assert topk_overlap([1, 2], [2, 1, 7, 8]) == 0.5
    assert topk_overlap([1, 2, 3], [3, 2, 1]) == 1.0
