"""Time synthetic data generation at scale and record peak memory.

    .venv/bin/python benchmarks/synth.py                      # 1M users × 100k items × 20M events
    .venv/bin/python benchmarks/synth.py --users 10000 --items 2000 --events 200000
    .venv/bin/python benchmarks/synth.py --record             # append to benchmarks/RESULTS.md

Stages timed: generation, validation (``check_dataset``), fingerprint, Parquet write. Peak RSS is
the process high-water mark (``resource.getrusage``) after each stage.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## Synthetic data generation"


@dataclass
class Stage:
    name: str
    seconds: float
    cpu_seconds: float
    peak_rss_gib: float


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def _machine() -> str:
    cores = len(__import__("os").sched_getaffinity(0))
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024**2:.0f} GiB"
    except OSError:
        pass
    return f"{cores} cores, {mem} RAM, {platform.processor() or platform.machine()}, " \
           f"Python {platform.python_version()}"


def _revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=HERE, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run(users: int, items: int, events: int, seed: int, groups: int) -> list[Stage]:
    from rich.console import Console

    from recsys.data.files import write_dataset
    from recsys.data.synth import generate
    from recsys.data.validate import check_dataset

    console = Console(stderr=True)
    stages: list[Stage] = []

    def timed(name: str, fn):  # noqa: ANN001, ANN202 - tiny local helper
        console.log(f"{name} …")
        t0, c0 = time.perf_counter(), _cpu_seconds()
        out = fn()
        stages.append(Stage(name, time.perf_counter() - t0, _cpu_seconds() - c0,
                            _peak_rss_gib()))
        console.log(f"{name}: {stages[-1].seconds:.1f} s wall, {stages[-1].cpu_seconds:.1f} s "
                    f"CPU, peak RSS {stages[-1].peak_rss_gib:.2f} GiB")
        return out

    ds = timed("generate", lambda: generate(users, items, events, seed=seed, n_groups=groups,
                                            progress=True))
    findings = timed("validate (check_dataset)", lambda: check_dataset(ds))
    if findings:
        raise SystemExit(f"generated data is invalid: {findings}")
    timed("fingerprint", ds.fingerprint)
    tmp = Path(tempfile.mkdtemp(prefix="marquee-synth-bench-"))
    try:
        paths = timed("write Parquet (zstd)", lambda: write_dataset(ds, tmp))
        size = sum(p.stat().st_size for p in paths.values()) / 1024**2
        console.log(f"Parquet size: {size:.0f} MiB")
        stages.append(Stage(f"Parquet size {size:.0f} MiB", 0.0, 0.0, _peak_rss_gib()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stages


def markdown(args: argparse.Namespace, stages: list[Stage]) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        f"### {args.users:,} users × {args.items:,} items × {args.events:,} events "
        f"(seed {args.seed}, {args.groups} groups)",
        "",
        f"- command: `.venv/bin/python benchmarks/synth.py --users {args.users} "
        f"--items {args.items} --events {args.events} --seed {args.seed}`",
        f"- date: {date}; code revision: {_revision()}",
        f"- machine: {_machine()}; shared with other jobs, load average at start "
        f"{args.load_at_start:.1f}",
        "",
        "| stage | wall time (s) | CPU time (s) | peak RSS so far (GiB) |",
        "|---|---:|---:|---:|",
    ]
    for stage in stages:
        if stage.name.startswith("Parquet size"):
            continue
        lines.append(f"| {stage.name} | {stage.seconds:.1f} | {stage.cpu_seconds:.1f} | "
                     f"{stage.peak_rss_gib:.2f} |")
    sizes = [s.name for s in stages if s.name.startswith("Parquet size")]
    if sizes:
        lines += ["", f"- {sizes[0].replace('Parquet size', 'Parquet size on disk:')}"]
    return "\n".join(lines) + "\n"


def record(text: str) -> None:
    """Append ``text`` to RESULTS.md, under this benchmark's section (created once)."""
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n")
    existing = RESULTS.read_text()
    with RESULTS.open("a") as fh:
        if not existing.endswith("\n"):
            fh.write("\n")
        if SECTION not in existing:
            fh.write(f"\n{SECTION}\n\n"
                     "`recsys.data.synth.generate` (planted taste groups, Zipf popularity, "
                     "weekly/daily seasonality), then the contract checks, the fingerprint and a "
                     "Parquet write of the same data.\n")
        fh.write("\n" + text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--record", action="store_true", help=f"append to {RESULTS}")
    args = parser.parse_args(argv)
    args.load_at_start = __import__("os").getloadavg()[0]
    sys.path.insert(0, str(HERE.parent))
    stages = run(args.users, args.items, args.events, args.seed, args.groups)
    text = markdown(args, stages)
    print(text)
    if args.record:
        record(text)


if __name__ == "__main__":
    main()
