"""Serving speed: in process, and open-loop HTTP load against KServe, BentoML and a floor.

For each catalogue (MovieLens-100k's 1,682 items; synthetic 100k and 1M items) the script
trains the real recommender on the data (few epochs: speed, not quality, is measured here),
writes a real bundle, and then measures:

* in process: ``Runtime.recommend`` loaded through the real loader (bundle verified, FAISS
  index built and calibrated), top 10 from ≥ 200 candidates, p50/p99/max, and the
  approximate index's recall@200 against exact search on a sample of real users;
* over HTTP on 127.0.0.1: open-loop load at fixed rates (requests are sent on schedule,
  whether or not earlier ones have answered; latency counts from the scheduled time, so a
  slow server cannot hide queueing) against ``marquee serve --runtime kserve``, ``--runtime
  bentoml`` and the same KServe server with a constant model (the floor: the HTTP stack,
  validation, payload logging and metrics, without the model), then the saturation
  throughput of each with a closed loop of concurrent connections.

    .venv/bin/python benchmarks/serving.py                      # everything (≈ 20 min)
    .venv/bin/python benchmarks/serving.py --catalogues 100k --rates 200
    .venv/bin/python benchmarks/serving.py --serve-constant --port 8099   # the floor server

Results go to ``.marquee/bench-serving/serving.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CATALOGUES = {  # name: (users, items, events) for the synthetic ones
    "1.7k": None,  # MovieLens-100k
    "100k": (20_000, 100_000, 600_000),
    "1m": (20_000, 1_000_000, 300_000),  # few events: most items are cold, the tower embeds them
}
V1_PATH = "/v1/models/movie-recommender:predict"


# Bundles ---------------------------------------------------------------------------------------
def build_bundle(name: str, root: Path, epochs: int, ranker: bool) -> Path:
    """Train the real recommender for one catalogue and write a finalized bundle (cached)."""
    from marquee.bundle import finalize_bundle
    from recsys import Recommender

    bundle = root / f"bundle-{name}-{'rank150' if ranker else 'norank'}"
    if (bundle / "bundle.json").is_file():
        return bundle
    if CATALOGUES[name] is None:
        from recsys.data.fetch import fetch_movielens_100k
        from recsys.data.ingest import ingest

        ds = ingest(fetch_movielens_100k(root / "data"))
    else:
        from recsys.data.synth import generate

        users, items, events = CATALOGUES[name]
        ds = generate(users, items, events, seed=0)
    # The ranker has exactly the default's most trees (150, no early stopping: the online cost
    # grows with the trees); one label fold and 3,000 users' lists keep building cheap
    # (quality is not measured here).
    config = {"retrieval": {"epochs": epochs, "dim": 64, "batch_size": 2048},
              "ranker": {"enabled": ranker, "n_estimators": 150, "early_stopping_rounds": 0,
                         "folds": 1, "max_users": 3000}}
    started = time.perf_counter()
    rec = Recommender(config)
    rec.fit(ds.interactions, ds.users, ds.items)
    print(f"[{name}] fit {len(ds.items)} items in {time.perf_counter() - started:.0f}s",
          file=sys.stderr, flush=True)
    tmp = bundle.with_suffix(".tmp")
    rec.save(tmp)
    finalize_bundle(tmp, "movie-recommender", "1", training_config=config,
                    data_fingerprint=ds.fingerprint(), metrics={}, code_revision="bench")
    tmp.rename(bundle)
    return bundle


def known_users(bundle: Path, n: int, seed: int = 0) -> list[int]:
    import pyarrow.parquet as pq

    users = pq.read_table(bundle / "model" / "user_features.parquet",
                          columns=["user_id"]).column(0).to_numpy()
    rng = np.random.default_rng(seed)
    return [int(u) for u in rng.choice(users, size=n)]


def _pct(lat_ms: list[float]) -> dict[str, float]:
    a = np.asarray(lat_ms)
    return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "max_ms": round(float(a.max()), 3)}


# In process ------------------------------------------------------------------------------------
def in_process(bundle: Path, home: Path, n: int) -> dict[str, Any]:
    from marquee.settings import Settings
    from serving.runtime.loader import load_runtime
    from serving.settings import ServingSettings

    started = time.perf_counter()
    rt = load_runtime(Settings(home=home), ServingSettings(bundle_uri=str(bundle)))
    load_s = time.perf_counter() - started
    load_avg = os.getloadavg()
    users = known_users(bundle, n + 200, seed=1)
    for u in users[:200]:  # warm-up
        rt.recommend(u, 10)
    lat, cpu, stages = [], [], {"features": [], "retrieve": [], "rank": [], "rerank": []}
    fallbacks = 0
    for u in users[200:]:
        c = time.thread_time()
        t = time.perf_counter()
        rec = rt.recommend(u, 10)
        lat.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.thread_time() - c) * 1e3)
        fallbacks += rec.fallback
        for s in stages:
            if s in rec.timings_ms:
                stages[s].append(rec.timings_ms[s])
    search = []  # the serving-owned stage alone: FAISS search for ≥ 200 candidates
    for u in users[200:1200]:
        q = rt.rec.user_embedding(rt.rec.user_state(u))
        c = time.thread_time()
        rt.index.search(q, rt.candidates + 50)
        search.append((time.thread_time() - c) * 1e3)
    return {"load_seconds": round(load_s, 1), "candidates": rt.candidates,
            "load_avg": [list(load_avg), list(os.getloadavg())],  # before / after
            "index_search_cpu": _pct(search),
            "index": rt.index_report.as_dict(), **_pct(lat), "fallbacks": fallbacks,
            "cpu": _pct(cpu),  # this thread's CPU time: the cost without preemption by others
            "stage_p50_ms": {s: round(float(np.percentile(v, 50)), 3)
                             for s, v in stages.items() if v},
            "stage_p99_ms": {s: round(float(np.percentile(v, 99)), 3)
                             for s, v in stages.items() if v}}


# HTTP load -------------------------------------------------------------------------------------
class _Conn:
    """A minimal HTTP/1.1 keep-alive client connection (cheap enough to not be the bottleneck)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: "
                          f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                          + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status


def _bodies(users: list[int]) -> list[bytes]:
    return [json.dumps({"instances": [{"user_id": u, "k": 10}]}).encode() for u in users]


async def open_loop(port: int, rate: float, seconds: float, bodies: list[bytes],
                    max_conns: int = 128) -> dict[str, Any]:
    """Send at ``rate`` req/s on schedule; latency from the scheduled send time."""
    idle: list[_Conn] = []
    n = int(rate * seconds)
    lat: list[float] = []
    errors = {"n": 0}
    t0 = time.perf_counter() + 0.05
    sem = asyncio.Semaphore(max_conns)

    async def one(i: int) -> None:
        due = t0 + i / rate
        async with sem:
            conn = idle.pop() if idle else _Conn("127.0.0.1", port)
            try:
                status = await conn.post(V1_PATH, bodies[i % len(bodies)])
                if status != 200:
                    errors["n"] += 1
                idle.append(conn)
            except (OSError, asyncio.IncompleteReadError):
                errors["n"] += 1
        lat.append((time.perf_counter() - due) * 1e3)

    tasks = []
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    for c in idle:
        c.writer.close()
    return {"rate": rate, **_pct(lat), "achieved_rps": round(len(lat) / elapsed, 1),
            "errors": errors["n"]}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


async def closed_loop(port: int, conns: int, seconds: float, bodies: list[bytes],
                      server_pid: int | None = None) -> dict[str, Any]:
    """Saturation: ``conns`` connections each sending back to back.

    With ``server_pid``, also the CPU time per request of the server process and of this
    load generator: on a machine where both share the cores, the cores bound throughput at
    ``cores / (server + generator CPU per request)`` whatever the number of workers.
    """
    done = {"n": 0, "errors": 0}
    server0 = process_cpu_seconds(server_pid) if server_pid else 0.0
    client0 = time.process_time()
    stop = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        conn = _Conn("127.0.0.1", port)
        i = w
        while time.perf_counter() < stop:
            status = await conn.post(V1_PATH, bodies[i % len(bodies)])
            i += conns
            done["n"] += 1
            done["errors"] += status != 200
        conn.writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conns)))
    out = {"connections": conns, "throughput_rps": round(done["n"] /
                                                         (time.perf_counter() - started), 1),
           "errors": done["errors"]}
    if server_pid and done["n"]:
        out["server_cpu_ms_per_request"] = round(
            (process_cpu_seconds(server_pid) - server0) * 1e3 / done["n"], 3)
        out["generator_cpu_ms_per_request"] = round(
            (time.process_time() - client0) * 1e3 / done["n"], 3)
    return out


def _wait_ready(port: int, path: str, proc: subprocess.Popen, timeout: float = 900) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server on {port} not ready")


def start(kind: str, bundle: Path, home: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(MARQUEE_HOME=str(home), BENTOML_DO_NOT_TRACK="true")
    if kind == "constant":
        cmd = [sys.executable, __file__, "--serve-constant", "--port", str(port)]
    else:
        cmd = [sys.executable, "-m", "marquee.cli", "serve", "--runtime", kind, "--bundle-uri",
               str(bundle), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT)
    _wait_ready(port, "/readyz" if kind == "bentoml" else "/v1/models/movie-recommender", proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def http_bench(bundle: Path, home: Path, rates: list[float], seconds: float, conns: int,
               runtimes: list[str]) -> dict[str, Any]:
    from socket import socket

    bodies = _bodies(known_users(bundle, 5000, seed=2))
    home.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for kind in runtimes:
        with socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = start(kind, bundle, home / kind, port, home / f"{kind}.log")
        try:
            asyncio.run(open_loop(port, 50, 2, bodies))  # warm-up
            load_avg = os.getloadavg()
            res = {"open_loop": [asyncio.run(open_loop(port, r, seconds, bodies))
                                 for r in rates],
                   "saturation": asyncio.run(closed_loop(port, conns, seconds, bodies,
                                                             proc.pid))}
            res["load_avg"] = [list(load_avg), list(os.getloadavg())]  # before / after
        finally:
            stop(proc)
        out[kind] = res
        print(f"  {kind}: {res}", file=sys.stderr, flush=True)
    return out


# The floor: the same KServe server and handler with a constant model ----------------------------
class ConstantRecommender:
    """The online interface answering the same 10 items for everyone: no model work."""

    version = "constant"

    def __init__(self, n_items: int = 1000, dim: int = 8) -> None:
        self.item_ids = np.arange(1, n_items + 1, dtype=np.int64)
        self._emb = np.zeros((n_items, dim), dtype=np.float32)
        self._top = np.arange(10, dtype=np.int64)

    def item_embeddings(self) -> np.ndarray:
        return self._emb

    def user_state(self, user_id, history=None, ts=None, context=None, demographics=None):
        return None

    def seen_idx(self, state) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def features(self, state) -> dict:
        return {}

    def popular(self, state, k, exclude=None):
        return self._top[:k], np.ones(min(k, 10))


class ConstantRuntime:
    """Answers from ``popular`` without retrieval, ranking or re-ranking."""

    def __init__(self) -> None:
        from serving.runtime.index import IndexReport

        self.rec = ConstantRecommender()
        self.version = "constant"
        self.item_ids = self.rec.item_ids
        self.n_items = len(self.item_ids)
        self.candidates = 0
        self.bundle_uri = None
        self.index_report = IndexReport("none", self.n_items, 8, 0, 0.0, 1.0, 0, 0)

    def recommend(self, user_id, k=10, context=None, history=None, request_id=None, ts=None):
        from serving.runtime.runtime import Recommendation

        idx, scores = self.rec.popular(None, k)
        return Recommendation(items=self.item_ids[idx].tolist(), scores=scores.tolist(),
                              model_version=self.version, request_id=request_id or "",
                              cold_start=False, fallback=False, features={})


def serve_constant(port: int) -> None:
    argv, sys.argv = sys.argv, sys.argv[:1]
    from serving.kserve.model import RecommenderModel
    from serving.kserve.server import MarqueeModelServer

    sys.argv = argv
    from marquee.settings import Settings
    from serving.payload.sink import CloudEventPairer
    from serving.runtime.loader import open_payload_logger
    from serving.runtime.service import RecommendService
    from serving.settings import ServingSettings

    settings, serving = Settings(), ServingSettings()
    payload = open_payload_logger(settings, serving)
    model = RecommenderModel("movie-recommender", lambda: RecommendService.from_settings(
        ConstantRuntime(), serving, payload))  # type: ignore[arg-type]
    model.load()
    try:
        MarqueeModelServer(host="127.0.0.1", http_port=port,
                           pairer=CloudEventPairer(payload)).start([model])
    finally:
        payload.close()


# Main ------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg_at_start": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalogues", default="1.7k,100k,1m")
    ap.add_argument("--rates", default="100,200,400", help="open-loop req/s per runtime")
    ap.add_argument("--seconds", type=float, default=15.0, help="per open-loop rate")
    ap.add_argument("--connections", type=int, default=16, help="closed-loop saturation")
    ap.add_argument("--requests", type=int, default=3000, help="in-process requests")
    ap.add_argument("--runtimes", default="kserve,bentoml,constant")
    ap.add_argument("--http-catalogues", default="1.7k,100k,1m")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--no-ranker", action="store_true")
    ap.add_argument("--work-dir", default=str(REPO / ".marquee" / "bench-serving"))
    ap.add_argument("--out", default=str(REPO / ".marquee" / "bench-serving" / "serving.json"))
    ap.add_argument("--serve-constant", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=8099, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_constant:
        serve_constant(args.port)
        return
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as in a model server (serving settings)
    random.seed(0)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    ranker = not args.no_ranker
    try:
        import recsys.models.ranker  # noqa: F401
    except ImportError:
        print("recsys.models.ranker not available: benchmarking without the ranker",
              file=sys.stderr)
        ranker = False
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "machine": machine(), "ranker": ranker, "catalogues": {}}
    http_cats = set(args.http_catalogues.split(","))
    for name in args.catalogues.split(","):
        bundle = build_bundle(name, work, args.epochs, ranker)
        res: dict[str, Any] = {"in_process": in_process(bundle, work / f"home-{name}",
                                                         args.requests)}
        print(f"[{name}] in process: {res['in_process']}", file=sys.stderr, flush=True)
        if name in http_cats:
            res["http"] = http_bench(bundle, work / f"home-{name}",
                                     [float(r) for r in args.rates.split(",")], args.seconds,
                                     args.connections, args.runtimes.split(","))
        results["catalogues"][name] = res
        results["machine"]["load_avg_at_end"] = os.getloadavg()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))


def markdown(results: dict[str, Any]) -> str:
    lines = ["| catalogue | index | recall@200 | in-process wall p50 / p99 / max (ms) | "
             "CPU-time p50 / p99 (ms) | index search CPU p50 / p99 (ms) |",
             "|---|---|---:|---|---|---|"]
    for name, res in results["catalogues"].items():
        ip = res["in_process"]
        idx = ip["index"]
        lines.append(f"| {name} ({idx['n_items']:,} items) | {idx['kind']} "
                     f"(width {idx['search_width']}) | {idx['recall']:.3f} | "
                     f"{ip['p50_ms']} / {ip['p99_ms']} / {ip['max_ms']} | "
                     f"{ip['cpu']['p50_ms']} / {ip['cpu']['p99_ms']} | "
                     f"{ip['index_search_cpu']['p50_ms']} / {ip['index_search_cpu']['p99_ms']} |")
    lines += ["", "| catalogue | server | rate (req/s) | achieved | p50 / p99 / max (ms) | errors |",
              "|---|---|---:|---:|---|---:|"]
    for name, res in results["catalogues"].items():
        for kind, h in res.get("http", {}).items():
            for r in h["open_loop"]:
                lines.append(f"| {name} | {kind} | {r['rate']:.0f} | {r['achieved_rps']} | "
                             f"{r['p50_ms']} / {r['p99_ms']} / {r['max_ms']} | {r['errors']} |")
    lines += ["", "| catalogue | server | saturation throughput (req/s) | vs constant floor | "
              "server CPU / request (ms) | generator CPU / request (ms) | "
              f"CPU-bound ceiling on {os.cpu_count()} cores (req/s) | ceiling vs floor's |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, res in results["catalogues"].items():
        http = res.get("http", {})
        floor_sat = http.get("constant", {}).get("saturation", {})
        floor = floor_sat.get("throughput_rps")
        floor_cap = ceiling(floor_sat, results["machine"]["cpus"])
        for kind, h in http.items():
            sat = h["saturation"]
            t = sat["throughput_rps"]
            ratio = f"{t / floor:.2f}" if floor else "–"
            cap = ceiling(sat, results["machine"]["cpus"])
            cap_ratio = f"{cap / floor_cap:.2f}" if cap and floor_cap else "–"
            lines.append(f"| {name} | {kind} | {t} | {ratio} | "
                         f"{sat.get('server_cpu_ms_per_request', '–')} | "
                         f"{sat.get('generator_cpu_ms_per_request', '–')} | "
                         f"{round(cap) if cap else '–'} | {cap_ratio} |")
    return "\n".join(lines)


def ceiling(saturation: dict[str, Any], cores: int) -> float | None:
    """Requests a second the cores allow when server and generator share them, CPU-bound."""
    per = (saturation.get("server_cpu_ms_per_request", 0)
           + saturation.get("generator_cpu_ms_per_request", 0))
    return cores * 1e3 / per if per else None


if __name__ == "__main__":
    main()
