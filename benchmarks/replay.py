"""Interleaving vs A/B: how many users each needs to reach the right decision.

    .venv/bin/python benchmarks/replay.py [--streams 200] [--record]

(It trains and simulates at nice 19 by itself; the live servers run at normal priority.)

MovieLens-100k (from the recbole wheel on PyPI, via ``recsys.data.fetch``), each user's last
25% of ratings held out. Five real recommenders trained on the rest (``MODELS``), compared in
pairs (``PAIRS``) from no difference (A/A) through realistic modest changes (a retrain with
more epochs, the ranker switched on) to the extreme (a 1-epoch, 8-dimension model against a
proper one). All are served by real KServe model servers.

Click model (position-based, :class:`serving.replay.users.ClickModel`): position i is
examined with probability 1/(i+1)^b, an examined item among the user's held-out ratings is
clicked with probability ``--relevant-click`` (< 1), any other examined item with
``--noise-click``. Visits arrive as a stream drawn with replacement from the 943 held-out
users, each visit a new user, the same stream model for both tests.

1. Offline, per pair: each user's two lists as the model servers return them; exact per-visit
   probabilities (clicked visit on each list; interleaved visit won by each side over all
   team-draft coin flips); then ``--streams`` independent visit streams of at most ``--cap``
   visits, each run through the controller's sequential tests after every visit (mSPRT on
   clicked-visit rates for A/B, beta-binomial sequential sign test on visit wins for
   interleaving, same alpha, the spec's default minimum samples). Reported: median and 90th
   percentile visits to the first decision, share correct, wrong, undecided within the cap.
2. Live, for ``--live-pair``: the real router and controller run an A/B and an interleaving
   rollout while ``serving.replay`` sends the visit stream through the router with clicks
   from the same click model; reported: the decision and the visits served when the
   controller took it.
"""

from __future__ import annotations

import argparse
import json
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
#: Models trained on the same training split; version numbers are the router's versions.
MODELS: dict[str, dict[str, Any]] = {
    "weak": {"version": "1", "retrieval": {"epochs": 1, "dim": 8, "batch_size": 256},
             "ranker": {"enabled": False}},
    "better": {"version": "2", "retrieval": {"epochs": 5, "dim": 32, "batch_size": 256},
               "ranker": {"enabled": False}},
    "retrieval": {"version": "3", "ranker": {"enabled": False}},       # defaults, no ranker
    "production": {"version": "4"},                                     # the defaults
    "production-10ep": {"version": "5", "retrieval": {"epochs": 10}},  # retrained longer
}
#: Candidate pairs (baseline, candidate), from a realistic modest change to the extreme.
PAIRS: dict[str, tuple[str, str]] = {
    "A/A (production vs itself)": ("production", "production"),
    "more epochs (production vs retrain with 10 epochs)": ("production", "production-10ep"),
    "ranker on (retrieval-only vs production)": ("retrieval", "production"),
    "extreme (weak 1-epoch dim-8 vs dim-32)": ("weak", "better"),
}


def build(work: Path) -> tuple[dict[str, Path], Path, Any]:
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
    for name, spec in MODELS.items():
        bundle = work / f"bundle-{name}"
        if not (bundle / "bundle.json").is_file():
            t = time.time()
            config = {"seed": 1, **{k: v for k, v in spec.items() if k != "version"}}
            rec = Recommender(config)
            rec.fit(split.train, ds.users, ds.items, progress=False)
            rec.save(bundle)
            finalize_bundle(bundle, MODEL, spec["version"], training_config=config,
                            data_fingerprint=ds.fingerprint(), metrics={},
                            code_revision="bench")
            print(f"trained {name} in {time.time() - t:.0f}s", flush=True)
        bundles[name] = bundle
    return bundles, holdout, split


def live(strategy: str, router_url: str, pair: tuple[str, str], visits: list[Any],
         args: argparse.Namespace, work: Path, seed: int) -> tuple[Any, Any, int | None]:
    """Run one rollout with the real controller while visits are replayed through the router;
    traffic stops a few ticks after the first decision (or at the end of ``visits``)."""
    from serving.replay.engine import run_replay
    from serving.rollout.controller import Controller
    from serving.rollout.sources import RouterAdmin, RouterStatsSource
    from serving.rollout.spec import parse_rollout
    from serving.rollout.store import FileStatusStore

    name = f"bench-{strategy}"
    doc = {"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": name},
           "spec": {"baseline": {"version": MODELS[pair[0]]["version"]},
                    "candidate": {"version": MODELS[pair[1]]["version"]},
                    "strategy": strategy, "stickinessSalt": f"bench-{seed}",
                    "intervalSeconds": 0.5,
                    "ab": {"candidateWeight": 50, "alpha": args.alpha,
                           "minSamplesPerVariant": args.ab_min},
                    "interleave": {"alpha": args.alpha, "minDecisions": args.il_min},
                    "analysis": {"failureLimit": 3, "minRequests": 20,
                                 "metrics": [{"name": "errorRate", "max": 0.05}]},
                    "limits": {"maxDurationSeconds": 3600},
                    "autoPromote": False}}
    store = FileStatusStore(work / "rollouts" / strategy)
    store.create(parse_rollout(doc))
    admin = RouterAdmin(router_url)
    served: list[int] = []
    decided_at: list[int] = []
    stop_traffic = threading.Event()

    def count_users(status: Any) -> None:
        last = status.last_decision
        if not decided_at and last is not None and (last.statistics.get("msprt", {}).get(
                "reject") or last.statistics.get("signTest", {}).get("reject")):
            decided_at.append(len(served))
            threading.Timer(1.5, stop_traffic.set).start()

    stop_flag = threading.Event()
    ctl = Controller(store, name, RouterStatsSource(admin), admin, registry=None)
    thread = threading.Thread(target=lambda: ctl.run(stop_flag, on_tick=count_users),
                              daemon=True)
    thread.start()

    import serving.replay.engine as engine

    original = engine.Outcome

    class Counting(original):  # type: ignore[misc,valid-type]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            served.append(1)

    engine.Outcome = Counting  # count visits as they are served, for the live decision
    try:
        report = run_replay(router_url, visits, rate=args.rate, requests=len(visits),
                            position_bias=args.position_bias,
                            relevant_click=args.relevant_click, noise_click=args.noise_click,
                            seed=seed, concurrency=8, stop=stop_traffic)
        time.sleep(1.5)  # one more tick on the complete data
    finally:
        engine.Outcome = original
        stop_flag.set()
        thread.join(timeout=30)
        admin.close()
    return store.get(name).status, report, (decided_at[0] if decided_at else None)


def _stamp(bundle: Path) -> str:
    """Identifies a trained bundle (its manifest's checksum list)."""
    import hashlib

    return hashlib.sha256((bundle / "bundle.json").read_bytes()).hexdigest()[:16]


def fetch_lists(url: str, users: list[Any], k: int) -> dict[int, list[int]]:
    """Each user's top-k from a model server (KServe V1), as the router would get it."""
    import httpx

    out: dict[int, list[int]] = {}
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as c:
        for u in users:
            r = c.post(f"/v1/models/{MODEL}:predict",
                       json={"instances": [{"user_id": u.user_id, "k": k}]})
            r.raise_for_status()
            out[u.user_id] = [int(x) for x in r.json()["predictions"][0]["items"]]
    return out


def pair_probabilities(lists: dict[str, dict[int, list[int]]], users: list[Any],
                       pair: tuple[str, str], model: Any, k: int) -> dict[str, np.ndarray]:
    from serving.replay.power import click_probability, interleave_win_probabilities

    base, cand = lists[pair[0]], lists[pair[1]]
    ab = np.array([[click_probability(base[u.user_id], u.future, model),
                    click_probability(cand[u.user_id], u.future, model)] for u in users])
    il = np.array([interleave_win_probabilities(base[u.user_id], cand[u.user_id], u.future,
                                                model, k) for u in users])
    return {"ab": ab, "interleave": il}


def simulate(probs: dict[str, np.ndarray], args: argparse.Namespace, null: bool, seed: int,
             visits: int = 1, streams: int | None = None,
             cap: int | None = None) -> dict[str, dict[str, float]]:
    """Users to decision for both tests; "correct" = the side with the higher true
    click-through (the A/B metric), by the exact probabilities."""
    from serving.replay.power import users_to_decision

    diff = float(probs["ab"][:, 1].mean() - probs["ab"][:, 0].mean())
    correct = None if null else ("candidate" if diff > 0 else "baseline")
    kw = {"streams": streams or args.streams, "cap": cap or args.cap, "alpha": args.alpha,
          "seed": seed, "visits": visits}
    out: dict[str, dict[str, float]] = {}
    for kind, minimum in (("ab", args.ab_min), ("interleave", args.il_min)):
        out[kind] = users_to_decision(kind, probs[kind], minimum=minimum, **kw).summary(correct)
    if not null and visits == 1:
        # The A/B test with its mixture prior centred on the true effect (its best case).
        out["ab_tuned"] = users_to_decision("ab", probs["ab"], minimum=args.ab_min,
                                            mixture_sd=abs(diff), **kw).summary(correct)
    return out


def fmt_n(x: float) -> str:
    return "—" if math.isinf(x) else f"{x:,.0f}"


def ratio(ab: dict[str, float], il: dict[str, float], key: str, cap: int) -> str:
    if math.isinf(il[key]):
        return "—"
    if math.isinf(ab[key]):
        return f"> {cap / il[key]:,.0f}×"
    return f"{ab[key] / il[key]:.1f}×"


def add_click_model_args(ap: argparse.ArgumentParser) -> None:
    """The click model, list length and test level (shared with replay_activity.py)."""
    ap.add_argument("--position-bias", type=float, default=1.0)
    ap.add_argument("--relevant-click", type=float, default=0.4)
    ap.add_argument("--noise-click", type=float, default=0.02)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--alpha", type=float, default=0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=40.0, help="Live visits per second.")
    add_click_model_args(ap)
    ap.add_argument("--ab-min", type=int, default=200, help="A/B: visits per variant first.")
    ap.add_argument("--il-min", type=int, default=100, help="Interleaving: won visits first.")
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--cap", type=int, default=2_000_000, help="Visits per stream at most.")
    ap.add_argument("--visits", type=int, nargs="*", default=[5, 20],
                    help="Sweep: visits per user, both tests aggregated per user.")
    ap.add_argument("--sweep-streams", type=int, default=100)
    ap.add_argument("--sweep-cap", type=int, default=1_000_000)
    ap.add_argument("--live-pair", default="ranker", help="Pair run live (prefix of a name).")
    ap.add_argument("--live-visits", type=int, default=12000)
    ap.add_argument("--no-live", action="store_true")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "marquee-replay-bench")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from serving.replay.users import ClickModel, load_users, sample_stream

    click = ClickModel(args.position_bias, args.relevant_click, args.noise_click)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    load0 = os.getloadavg()[0]
    if args.build_only:
        build(work)
        return
    # Training and the offline simulation run at the lowest CPU priority; the live servers
    # at normal priority (under a loaded machine, starved servers time out).
    subprocess.run(["nice", "-n", "19", sys.executable, __file__, "--build-only", "--work",
                    str(work)], check=True)
    bundles, holdout, _ = build(work)
    users = load_users(holdout, holdout, order="random", seed=0)
    print(f"{len(users)} users; models ready in {time.time() - t0:.0f}s", flush=True)
    live_name = next(n for n in PAIRS if n.startswith(args.live_pair))
    live_pair = PAIRS[live_name]
    procs = []
    lists: dict[str, dict[int, list[int]]] = {}
    live_results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        try:
            urls = {}
            for name in MODELS:
                if name not in live_pair and (work / f"lists-{name}.json").is_file():
                    cached = json.loads((work / f"lists-{name}.json").read_text())
                    if cached.get("k") == args.k and cached.get("bundle") == _stamp(
                            bundles[name]):
                        lists[name] = {int(u): v for u, v in cached["lists"].items()}
                        continue
                proc, urls[name] = start_server(bundles[name], home, home / f"{name}.log")
                procs.append(proc)
                lists[name] = fetch_lists(urls[name], users, args.k)
                (work / f"lists-{name}.json").write_text(json.dumps(
                    {"k": args.k, "bundle": _stamp(bundles[name]), "lists": lists[name]}))
                if name not in live_pair or args.no_live:
                    stop(proc)
                    procs.remove(proc)
            print(f"lists fetched in {time.time() - t0:.0f}s", flush=True)
            if not args.no_live:
                router, router_url = start_router(
                    {MODELS[n]["version"]: urls[n] for n in set(live_pair)}, home,
                    home / "router.log", baseline=MODELS[live_pair[0]]["version"])
                procs.append(router)
                visits = sample_stream(users, args.live_visits, seed=1)
                for strategy in ("ab", "interleave"):
                    status, report, at = live(strategy, router_url, live_pair, visits, args,
                                              home, seed=1)
                    live_results[strategy] = (status, report, at)
                    print(strategy, status.phase.value, at, status.message, flush=True)
        finally:
            for p in procs:
                stop(p)
    os.nice(19)
    offline: dict[str, dict[str, Any]] = {}
    for i, (name, pair) in enumerate(PAIRS.items()):
        t = time.time()
        probs = pair_probabilities(lists, users, pair, click, args.k)
        null = pair[0] == pair[1]
        sims = simulate(probs, args, null=null, seed=100 + i)
        sweep = {v: simulate(probs, args, null=null, seed=200 + 10 * i + v, visits=v,
                             streams=args.sweep_streams, cap=args.sweep_cap)
                 for v in args.visits}
        offline[name] = {"probs": probs, **sims, "sweep": sweep}
        print(name, f"{time.time() - t:.0f}s", json.dumps({**sims, "sweep": sweep}),
              flush=True)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                         text=True).stdout.strip()
    text = report_text(args, users, offline, live_name, live_results, rev, load0,
                       time.time() - t0)
    print(text)
    (work / "replay-results.md").write_text(text)
    if args.record:
        with open(REPO / "benchmarks" / "RESULTS.md", "a") as fh:
            fh.write(text)


def report_text(args: argparse.Namespace, users: list[Any], offline: dict[str, dict[str, Any]],
                live_name: str, live_results: dict[str, Any], rev: str, load0: float,
                wall: float) -> str:
    rows, detail = [], []
    for name, o in offline.items():
        ab_p, il_p = o["probs"]["ab"], o["probs"]["interleave"]
        cb, cc = ab_p[:, 0].mean(), ab_p[:, 1].mean()
        wc, wb = il_p[:, 0].mean(), il_p[:, 1].mean()
        null = name.startswith("A/A")
        a, i = o["ab"], o["interleave"]
        tuned = o.get("ab_tuned")
        rows.append(
            f"| {name} | {cb:.4f} → {cc:.4f} ({100 * (cc / cb - 1):+.1f}%) | "
            f"{wc:.4f} / {wb:.4f} | {fmt_n(a['median'])} / {fmt_n(a['p90'])} | "
            f"{fmt_n(i['median'])} / {fmt_n(i['p90'])} | "
            f"{'—' if null else ratio(a, i, 'median', args.cap)} | "
            f"{'—' if null or tuned is None else ratio(tuned, i, 'median', args.cap)} |")
        for label, s in (("A/B (mSPRT)", a), ("interleaving (sign test)", i),
                         ("A/B, mixture sd = true effect", tuned)):
            if s is None:
                continue
            share = "—" if null else f"{s['correct']:.0%}"
            detail.append(
                f"| {name} | {label} | {fmt_n(s['median'])} | {fmt_n(s['p90'])} | "
                f"{share} | {s['wrong']:.0%} | "
                f"{s['undecided']:.0%} |")

    sweep_rows = []
    for name, o in offline.items():
        null = name.startswith("A/A")
        cells = []
        for v, sims in o["sweep"].items():
            a, i = sims["ab"], sims["interleave"]
            extra = (f" (wrong {a['wrong']:.0%} / {i['wrong']:.0%})" if null else
                     f" → **{ratio(a, i, 'median', args.sweep_cap)}**")
            cells.append(f"{fmt_n(a['median'])} / {fmt_n(i['median'])}{extra}")
        sweep_rows.append(f"| {name} | " + " | ".join(cells) + " |")
    sweep = ""
    if sweep_rows:
        vs = list(next(iter(offline.values()))["sweep"])
        sweep = f"""
Users who come back: each arriving user makes V visits during the experiment and both tests
aggregate per user (A/B: per-user click-through, clicked visits / V, normal-mixture SPRT on
the difference of means with mixture sd 0.05; interleaving: a user counts for the side that
won more of their visits, same sequential sign test on users). Median users to decision,
A/B / interleaving → ratio ({args.sweep_streams} streams, at most {args.sweep_cap:,} users;
for A/A the share of streams deciding either way):

| pair | {" | ".join(f"V = {v}" for v in vs)} |
|---|{"---:|" * len(vs)}
{chr(10).join(sweep_rows)}
"""

    def live_row(strategy: str) -> str:
        status, report, at = live_results[strategy]
        decided = next((d.reason for d in status.decisions
                        if d.statistics.get("msprt", {}).get("reject")
                        or d.statistics.get("signTest", {}).get("reject")), status.message)
        by = report.by_variant()
        at_text = f"{at:,}" if at is not None else f"no decision in {report.requests:,}"
        ctr = ", ".join(f"{v} {d['ctr']:.3f}" for v, d in sorted(by.items()))
        return (f"| {strategy} | {status.phase.value} | "
                f"{at_text} "
                f"| {ctr} | {decided[:170]} |")

    live = ""
    if live_results:
        live = f"""
Live rollouts, pair "{live_name}" (real KServe servers, router and controller ticking every
0.5 s, autoPromote off; the same click model; {args.live_visits:,} visits at most at
{args.rate:g}/s, drawn with replacement; visits counted when the deciding tick ran):

| strategy | phase | visits served at decision | CTR by variant | decision |
|---|---|---:|---|---|
{live_row("ab")}
{live_row("interleave")}
"""
    return f"""
## Interleaving vs A/B

- command: `.venv/bin/python benchmarks/replay.py --position-bias {args.position_bias:g} --relevant-click {args.relevant_click:g} --noise-click {args.noise_click:g} --streams {args.streams} --cap {args.cap}`
- date: {date.today()}; code revision: {rev}
- machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; shared with other jobs, load average at start {load0:.1f}; {wall:.0f} s wall
- data: MovieLens-100k, per-user temporal split (last 25% of each user's ratings held out); {len(users)} held-out users; each user's top-{args.k} from the real model servers
- click model: position i (0-based) examined with probability 1/(i+1)^{args.position_bias:g}; an examined held-out item clicked with probability {args.relevant_click:g}, any other examined item with {args.noise_click:g}
- traffic: visits drawn with replacement from the held-out users, each visit a new user with one list (so per-user and per-visit metrics coincide); A/B splits visits 50/50
- tests (the controller's, alpha {args.alpha:g} for both, anytime-valid, checked after every visit): A/B = mSPRT on the clicked-visit rate (mixture sd 0.05, at least {args.ab_min} visits per variant); interleaving = team draft, sequential beta-binomial sign test on visits won (ties and visits without clicks count as no decision, at least {args.il_min} won visits)
- users to decision: {args.streams} independent streams per test and pair, at most {args.cap:,} users each; a stream that has not decided by then counts as beyond the cap in the median and 90th percentile ("—": more than half / a tenth undecided)

| pair (baseline → candidate) | A/B clicked-visit rate | interleaving P(candidate wins) / P(baseline wins) per visit | A/B users, median / p90 | interleaving users, median / p90 | A/B ÷ interleaving (median) | same, A/B with mixture sd = true effect |
|---|---|---|---:|---:|---:|---:|
{chr(10).join(rows)}

| pair | test | median users | 90th percentile | correct (the side with the higher true CTR) | wrong side | undecided within {args.cap:,} |
|---|---|---:|---:|---:|---:|---:|
{chr(10).join(detail)}
{sweep}{live}"""


if __name__ == "__main__":
    main()
