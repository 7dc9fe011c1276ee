"""How many users an A/B test and an interleaving experiment need, under a click model.

Offline companion of the live replay. Given each user's two ranked lists (baseline and
candidate, as the model servers return them) and a :class:`~serving.replay.users.ClickModel`,
the per-visit outcomes have exact probabilities:

* A/B: a visit shown list L is clicked (at least one click) with probability
  ``1 − Π_i (1 − p_i)``, p_i the click probability at position i.
* Interleaving (team draft, as the router does it): the 2^(k/2) coin-flip sequences of the
  draft are equally likely; for each, the clicks per team are independent Bernoullis, and the
  visit is won by the team with more clicked items (:func:`serving.stats.credit`). Summing
  over the draft gives P(candidate wins) and P(baseline wins) exactly.

Users arrive as a stream drawn with replacement from the held-out users, each arrival a new
user; both tests see the same kind of stream. :func:`users_to_decision` runs the controller's
sequential tests (mSPRT on clicked-visit rates, the beta-binomial sequential sign test on
wins) after every user, vectorised over the stream, and returns the user at which each stream
first decides.

With ``visits > 1`` each arriving user makes that many visits during the experiment and both
tests aggregate per user, as production interleaving and A/B analyses do (Chapelle et al.
2012; Netflix 2017): A/B compares per-user click-through (clicked visits / visits) with a
normal mixture SPRT on the difference of the two means (plug-in variances); interleaving
counts a user for the side that won more of that user's visits and runs the same sequential
sign test on users.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from serving.replay.users import ClickModel
from serving.stats.interleaving import TEAM_A, team_draft
from serving.stats.sequential import DEFAULT_MIXTURE_SD

__all__ = ["click_probability", "interleave_win_probabilities", "StreamResult",
           "users_to_decision", "msprt_log_lr", "msprt_means_log_lr", "sign_test_log_lr"]


def click_probability(items: Sequence[int], future: frozenset[int], model: ClickModel) -> float:
    """P(a visit shown ``items`` gets at least one click)."""
    p = model.probabilities(items, future)
    return float(1.0 - np.prod(1.0 - p))


class _Script:
    """An ``rng`` for :func:`team_draft` that plays back a fixed sequence of coin flips."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.i = 0

    def random(self) -> float:
        bit = (self.bits >> self.i) & 1
        self.i += 1
        return 0.25 if bit else 0.75  # < 0.5: team A picks


def _diff_distribution(pa: np.ndarray, pb: np.ndarray) -> tuple[float, float]:
    """P(#clicks on A > #clicks on B), P(B > A) for independent per-position clicks."""
    # Distribution of (clicks_a − clicks_b), offset by len(pb).
    n = len(pa) + len(pb)
    dist = np.zeros(2 * n + 1)
    dist[n] = 1.0
    for p in pa:
        dist = dist * (1 - p) + np.roll(dist, 1) * p
    for p in pb:
        dist = dist * (1 - p) + np.roll(dist, -1) * p
    return float(dist[n + 1:].sum()), float(dist[:n].sum())


def interleave_win_probabilities(baseline: Sequence[int], candidate: Sequence[int],
                                 future: frozenset[int], model: ClickModel,
                                 k: int = 10) -> tuple[float, float]:
    """(P(candidate wins), P(baseline wins)) of one team-draft interleaved visit.

    Baseline is team A and candidate team B, as in the router.
    """
    flips = (k + 1) // 2
    total_c = total_b = 0.0
    for bits in range(2 ** flips):
        il = team_draft(baseline, candidate, k, _Script(bits))  # type: ignore[arg-type]
        p = model.probabilities(il.items, future)
        on_a = np.array([t == TEAM_A for t in il.teams], dtype=bool)
        a_wins, b_wins = _diff_distribution(p[on_a], p[~on_a])
        total_b += a_wins
        total_c += b_wins
    n = 2 ** flips
    return total_c / n, total_b / n


def _mixture_log_lr(diff: np.ndarray, var: np.ndarray, mixture_sd: float) -> np.ndarray:
    """log Λ of the normal-mixture SPRT for an estimated difference with variance ``var``."""
    tau2 = mixture_sd ** 2
    return 0.5 * np.log(var / (var + tau2)) + tau2 * diff ** 2 / (2 * var * (var + tau2))


def msprt_log_lr(s_a: np.ndarray, n_a: np.ndarray, s_b: np.ndarray, n_b: np.ndarray,
                 mixture_sd: float = DEFAULT_MIXTURE_SD) -> np.ndarray:
    """:func:`serving.stats.msprt_two_proportions`'s log Λ, vectorised (n_a, n_b ≥ 1)."""
    pa = (s_a + 0.5) / (n_a + 1.0)
    pb = (s_b + 0.5) / (n_b + 1.0)
    var = pa * (1 - pa) / n_a + pb * (1 - pb) / n_b
    return _mixture_log_lr(s_b / n_b - s_a / n_a, var, mixture_sd)


def sign_test_log_lr(wins_b: np.ndarray, wins_a: np.ndarray, prior: float = 1.0) -> np.ndarray:
    """:func:`serving.stats.sequential_sign_test`'s log Λ, vectorised."""
    from scipy.special import gammaln

    n = wins_a + wins_b
    return (gammaln(wins_b + prior) + gammaln(wins_a + prior) - gammaln(n + 2 * prior)
            - (2 * gammaln(prior) - gammaln(2 * prior)) + n * math.log(2.0))


@dataclass(frozen=True)
class StreamResult:
    """Visits to the first decision per stream (None: undecided within the cap) and the
    winner it named ("candidate" / "baseline")."""

    visits: list[int | None]
    winners: list[str | None]

    def summary(self, correct: str | None = "candidate") -> dict[str, float]:
        # Undecided streams count as beyond the cap: a median above the cap is infinite.
        counts = np.array([math.inf if v is None else v for v in self.visits], dtype=float)
        n = len(self.visits)
        return {
            "streams": n,
            "median": float(np.quantile(counts, 0.5, method="inverted_cdf")),
            "p90": float(np.quantile(counts, 0.9, method="inverted_cdf")),
            "correct": sum(w == correct for w in self.winners) / n if correct else 0.0,
            "wrong": sum(w is not None and w != correct for w in self.winners) / n,
            "undecided": sum(v is None for v in self.visits) / n,
        }


def msprt_means_log_lr(sum_a: np.ndarray, sq_a: np.ndarray, n_a: np.ndarray,
                       sum_b: np.ndarray, sq_b: np.ndarray, n_b: np.ndarray,
                       mixture_sd: float = DEFAULT_MIXTURE_SD) -> np.ndarray:
    """Normal-mixture SPRT log Λ for a difference of two means from running sums (the
    per-user analogue of :func:`msprt_log_lr`; variances estimated from the data)."""
    mean_a, mean_b = sum_a / n_a, sum_b / n_b
    var_a = np.maximum(sq_a / n_a - mean_a ** 2, 0.0) * n_a / np.maximum(n_a - 1, 1)
    var_b = np.maximum(sq_b / n_b - mean_b ** 2, 0.0) * n_b / np.maximum(n_b - 1, 1)
    var = np.maximum(var_a / n_a + var_b / n_b, 1e-12)
    return _mixture_log_lr(mean_b - mean_a, var, mixture_sd)


#: One chunk of a stream: (rng, the chunk's user rows, the running totals so far) →
#: (index of the first visit at which the test decides or None, the side it names, new totals).
_Step = Callable[[np.random.Generator, np.ndarray, np.ndarray],
                 tuple[int | None, str | None, np.ndarray]]


def _first_decision(ok: np.ndarray, llr: np.ndarray, threshold: float) -> int | None:
    hit = np.flatnonzero(ok & (llr >= threshold))
    return int(hit[0]) if hit.size else None


def _side(candidate_ahead: bool) -> str:
    return "candidate" if candidate_ahead else "baseline"


def _user_votes(rng: np.random.Generator, pc: np.ndarray, pb: np.ndarray,
                visits: int | np.ndarray, c: np.ndarray, minimum: int,
                threshold: float) -> tuple[int | None, str | None, np.ndarray]:
    """Interleaving with users as the unit: each user's ``visits`` visits are won by the
    candidate (``pc``) or the baseline (``pb``) or neither; the user votes for the side that
    won more (ties: no vote); sequential sign test on the votes so far (totals ``c``)."""
    w_c = rng.binomial(visits, pc)
    rest = np.clip(pb / np.maximum(1.0 - pc, 1e-12), 0.0, 1.0)
    w_b = rng.binomial(visits - w_c, rest)
    u_c, u_b = c[0] + np.cumsum(w_c > w_b), c[1] + np.cumsum(w_b > w_c)
    i = _first_decision((u_c + u_b) >= minimum, sign_test_log_lr(u_c, u_b), threshold)
    winner = None if i is None else _side(u_c[i] > u_b[i])
    return i, winner, np.array([u_c[-1], u_b[-1]])


def _run_streams(step: _Step, totals: int, *, users: int, streams: int, cap: int, chunk: int,
                 seed: int, max_chunk: int | None = None,
                 deadline: float | None = None) -> StreamResult:
    """``streams`` independent streams of at most ``cap`` arrivals, drawn in chunks; each
    stops at the first chunk in which ``step`` finds a decision. ``max_chunk``: chunks double
    from ``chunk`` up to it (cheap for fast decisions; the result's distribution does not
    depend on the chunking). ``deadline`` (time.time()): start no stream after it."""
    import time

    rng = np.random.default_rng(seed)
    visits: list[int | None] = []
    winners: list[str | None] = []
    for _ in range(streams):
        if deadline is not None and time.time() > deadline:
            break
        carry = np.zeros(totals)  # running totals carried across chunks
        done, size = 0, chunk
        found: tuple[int, str] | None = None
        while done < cap and found is None:
            m = min(size, cap - done)
            i, winner, carry = step(rng, rng.integers(users, size=m), carry)
            if i is not None:
                found = (done + i + 1, winner or "")
            done += m
            if max_chunk is not None:
                size = min(2 * size, max_chunk)
        visits.append(found[0] if found else None)
        winners.append(found[1] if found else None)
    return StreamResult(visits, winners)


def users_to_decision(kind: str, probs: np.ndarray, *, streams: int, cap: int, alpha: float,
                      minimum: int, seed: int = 0, chunk: int = 100_000,
                      mixture_sd: float = DEFAULT_MIXTURE_SD,
                      weight: float = 0.5, visits: int = 1) -> StreamResult:
    """Run ``streams`` independent visit streams of at most ``cap`` visits each.

    ``kind="ab"``: ``probs`` is (users, 2) = P(clicked visit) on baseline, candidate; each
    visit goes to the candidate with probability ``weight``; mSPRT after every visit once both
    variants have ``minimum`` visits.
    ``kind="interleave"``: ``probs`` is (users, 2) = P(candidate wins), P(baseline wins);
    sequential sign test after every visit once ``minimum`` visits were won by either side.
    ``visits > 1``: each user makes that many visits and both tests aggregate per user (see
    the module docstring); the counts are then users, not visits.
    """
    if kind not in ("ab", "interleave"):
        raise ValueError(f"kind must be ab or interleave, got {kind!r}")
    threshold = math.log(1 / alpha)

    def ab_visits(rng: np.random.Generator, u: np.ndarray, c: np.ndarray):  # noqa: ANN202
        r = rng.random(u.size)
        cand = rng.random(u.size) < weight
        click = r < np.where(cand, probs[u, 1], probs[u, 0])
        n_b, n_a = c[0] + np.cumsum(cand), c[1] + np.cumsum(~cand)
        s_b, s_a = c[2] + np.cumsum(click & cand), c[3] + np.cumsum(click & ~cand)
        with np.errstate(divide="ignore", invalid="ignore"):
            llr = msprt_log_lr(s_a, np.maximum(n_a, 1), s_b, np.maximum(n_b, 1), mixture_sd)
        i = _first_decision((n_a >= minimum) & (n_b >= minimum), llr, threshold)
        winner = None if i is None else _side(s_b[i] / n_b[i] - s_a[i] / n_a[i] > 0)
        return i, winner, np.array([n_b[-1], n_a[-1], s_b[-1], s_a[-1]])

    def interleave_visits(rng: np.random.Generator, u: np.ndarray, c: np.ndarray):  # noqa: ANN202
        r = rng.random(u.size)
        win_c = r < probs[u, 0]
        win_b = (~win_c) & (r < probs[u, 0] + probs[u, 1])
        w_c, w_b = c[0] + np.cumsum(win_c), c[1] + np.cumsum(win_b)
        i = _first_decision((w_c + w_b) >= minimum, sign_test_log_lr(w_c, w_b), threshold)
        winner = None if i is None else _side(w_c[i] > w_b[i])
        return i, winner, np.array([w_c[-1], w_b[-1]])

    def ab_users(rng: np.random.Generator, u: np.ndarray, c: np.ndarray):  # noqa: ANN202
        cand = rng.random(u.size) < weight
        y = rng.binomial(visits, np.where(cand, probs[u, 1], probs[u, 0])) / visits
        yb, ya = np.where(cand, y, 0.0), np.where(cand, 0.0, y)
        n_b, n_a = c[0] + np.cumsum(cand), c[1] + np.cumsum(~cand)
        s_b, s_a = c[2] + np.cumsum(yb), c[3] + np.cumsum(ya)
        q_b, q_a = c[4] + np.cumsum(yb ** 2), c[5] + np.cumsum(ya ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            llr = msprt_means_log_lr(s_a, q_a, np.maximum(n_a, 1), s_b, q_b,
                                     np.maximum(n_b, 1), mixture_sd)
        i = _first_decision((n_a >= minimum) & (n_b >= minimum), llr, threshold)
        winner = None if i is None else _side(s_b[i] / n_b[i] - s_a[i] / n_a[i] > 0)
        return i, winner, np.array([n_b[-1], n_a[-1], s_b[-1], s_a[-1], q_b[-1], q_a[-1]])

    def interleave_users(rng: np.random.Generator, u: np.ndarray, c: np.ndarray):  # noqa: ANN202
        return _user_votes(rng, probs[u, 0], probs[u, 1], visits, c, minimum, threshold)

    steps: dict[tuple[str, bool], tuple[_Step, int]] = {
        ("ab", False): (ab_visits, 4), ("interleave", False): (interleave_visits, 2),
        ("ab", True): (ab_users, 6), ("interleave", True): (interleave_users, 2)}
    step, totals = steps[(kind, visits > 1)]
    return _run_streams(step, totals, users=probs.shape[0], streams=streams, cap=cap,
                        chunk=chunk, seed=seed)


def clustered_rate_variance_vec(s: np.ndarray, n: np.ndarray, sum_n2: np.ndarray,
                                sum_s2: np.ndarray, sum_ns: np.ndarray,
                                k: np.ndarray) -> np.ndarray:
    """:func:`serving.stats.clustered_rate_variance`, vectorised over running totals
    (n ≥ 1): the delta-method variance of the ratio Σs/Σn with users as the unit, never
    below the smoothed binomial variance."""
    p = (s + 0.5) / (n + 1.0)
    binomial = p * (1.0 - p) / n
    r = s / n
    spread = np.maximum(0.0, sum_s2 - 2.0 * r * sum_ns + r * r * sum_n2)
    kk = np.maximum(k, 2.0)
    clustered = kk / (kk - 1.0) * spread / (n * n)
    return np.where(k >= 2, np.maximum(binomial, clustered), binomial)


#: Visits per arriving user: (rng, the arrivals' user rows) → visits of each arrival (≥ 1).
VisitSampler = Callable[[np.random.Generator, np.ndarray], np.ndarray]


def users_to_decision_varying(kind: str, probs: np.ndarray, visits: VisitSampler, *,
                              streams: int, cap: int, alpha: float, minimum: int,
                              seed: int = 0, first_chunk: int = 2_000,
                              max_chunk: int = 100_000,
                              mixture_sd: float = DEFAULT_MIXTURE_SD, weight: float = 0.5,
                              deadline: float | None = None) -> StreamResult:
    """Like :func:`users_to_decision` with users who come back, but each arriving user makes
    ``visits(rng, u)`` visits (a number that varies per user: heavy-tailed activity).

    ``kind="ab"``: users are assigned to the candidate with probability ``weight`` and see it
    on every visit; the metric is the ratio estimator Σ clicked lists / Σ lists per arm and
    the mSPRT uses the clustered (delta-method, users as the unit) variance, as the
    controller does (:func:`serving.stats.clustered_rate_variance`); checked after every
    user once both arms have ``minimum`` users.
    ``kind="interleave"``: every visit is a fresh team draft; a user votes for the side that
    won more of their visits (ties: no vote); sequential sign test on votes after every user
    once ``minimum`` users voted.

    Chunks grow from ``first_chunk`` to ``max_chunk`` (cheap for fast decisions; the
    distribution of the result does not depend on the chunking). ``deadline`` (time.time()):
    stop early, returning only the streams completed (``len(visits)`` < ``streams``).
    """
    if kind not in ("ab", "interleave"):
        raise ValueError(f"kind must be ab or interleave, got {kind!r}")
    threshold = math.log(1 / alpha)

    def ab_step(rng: np.random.Generator, u: np.ndarray, c: np.ndarray):  # noqa: ANN202
        v = visits(rng, u).astype(float)
        cand = rng.random(u.size) < weight
        s = rng.binomial(v.astype(np.int64), np.where(cand, probs[u, 1], probs[u, 0]))
        s = s.astype(float)
        tot = []
        for j, arm in enumerate((~cand, cand)):  # 0: baseline (a), 1: candidate (b)
            base = 6 * j
            vv, ss = np.where(arm, v, 0.0), np.where(arm, s, 0.0)
            tot.append((c[base] + np.cumsum(arm), c[base + 1] + np.cumsum(vv),
                        c[base + 2] + np.cumsum(ss), c[base + 3] + np.cumsum(vv * vv),
                        c[base + 4] + np.cumsum(ss * ss), c[base + 5] + np.cumsum(vv * ss)))
        (k_a, n_a, s_a, n2_a, s2_a, ns_a), (k_b, n_b, s_b, n2_b, s2_b, ns_b) = tot
        with np.errstate(divide="ignore", invalid="ignore"):
            na1, nb1 = np.maximum(n_a, 1.0), np.maximum(n_b, 1.0)
            var = (clustered_rate_variance_vec(s_a, na1, n2_a, s2_a, ns_a, k_a)
                   + clustered_rate_variance_vec(s_b, nb1, n2_b, s2_b, ns_b, k_b))
            diff = s_b / nb1 - s_a / na1
            llr = _mixture_log_lr(diff, var, mixture_sd)
        i = _first_decision((k_a >= minimum) & (k_b >= minimum), llr, threshold)
        winner = None if i is None else _side(diff[i] > 0)
        return i, winner, np.array([x[-1] for x in (*tot[0], *tot[1])])

    def il_step(rng: np.random.Generator, u: np.ndarray, c: np.ndarray):  # noqa: ANN202
        v = visits(rng, u).astype(np.int64)
        return _user_votes(rng, probs[u, 0], probs[u, 1], v, c, minimum, threshold)

    step, totals = (ab_step, 12) if kind == "ab" else (il_step, 2)
    return _run_streams(step, totals, users=probs.shape[0], streams=streams, cap=cap,
                        chunk=first_chunk, seed=seed, max_chunk=max_chunk, deadline=deadline)
