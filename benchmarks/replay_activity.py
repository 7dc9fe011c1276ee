"""Interleaving vs A/B when users come back a heavy-tailed number of times.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replay_activity.py \
        [--pairs ranker A/A more extreme] [--dists activity:5 activity:20 geometric:5 ...]

The per-user sweep of ``benchmarks/replay.py`` gives every arriving user the same number V of
visits. Here V varies per user:

* ``activity:M``: V_u = max(1, round(c · r_u)), r_u the user's number of ratings in the
  training part of MovieLens-100k (15–553), c chosen so that the mean over the held-out users
  (who arrive uniformly) is M. Activity is a property of the user, so heavy users are the
  same users every time (and their click probabilities differ from light users').
* ``geometric:M``: V ~ Geometric(1/M) on {1, 2, ...}, drawn per arrival, independent of
  the user (mean M, coefficient of variation ≈ 0.9–1, close to the activity one).
* ``lognormal:M``: V = max(1, round(exp(μ + σ Z))), σ = ``--lognormal-sigma``, μ fitted so
  that the mean is M; independent of the user.
* ``fixed:M``: every user makes M visits (the existing sweep's traffic, reference).

``lognormal:M:S`` sets σ = S for that entry. Besides the sequential streams, each entry records
the exact per-user quantities behind them (:func:`analytic`): the A/B metric's per-user
variance split into within-user (binomial) and between-user parts, each side's chance of a
user's vote, and the fixed-horizon A/B ÷ interleaving ratio they imply.

Both tests aggregate per user (:func:`serving.replay.power.users_to_decision_varying`):
A/B = users assigned 50/50 and sticky, ratio estimator Σ clicked lists / Σ lists per arm, mSPRT
with the controller's clustered delta-method variance (users as the unit); interleaving = a
user votes for the side that won more of their visits (ties: no vote), sequential sign test
on votes. Per-visit probabilities are exact (click model, all team-draft coin flips), from
each user's lists as the real model servers returned them: the lists cached by
``benchmarks/replay.py`` in ``--work`` (checked against the bundles; no server is started).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from replay import (  # noqa: E402  (benchmarks/replay.py)
    PAIRS,
    _stamp,
    add_click_model_args,
    pair_probabilities,
)


def train_counts(work: Path) -> dict[int, int]:
    """Each user's number of ratings in the training part (the split replay.py uses)."""
    from recsys.data.fetch import fetch_movielens_100k
    from recsys.data.ingest import ingest
    from recsys.data.split import per_user_temporal_split

    ds = ingest(fetch_movielens_100k(work / "cache"))
    split = per_user_temporal_split(ds.interactions, test_frac=0.25)
    return {int(u): int(n) for u, n in split.train.groupby("user_id").size().items()}


def activity_visits(counts: np.ndarray, mean: float) -> np.ndarray:
    """max(1, round(c · counts)) with c fitted (bisection) so that the mean is ``mean``."""
    def v(c: float) -> np.ndarray:
        return np.maximum(1, np.floor(c * counts + 0.5)).astype(np.int64)

    lo, hi = 0.0, 10 * mean / counts.mean()
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if v(mid).mean() < mean else (lo, mid)
    return min((v(lo), v(hi)), key=lambda x: abs(x.mean() - mean))


def lognormal_mu(mean: float, sigma: float) -> float:
    """μ such that E[max(1, round(exp(μ + σZ)))] = mean (fixed-seed Monte Carlo, bisection)."""
    z = np.random.default_rng(12345).standard_normal(2_000_000)
    lo, hi = -5.0, math.log(mean) + 1
    for _ in range(60):
        mid = (lo + hi) / 2
        m = np.maximum(1, np.floor(np.exp(mid + sigma * z) + 0.5)).mean()
        lo, hi = (mid, hi) if m < mean else (lo, mid)
    return (lo + hi) / 2


def make_sampler(dist: str, user_counts: np.ndarray, sigma: float) -> tuple[Any, dict[str, Any]]:
    """(sampler for users_to_decision_varying, a description with the realised V moments)."""
    name, m, *rest = dist.split(":")
    mean = float(m)
    if rest:
        sigma = float(rest[0])
    if name == "fixed":
        table = np.full(user_counts.size, int(mean), dtype=np.int64)
    elif name == "activity":
        table = activity_visits(user_counts, mean)
    else:
        table = None
    if table is not None:
        info = {"mean": float(table.mean()), "cv": float(table.std() / table.mean()),
                "min": int(table.min()), "median": float(np.median(table)),
                "max": int(table.max()), "E[V^2]/E[V]^2": float((table ** 2).mean()
                                                                / table.mean() ** 2)}
        return (lambda rng, u: table[u]), info
    if name == "geometric":
        p = 1.0 / mean

        def geo(rng: np.random.Generator, u: np.ndarray) -> np.ndarray:
            return rng.geometric(p, size=u.size)

        sample = np.random.default_rng(7).geometric(p, size=1_000_000)
        sampler = geo
    elif name == "lognormal":
        mu = lognormal_mu(mean, sigma)

        def logn(rng: np.random.Generator, u: np.ndarray) -> np.ndarray:
            return np.maximum(1, np.floor(np.exp(mu + sigma * rng.standard_normal(u.size))
                                          + 0.5)).astype(np.int64)

        sample = logn(np.random.default_rng(7), np.zeros(1_000_000, dtype=np.int64))
        sampler = logn
    else:
        raise ValueError(f"unknown distribution {dist!r}")
    info = {"mean": float(sample.mean()), "cv": float(sample.std() / sample.mean()),
            "min": int(sample.min()), "median": float(np.median(sample)),
            "p99": float(np.quantile(sample, 0.99)), "max": int(sample.max()),
            "E[V^2]/E[V]^2": float((sample.astype(float) ** 2).mean() / sample.mean() ** 2)}
    if name == "lognormal":
        info["sigma"] = sigma
    return sampler, info


def visit_pmf(dist: str, sampler: Any, draws: int = 4_000_000) -> np.ndarray:
    """P(V = v), v = 0..max, of a per-arrival V (independent of the user): exact for the
    geometric, a fixed-seed histogram of ``draws`` draws otherwise."""
    name, m, *_ = dist.split(":")
    if name == "geometric":
        p = 1.0 / float(m)
        v = np.arange(0, int(60 * float(m)))
        pmf = np.where(v >= 1, p * (1 - p) ** np.maximum(v - 1, 0), 0.0)
        return pmf / pmf.sum()
    sample = sampler(np.random.default_rng(11), np.zeros(draws, dtype=np.int64))
    return np.bincount(sample) / draws


def vote_probabilities(pc: np.ndarray, pb: np.ndarray, vmax: int,
                       exact_to: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(P(user votes candidate), P(votes baseline)) for every user (rows) and v = 0..vmax
    visits (columns): the difference of won visits is a sum of v independent +1/0/−1 steps
    (exactly up to ``exact_to`` visits; a normal approximation beyond)."""
    users = pc.size
    up, down = np.zeros((users, vmax + 1)), np.zeros((users, vmax + 1))
    top = min(vmax, exact_to)
    dist = np.zeros((users, 2 * top + 1))
    dist[:, top] = 1.0
    stay = 1.0 - pc - pb
    for v in range(1, top + 1):
        dist = (dist * stay[:, None] + np.roll(dist, 1, axis=1) * pc[:, None]
                + np.roll(dist, -1, axis=1) * pb[:, None])
        up[:, v], down[:, v] = dist[:, top + 1:].sum(1), dist[:, :top].sum(1)
    if vmax > top:
        from scipy.stats import norm

        v = np.arange(top + 1, vmax + 1)[None, :]
        mu = (pc - pb)[:, None]
        sd = np.sqrt(np.maximum(pc + pb - (pc - pb) ** 2, 1e-12))[:, None]
        up[:, top + 1:] = norm.sf((0.5 - v * mu) / (np.sqrt(v) * sd))
        down[:, top + 1:] = norm.cdf((-0.5 - v * mu) / (np.sqrt(v) * sd))
    return up, down


def analytic(probs: dict[str, np.ndarray], table: np.ndarray | None,
             pmf: np.ndarray | None) -> dict[str, Any]:
    """Exact per-user quantities behind the two tests, users arriving uniformly.

    A/B (ratio estimator, users as the unit): an arm's per-user variance of s_u − R n_u over
    E[n]², which is (E[n p(1−p)] + E[n² (p − R)²]) / E[n]²: within-user binomial noise plus
    between-user spread of click-through, the latter weighted by n² (heavy users count
    more). Interleaving: q_c, q_b = P(a user votes candidate / baseline). Fixed-horizon users
    (per z²): A/B 2(σ²_a + σ²_b)/d², interleaving (q_c + q_b)/(q_c − q_b)².
    """
    ab, il = probs["ab"], probs["interleave"]
    out: dict[str, Any] = {}
    if table is not None:
        n = table.astype(float)
        en, w = n.mean(), n / n.mean()
        within = [float((n * ab[:, j] * (1 - ab[:, j])).mean() / en ** 2) for j in (0, 1)]
        rates = [float((w * ab[:, j]).mean()) for j in (0, 1)]
        between = [float((n * n * (ab[:, j] - rates[j]) ** 2).mean() / en ** 2)
                   for j in (0, 1)]
        up, down = vote_probabilities(il[:, 0], il[:, 1], int(table.max()))
        rows = np.arange(table.size)
        qc, qb = float(up[rows, table].mean()), float(down[rows, table].mean())
    else:
        assert pmf is not None
        v = np.arange(pmf.size, dtype=float)
        en, en2 = float((pmf * v).sum()), float((pmf * v * v).sum())
        rates = [float(ab[:, j].mean()) for j in (0, 1)]
        within = [float(en * (ab[:, j] * (1 - ab[:, j])).mean() / en ** 2) for j in (0, 1)]
        between = [float(en2 * ((ab[:, j] - rates[j]) ** 2).mean() / en ** 2) for j in (0, 1)]
        vmax = int(np.flatnonzero(pmf)[-1])
        up, down = vote_probabilities(il[:, 0], il[:, 1], vmax)
        qc, qb = float((up.mean(0) * pmf[:vmax + 1]).sum()), float(
            (down.mean(0) * pmf[:vmax + 1]).sum())
    d = rates[1] - rates[0]
    var = sum(within) + sum(between)
    k_ab = 2 * var / d ** 2 if d else math.inf
    k_il = (qc + qb) / (qc - qb) ** 2 if qc != qb else math.inf
    out.update({"ab_rates": rates, "ab_within_var": within, "ab_between_var": between,
                "il_vote": [qc, qb], "fixed_users_per_z2": {"ab": k_ab, "interleave": k_il},
                "fixed_ratio": (k_ab / k_il if math.isfinite(k_ab) and math.isfinite(k_il)
                                else None)})
    return out


def load_lists(work: Path, names: set[str], k: int) -> dict[str, dict[int, list[int]]]:
    lists = {}
    for name in names:
        cached = json.loads((work / f"lists-{name}.json").read_text())
        if cached.get("k") != k or cached.get("bundle") != _stamp(work / f"bundle-{name}"):
            raise SystemExit(f"cached lists of {name} do not match its bundle; run replay.py")
        lists[name] = {int(u): v for u, v in cached["lists"].items()}
    return lists


def main() -> None:
    from serving.replay.power import users_to_decision_varying
    from serving.replay.users import ClickModel, load_users

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/marquee-replay-bench"))
    ap.add_argument("--pairs", nargs="*", default=["ranker", "A/A", "more", "extreme"],
                    help="Pairs of replay.PAIRS, by prefix, in this order.")
    ap.add_argument("--dists", nargs="*",
                    default=["activity:5", "activity:20", "geometric:5", "geometric:20"])
    ap.add_argument("--lognormal-sigma", type=float, default=1.0)
    add_click_model_args(ap)
    ap.add_argument("--ab-min", type=int, default=200, help="A/B: users per arm first.")
    ap.add_argument("--il-min", type=int, default=100, help="Interleaving: voting users first.")
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--cap", type=int, default=1_000_000, help="Users per stream at most.")
    ap.add_argument("--seed", type=int, default=0, help="Offset of every stream seed.")
    ap.add_argument("--no-streams", action="store_true", help="Only the exact quantities.")
    ap.add_argument("--deadline", default=None,
                    help="UTC HH:MM: stop starting new streams after it (partial results).")
    ap.add_argument("--out", type=Path, default=REPO / "replay-activity-results.jsonl")
    args = ap.parse_args()

    t0 = time.time()
    deadline = None
    if args.deadline:
        hh, mm = map(int, args.deadline.split(":"))
        now = datetime.now(timezone.utc)
        deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
    holdout = args.work / "holdout.parquet"
    users = load_users(holdout, holdout, order="random", seed=0)
    counts = train_counts(args.work)
    user_counts = np.array([counts[u.user_id] for u in users], dtype=float)
    click = ClickModel(args.position_bias, args.relevant_click, args.noise_click)
    pairs = [next(n for n in PAIRS if n.startswith(p)) for p in args.pairs]
    lists = load_lists(args.work, {m for n in pairs for m in PAIRS[n]}, args.k)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                         capture_output=True, text=True).stdout.strip()
    header = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "code": rev, "argv": sys.argv[1:], "load": os.getloadavg()[0],
              "python": platform.python_version(), "users": len(users)}
    print(json.dumps(header), flush=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(header) + "\n")
    for pi, name in enumerate(pairs):
        pair = PAIRS[name]
        probs = pair_probabilities(lists, users, pair, click, args.k)
        null = pair[0] == pair[1]
        for di, dist in enumerate(args.dists):
            sampler, vinfo = make_sampler(dist, user_counts, args.lognormal_sigma)
            # The A/B metric's true value under this traffic: visit-weighted click-through
            # (activity-proportional V weights each user by their V; otherwise E[V] alike).
            if dist.startswith(("activity", "fixed")):
                vv = sampler(None, np.arange(len(users))).astype(float)
            else:
                vv = np.ones(len(users))
            ctr = (probs["ab"] * vv[:, None]).sum(0) / vv.sum()
            diff = float(ctr[1] - ctr[0])
            correct = None if null else ("candidate" if diff > 0 else "baseline")
            exact = (analytic(probs, vv.astype(np.int64), None)
                     if dist.startswith(("activity", "fixed"))
                     else analytic(probs, None, visit_pmf(dist, sampler)))
            rec: dict[str, Any] = {"pair": name, "dist": dist, "V": vinfo, "exact": exact,
                                   "ctr_visit_weighted": ctr.tolist(),
                                   "il_win_visit_weighted": ((probs["interleave"]
                                                              * vv[:, None]).sum(0)
                                                             / vv.sum()).tolist()}
            for kind, minimum in (("ab", args.ab_min), ("interleave", args.il_min)):
                if args.no_streams:
                    rec[kind] = {"median": math.inf, "visits": [], "winners": []}
                    continue
                t = time.time()
                res = users_to_decision_varying(
                    kind, probs[kind], sampler, streams=args.streams, cap=args.cap,
                    alpha=args.alpha, minimum=minimum, seed=args.seed + 1000 + 100 * pi
                    + 10 * di + (kind == "interleave"), deadline=deadline)
                rec[kind] = {**res.summary(correct), "seconds": round(time.time() - t, 1),
                             "visits": res.visits, "winners": res.winners}
            a, i = rec["ab"], rec["interleave"]
            rec["ratio_median"] = (a["median"] / i["median"] if math.isfinite(a["median"])
                                   and math.isfinite(i["median"]) else None)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            brief = {k: v for k, v in rec.items() if k not in ("ab", "interleave")}
            for kind in ("ab", "interleave"):
                brief[kind] = {k: v for k, v in rec[kind].items()
                               if k not in ("visits", "winners")}
            print(json.dumps(brief), f"t={time.time() - t0:.0f}s", flush=True)
            if deadline is not None and time.time() > deadline:
                print("deadline reached", flush=True)
                return
    print(f"done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
