"""Interleaving vs A/B: how many users each needs to reach the right decision.

    .venv/bin/python benchmarks/replay.py [--permutations 200] [--record]

MovieLens-100k (from the recbole wheel on PyPI, via ``recsys.data.fetch``), each user's last
25% of ratings held out. Two real recommenders trained on the rest: a *weak* baseline (1
epoch, 8 dimensions) and a *better* candidate (5 epochs, 32 dimensions). Both are served by
real KServe model servers behind the real router.

1. Live: the controller runs an A/B rollout (50/50, mSPRT) and an interleaving rollout
   (team draft, sequential sign test) while ``marquee traffic replay`` users arrive in random
   order; each user clicks the recommended items that are among their held-out ratings
   (position bias 1/(pos+1)^b). Reported: the decision and the users the router had served
   when the controller took it.
2. Offline, from the same logged per-user outcomes of the live runs: the users each
   sequential test needs in ``--permutations`` random user orders (median, 90th percentile,
   share of orders with a correct decision within the 943 users).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from router import start_router, start_server, stop  # noqa: E402  (benchmarks/router.py)

MODEL = "movie-recommender"
MODELS = {"weak": {"epochs": 1, "dim": 8}, "better": {"epochs": 5, "dim": 32}}


def build(work: Path) -> tuple[dict[str, Path], Path]:
    import torch

    from marquee.bundle import finalize_bundle
    from recsys import Recommender
    from recsys.data.fetch import fetch_movielens_100k
    from recsys.data.ingest import ingest
    from recsys.data.split import per_user_temporal_split

    torch.set_num_threads(1)
    ds = ingest(fetch_movielens_100k(work / "cache"))
    split = per_user_temporal_split(ds.interactions, test_frac=0.25)
    holdout = work / "holdout.parquet"
    split.test.to_parquet(holdout)
    bundles = {}
    for version, (name, r) in enumerate(MODELS.items(), start=1):
        bundle = work / f"bundle-{name}"
        if not (bundle / "bundle.json").is_file():
            config = {"seed": 1, "retrieval": {**r, "batch_size": 256},
                      "ranker": {"enabled": False}}
            rec = Recommender(config)
            rec.fit(split.train, ds.users, ds.items, progress=False)
            rec.save(bundle)
            finalize_bundle(bundle, MODEL, str(version), training_config=config,
                            data_fingerprint=ds.fingerprint(), metrics={},
                            code_revision="bench")
        bundles[name] = bundle
    return bundles, holdout


def live(strategy: str, router_url: str, users: list[Any], rate: float, position_bias: float,
         work: Path, seed: int) -> tuple[Any, Any, int | None]:
    """Run one rollout with the real controller while users are replayed."""
    from serving.replay.engine import run_replay
    from serving.rollout.controller import Controller
    from serving.rollout.sources import RouterAdmin, RouterStatsSource
    from serving.rollout.spec import parse_rollout
    from serving.rollout.store import FileStatusStore

    name = f"bench-{strategy}"
    doc = {"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": name},
           "spec": {"baseline": {"version": "1"}, "candidate": {"version": "2"},
                    "strategy": strategy, "stickinessSalt": f"bench-{seed}",
                    "intervalSeconds": 0.5,
                    "ab": {"candidateWeight": 50, "alpha": 0.05, "minSamplesPerVariant": 20},
                    "interleave": {"alpha": 0.05, "minDecisions": 10},
                    "analysis": {"failureLimit": 3, "minRequests": 20,
                                 "metrics": [{"name": "errorRate", "max": 0.05}]},
                    "autoPromote": False}}
    store = FileStatusStore(work / "rollouts" / strategy)
    store.create(parse_rollout(doc))
    admin = RouterAdmin(router_url)
    served: list[int] = []
    decided_at: list[int] = []

    def count_users(status: Any) -> None:
        last = status.last_decision
        if not decided_at and last is not None and (last.statistics.get("msprt", {}).get(
                "reject") or last.statistics.get("signTest", {}).get("reject")):
            decided_at.append(len(served))

    stop_flag = threading.Event()
    ctl = Controller(store, name, RouterStatsSource(admin), admin, registry=None)

    def loop() -> None:
        ctl.run(stop_flag, on_tick=count_users)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    import serving.replay.engine as engine

    original = engine.Outcome

    class Counting(original):  # type: ignore[misc,valid-type]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            served.append(1)

    engine.Outcome = Counting  # count users as they are served, for the live decision
    try:
        report = run_replay(router_url, users, rate=rate, requests=len(users),
                            position_bias=position_bias, seed=seed, concurrency=8)
        time.sleep(1.5)  # one more tick on the complete data
    finally:
        engine.Outcome = original
        stop_flag.set()
        thread.join(timeout=30)
        admin.close()
    return store.get(name).status, report, (decided_at[0] if decided_at else None)


def users_to_decision(kind: str, outcomes: list[Any], order: np.ndarray, alpha: float,
                      minimum: int) -> tuple[int | None, str | None]:
    """Apply the controller's sequential test after each user in ``order``."""
    from serving.stats import msprt_two_proportions, sequential_sign_test

    n = {"baseline": 0, "candidate": 0}
    clicked = {"baseline": 0, "candidate": 0}
    wins = {"baseline": 0, "candidate": 0}
    for i, j in enumerate(order, start=1):
        o = outcomes[j]
        if kind == "ab":
            if o.status != 200 or o.variant not in n:
                continue
            n[o.variant] += 1
            clicked[o.variant] += o.clicks > 0
            if min(n.values()) < minimum:
                continue
            t = msprt_two_proportions(clicked["baseline"], n["baseline"], clicked["candidate"],
                                      n["candidate"], alpha=alpha)
        else:
            b, c = o.credited.get("baseline", 0), o.credited.get("candidate", 0)
            if b != c:
                wins["candidate" if c > b else "baseline"] += 1
            if sum(wins.values()) < minimum:
                continue
            t = sequential_sign_test(wins["candidate"], wins["baseline"], alpha)
        if t.reject:
            return i, ("candidate" if t.winner == "b" else "baseline")
    return None, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=40.0)
    ap.add_argument("--position-bias", type=float, default=0.5)
    ap.add_argument("--permutations", type=int, default=200)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "marquee-replay-bench")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    cpu0, t0 = time.process_time(), time.time()
    bundles, holdout = build(work)
    from serving.replay.users import load_users

    users = load_users(holdout, holdout, order="random", seed=0)
    print(f"{len(users)} users; models ready in {time.time() - t0:.0f}s", flush=True)
    load0 = os.getloadavg()[0]
    procs = []
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        try:
            weak, weak_url = start_server(bundles["weak"], home, home / "weak.log")
            procs.append(weak)
            better, better_url = start_server(bundles["better"], home, home / "better.log")
            procs.append(better)
            router, router_url = start_router({"1": weak_url, "2": better_url}, home,
                                              home / "router.log")
            procs.append(router)
            for strategy in ("ab", "interleave"):
                status, report, at = live(strategy, router_url, users, args.rate,
                                          args.position_bias, home, seed=1)
                results[strategy] = (status, report, at)
                print(strategy, status.phase.value, at, status.message, flush=True)
        finally:
            for p in procs:
                stop(p)
    rng = np.random.default_rng(0)
    offline: dict[str, dict[str, float]] = {}
    minimum = {"ab": 20, "interleave": 10}
    for strategy in ("ab", "interleave"):
        outcomes = results[strategy][1].outcomes
        counts, correct, undecided = [], 0, 0
        for _ in range(args.permutations):
            n, winner = users_to_decision(strategy, outcomes, rng.permutation(len(outcomes)),
                                          0.05, minimum[strategy])
            if n is None:
                undecided += 1
                continue
            counts.append(n)
            correct += winner == "candidate"
        offline[strategy] = {
            "median": float(np.median(counts)) if counts else math.inf,
            "p90": float(np.quantile(counts, 0.9)) if counts else math.inf,
            "correct": correct / args.permutations, "undecided": undecided / args.permutations}
    ratio = offline["ab"]["median"] / offline["interleave"]["median"]
    cpu = time.process_time() - cpu0
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                         text=True).stdout.strip()

    def live_row(strategy: str) -> str:
        status, report, at = results[strategy]
        decided = next((d.reason for d in status.decisions
                        if d.statistics.get("msprt", {}).get("reject")
                        or d.statistics.get("signTest", {}).get("reject")), status.message)
        by = report.by_variant()
        ctr = ", ".join(f"{v} {d['ctr']:.3f}" for v, d in sorted(by.items()))
        return (f"| {strategy} | {status.phase.value} | {at if at is not None else 'no decision'} "
                f"| {ctr} | {decided[:160]} |")

    text = f"""
## Interleaving vs A/B

- command: `.venv/bin/python benchmarks/replay.py --rate {args.rate:g} --position-bias {args.position_bias:g} --permutations {args.permutations}`
- date: {date.today()}; code revision: {rev}
- machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; shared with other jobs, load average at start {load0:.1f}; {time.time() - t0:.0f} s wall
- data: MovieLens-100k, per-user temporal split (last 25% of each user's ratings held out), {len(users)} replayed users in random order; a user clicks a recommended item that is among their held-out ratings, position examined with probability 1/(pos+1)^{args.position_bias:g}
- models (real two-tower recommender, real KServe servers behind the router): baseline = weak (1 epoch, dim 8), candidate = better (5 epochs, dim 32)
- tests: A/B 50/50 sticky split, mSPRT on clicked-list rate (alpha 0.05, at least 20 users per variant); interleaving: team draft, sequential (beta-binomial mixture) sign test on per-list wins (alpha 0.05, at least 10 decided lists)

Live rollouts (controller ticking every 0.5 s, autoPromote off; users counted when the deciding tick ran):

| strategy | phase | users served at decision | CTR by variant | decision |
|---|---|---:|---|---|
{live_row("ab")}
{live_row("interleave")}

Users needed, from the logged outcomes in {args.permutations} random user orders:

| strategy | median users to decision | 90th percentile | correct (candidate wins) | no decision within {len(users)} users |
|---|---:|---:|---:|---:|
| A/B (mSPRT) | {offline['ab']['median']:.0f} | {offline['ab']['p90']:.0f} | {offline['ab']['correct']:.0%} | {offline['ab']['undecided']:.0%} |
| interleaving (sign test) | {offline['interleave']['median']:.0f} | {offline['interleave']['p90']:.0f} | {offline['interleave']['correct']:.0%} | {offline['interleave']['undecided']:.0%} |

**Interleaving needs {ratio:.1f}× fewer users than the A/B test (median).** (Orders where A/B did not decide within the pool count as undecided, not in the median.)
"""
    print(text)
    print(f"CPU time of this process: {cpu:.0f} s")
    if args.record:
        with open(REPO / "benchmarks" / "RESULTS.md", "a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
