"""Team-draft interleaving and the sign tests that decide it.

Radlinski, Kurup & Joachims, "How does clickthrough data reflect retrieval quality?" (2008).
Two rankers take turns, like captains picking teams: the team with fewer picks (a coin
flip on a tie) adds its highest-ranked item not yet in the list. A click is credited to the
team that contributed the item; an impression is won by the team with more clicks. Because
every user sees both rankers at once, the comparison is paired and needs far fewer users
than an A/B split.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

__all__ = ["InterleavedList", "team_draft", "credit", "SignTestResult", "sign_test",
           "sequential_sign_test"]

TEAM_A = "a"
TEAM_B = "b"


@dataclass(frozen=True)
class InterleavedList:
    items: list[int]
    teams: list[str]          # "a" or "b" per position
    source_rank: list[int]    # position of the item in its team's list

    def team_of(self) -> dict[int, str]:
        return dict(zip(self.items, self.teams))


def team_draft(a: Sequence[int], b: Sequence[int], k: int,
               rng: random.Random | None = None) -> InterleavedList:
    """Interleave ranked lists ``a`` and ``b`` into at most ``k`` distinct items."""
    rng = rng or random.Random()
    items: list[int] = []
    teams: list[str] = []
    ranks: list[int] = []
    chosen: set[int] = set()
    ia = ib = 0
    n_a = n_b = 0
    while len(items) < k:
        while ia < len(a) and a[ia] in chosen:
            ia += 1
        while ib < len(b) and b[ib] in chosen:
            ib += 1
        a_left, b_left = ia < len(a), ib < len(b)
        if not a_left and not b_left:
            break
        pick_a = n_a < n_b or (n_a == n_b and rng.random() < 0.5)
        if pick_a and not a_left:
            pick_a = False
        elif not pick_a and not b_left:
            pick_a = True
        if pick_a:
            item, rank, team = a[ia], ia, TEAM_A
            n_a += 1
        else:
            item, rank, team = b[ib], ib, TEAM_B
            n_b += 1
        items.append(item)
        teams.append(team)
        ranks.append(rank)
        chosen.add(item)
    return InterleavedList(items, teams, ranks)


def credit(interleaved: InterleavedList, clicked: Iterable[int]) -> str | None:
    """The team that won this impression ("a", "b"), "tie", or None without clicks."""
    team_of = interleaved.team_of()
    counts = {TEAM_A: 0, TEAM_B: 0}
    any_click = False
    for item in set(clicked):
        team = team_of.get(item)
        if team is not None:
            counts[team] += 1
            any_click = True
    if not any_click:
        return None
    if counts[TEAM_A] == counts[TEAM_B]:
        return "tie"
    return TEAM_A if counts[TEAM_A] > counts[TEAM_B] else TEAM_B


@dataclass(frozen=True)
class SignTestResult:
    wins_b: int
    wins_a: int
    n: int
    share_b: float
    p_value: float        # two-sided; always valid for the sequential test
    reject: bool
    alpha: float
    sequential: bool

    @property
    def winner(self) -> str | None:
        if not self.reject:
            return None
        return "b" if self.wins_b > self.wins_a else "a"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def sign_test(wins_b: int, wins_a: int, alpha: float = 0.05) -> SignTestResult:
    """Classical two-sided binomial sign test of H₀: P(b wins) = 1/2 (ties dropped).

    Valid for one look at a pre-set sample size; looking repeatedly inflates its error.
    """
    n = wins_a + wins_b
    if n == 0:
        return SignTestResult(wins_b, wins_a, 0, 0.5, 1.0, False, alpha, False)
    from scipy import stats  # imported when used: the router never needs scipy

    p = float(stats.binomtest(wins_b, n, 0.5, alternative="two-sided").pvalue)
    return SignTestResult(wins_b, wins_a, n, wins_b / n, p, p < alpha, alpha, False)


def sequential_sign_test(wins_b: int, wins_a: int, alpha: float = 0.05,
                         prior: float = 1.0) -> SignTestResult:
    """Anytime-valid sign test: a beta-binomial mixture likelihood ratio.

    Λ_n = B(w_b + c, w_a + c) / B(c, c) / 2^-n with a Beta(c, c) prior on P(b wins) is a
    non-negative martingale with mean 1 under H₀, so P(ever Λ ≥ 1/α) ≤ α (Ville): the
    controller may check it at every tick.
    """
    n = wins_a + wins_b
    if n == 0:
        return SignTestResult(wins_b, wins_a, 0, 0.5, 1.0, False, alpha, True)
    log_lr = (math.lgamma(wins_b + prior) + math.lgamma(wins_a + prior) - math.lgamma(n + 2 * prior)
              - (2 * math.lgamma(prior) - math.lgamma(2 * prior)) + n * math.log(2.0))
    p = min(1.0, math.exp(-log_lr))
    return SignTestResult(wins_b, wins_a, n, wins_b / n, p, log_lr >= math.log(1 / alpha), alpha,
                          True)
