"""Training at scale: time and peak memory on the 1M-user synthetic set; DDP against one process.

    .venv/bin/python benchmarks/scale.py scale            # 1M users × 100k items × 20M events
    .venv/bin/python benchmarks/scale.py scale --users 20000 --items 5000 --events 400000
    .venv/bin/python benchmarks/scale.py ddp              # MovieLens-100k: 1 process vs torchrun 2
    .venv/bin/python benchmarks/scale.py ddp --data synth # the same on the 1M set
    add --record to append to benchmarks/RESULTS.md ("## Training at scale")

Training runs in a child process (``python -m recsys.train_dist`` or ``torchrun
--nproc_per_node 2 -m recsys.train_dist``), so its peak RSS is its own: the generator and this
script are not counted. Every run holds out each user's last 25% of events and scores a
seeded sample of those users (``--eval-users``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from results_file import append_to_section  # the script's own folder

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## Training at scale"

#: The configuration of the 1M run: one epoch (batch 1024: the b×b softmax makes larger
#: batches slower per example on CPU), a ranker trained on 20k users.
SCALE_CONFIG: dict[str, Any] = {
    "retrieval": {"epochs": 1, "history_len": 50},
    "ranker": {"n_candidates": 100, "folds": 1, "max_users": 20_000, "n_estimators": 200},
}


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (f"{cores} cores, {mem:.0f} GiB RAM, {platform.machine()}, "
            f"Python {platform.python_version()}")


def revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def synth_dir(root: Path, users: int, items: int, events: int, seed: int) -> Path:
    """The synthetic dataset as Parquet, generated once and cached."""
    from recsys.data.files import has_tables, write_dataset
    from recsys.data.synth import generate

    out = root / f"synth-{users}-{items}-{events}-{seed}"
    if not has_tables(out):
        t0 = time.perf_counter()
        write_dataset(generate(users, items, events, seed=seed, progress=True), out)
        print(f"generated {out} in {time.perf_counter() - t0:.0f}s", flush=True)
    return out


def movielens_dir(root: Path) -> Path:
    from recsys.data.fetch import fetch_movielens_100k
    from recsys.data.files import has_tables, write_dataset
    from recsys.data.ingest import ingest

    out = root / "movielens-100k"
    if not has_tables(out):
        write_dataset(ingest(fetch_movielens_100k(REPO / ".marquee" / "data" / "cache")), out)
    return out


def train(data: Path, out: Path, config: dict[str, Any], procs: int, eval_users: int,
          threads: int = 1) -> dict[str, Any]:
    """One training run in child processes; its metrics.json plus wall time and peak RSS."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cfg_path = out.parent / f"{out.name}.config.json"
    cfg_path.write_text(json.dumps(config))
    args = ["-m", "recsys.train_dist", "--data", str(data), "--out", str(out), "--config",
            str(cfg_path), "--holdout", "temporal", "--eval-users", str(eval_users),
            "--threads", str(threads)]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(procs), *args]
    else:
        cmd = [sys.executable, *args]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.update(wall_seconds=round(time.perf_counter() - t0, 1),
                   cpu_seconds=round(after.ru_utime + after.ru_stime - before.ru_utime
                                     - before.ru_stime, 1),
                   load=(round(load0, 1), round(os.getloadavg()[0], 1)), procs=procs,
                   bundle_mib=round(sum(f.stat().st_size for f in out.rglob("*")
                                        if f.is_file()) / 2**20, 1))
    return metrics


def _row(name: str, m: dict[str, Any]) -> str:
    t = m.get("test.full") or m.get("test.retrieval", {})
    r = m.get("test.retrieval", {})
    return (f"| {name} | {m['procs']} | {m['fit_seconds']:.0f} | {m['wall_seconds']:.0f} | "
            f"{m['cpu_seconds']:.0f} | {max(m['peak_rss_gib_per_process']):.2f} | "
            f"{r.get('ndcg_at_10', float('nan')):.4f} | {t.get('ndcg_at_10', float('nan')):.4f} "
            f"| {t.get('recall_at_10', float('nan')):.4f} | {m['load'][0]} → {m['load'][1]} |")


HEADER = ("| run | processes | fit (s) | wall incl. load+eval (s) | CPU (s) | peak RSS per "
          "process (GiB) | NDCG@10 retrieval | NDCG@10 full | Recall@10 full | load avg |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")


def record(text: str) -> None:
    append_to_section(SECTION, text, RESULTS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["scale", "ddp"])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--data", choices=["movielens", "synth"], default="movielens",
                        help="ddp mode: which data")
    parser.add_argument("--seeds", type=int, default=3, help="ddp mode: seeds per setting")
    parser.add_argument("--eval-users", type=int, default=20_000)
    parser.add_argument("--root", type=Path, default=REPO / ".marquee" / "bench")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).strftime("%Y-%m-%d")
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"- command: `.venv/bin/python benchmarks/scale.py {argv_s}`",
             f"- date: {started}; code revision: {revision()}",
             f"- machine: {machine()}; shared with other jobs (load average per run below); "
             "one torch thread per process"]
    results: dict[str, Any] = {}
    if args.mode == "scale":
        data = synth_dir(args.root, args.users, args.items, args.events, seed=0)
        m = train(data, args.root / "scale-model", SCALE_CONFIG, 1, args.eval_users)
        results["scale"] = m
        text = [f"### {args.users:,} users × {args.items:,} items × {args.events:,} events "
                "(synthetic, seed 0), one process", "", *lines,
                f"- configuration: `{json.dumps(SCALE_CONFIG)}` (everything else default)",
                f"- {m['train_events']:,} training events (each user's last 25% held out); "
                f"test scored on {m.get('eval_users', 0):,} users; bundle "
                f"{m['bundle_mib']} MiB; ranker {json.dumps(m.get('ranker', {}))}", "",
                HEADER, _row("scale", m)]
    else:
        data = (movielens_dir(args.root) if args.data == "movielens"
                else synth_dir(args.root, args.users, args.items, args.events, seed=0))
        config: dict[str, Any] = SCALE_CONFIG if args.data == "synth" else {}
        rows = []
        for procs in (1, 2):
            for seed in range(args.seeds):
                m = train(data, args.root / f"ddp-{args.data}-{procs}-{seed}",
                          {**config, "seed": 42 + seed}, procs, args.eval_users)
                results[f"{procs}-{seed}"] = m
                rows.append(_row(f"seed {42 + seed}", m))
                print(rows[-1], flush=True)
        summary = []
        for procs in (1, 2):
            vals = [results[f"{procs}-{s}"].get("test.full", results[f"{procs}-{s}"].get(
                "test.retrieval"))["ndcg_at_10"] for s in range(args.seeds)]
            ret = [results[f"{procs}-{s}"]["test.retrieval"]["ndcg_at_10"]
                   for s in range(args.seeds)]
            fit = [results[f"{procs}-{s}"]["fit_seconds"] for s in range(args.seeds)]
            summary.append(f"- {procs} process{'es' if procs > 1 else ''}: NDCG@10 full "
                           f"{_mean(vals):.4f} ± {_sd(vals):.4f}, retrieval {_mean(ret):.4f} "
                           f"± {_sd(ret):.4f} (mean ± sd over {args.seeds} seeds); fit "
                           f"{_mean(fit):.0f} s")
        name = "MovieLens-100k" if args.data == "movielens" else "the synthetic set"
        text = [f"### DDP: `torchrun --nproc_per_node 2` (gloo) against one process, {name}",
                "", *lines,
                f"- configuration: {'defaults' if not config else json.dumps(config)}; "
                "per-user temporal holdout (last 25%); same seeds in both settings", "",
                HEADER, *rows, "", *summary]
    out = "\n".join(text)
    (args.root / f"{args.mode}-{args.data}.json").write_text(json.dumps(results, indent=2))
    print(out)
    if args.record:
        record(out)
    return 0


def _mean(x: list[float]) -> float:
    return sum(x) / len(x)


def _sd(x: list[float]) -> float:
    m = _mean(x)
    return (sum((v - m) ** 2 for v in x) / max(len(x) - 1, 1)) ** 0.5


if __name__ == "__main__":
    raise SystemExit(main())
