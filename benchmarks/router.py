"""Router overhead and shadow cost, measured with real processes on 127.0.0.1.

    .venv/bin/python benchmarks/router.py [--requests 3000] [--bundle DIR] [--record]

1. Overhead: the same closed-loop client (one request at a time, keep-alive) calls the model
   server directly (``POST /v1/models/movie-recommender:predict``) and through the router
   (``POST /recommend``), in alternating blocks so that drift on a shared machine hits both.
   Overhead = router quantile − direct quantile (p50, p99).
   The same measurement against a fixed-answer upstream (a bare uvicorn app returning a
   canned prediction) isolates the router hop from the model server's own CPU use, which on
   a 2-core machine competes with the router for the same cores.
2. Shadow: user latency with mirroring off and on in alternating blocks, repeated — mirrored
   to a second model server at low CPU priority (``--candidate-nice``, the one-machine
   equivalent of a shadow pod with BestEffort QoS / few cpu shares), to one at the same
   priority, and to the fixed-answer upstream (the router's own cost) — then while the
   mirrored server is killed.

Without ``--bundle`` a small bundle is trained first (real recommender, synthetic data).
``--record`` appends the figures to benchmarks/RESULTS.md under "## Router overhead".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = "movie-recommender"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def env(home: Path, **extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    e.update({"MARQUEE_HOME": str(home), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
              "MARQUEE_SERVING_PAYLOAD_LOG_ENABLED": "false", **extra})
    return e


def child_setup(niceness: int = 0, idle: bool = False, cpus: set[int] | None = None):
    """A ``preexec_fn`` for a child at low CPU priority and/or on given cores, or None.
    ``idle``: Linux ``SCHED_IDLE``, which runs only when no normal task wants the core and is
    preempted as soon as one wakes (nice 19 still takes a weighted share). ``cpus``: set
    before exec, so every thread the child starts inherits it (a pod on its own node, on one
    machine)."""
    if not niceness and not idle and not cpus:
        return None

    def apply() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if niceness:
            os.nice(niceness)
        if idle:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    return apply


def start_server(bundle: Path, home: Path, log: Path, niceness: int = 0,
                 idle: bool = False, cpus: set[int] | None = None
                 ) -> tuple[subprocess.Popen, str]:
    """A KServe model server; ``niceness`` > 0 or ``idle`` runs it at low CPU priority (like
    a BestEffort pod or one with few cpu shares: it gets what the others leave)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "marquee.cli", "serve", "--runtime", "kserve", "--bundle-uri",
         str(bundle), "--host", "127.0.0.1", "--port", str(port)],
        env=env(home), cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
        preexec_fn=child_setup(niceness, idle, cpus))
    url = f"http://127.0.0.1:{port}"
    wait(f"{url}/v1/models/{MODEL}", proc)
    return proc, url


def start_router(upstreams: dict[str, str], home: Path, log: Path, baseline: str = "1",
                 cpus: set[int] | None = None, **settings: str) -> tuple[subprocess.Popen, str]:
    """``settings``: router settings as environment, e.g. ``shadow_max_in_flight="4"``."""
    port = free_port()
    extra = {f"MARQUEE_ROUTER_{k.upper()}": v for k, v in settings.items()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "marquee.cli", "router", "--host", "127.0.0.1", "--port",
         str(port), "--baseline", baseline, "--log-level", "warning", "--routing-file", "none"],
        env=env(home, MARQUEE_ROUTER_UPSTREAMS=json.dumps(upstreams), **extra), cwd=REPO,
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, preexec_fn=child_setup(cpus=cpus))
    url = f"http://127.0.0.1:{port}"
    wait(f"{url}/readyz", proc)
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def build_bundle(root: Path) -> Path:
    import torch

    from marquee.bundle import finalize_bundle
    from recsys import Recommender
    from recsys.data.synth import generate

    torch.set_num_threads(1)
    ds = generate(2000, 400, 40_000, seed=3, affinity=0.95, zipf_exponent=0.3)
    config = {"seed": 1, "retrieval": {"epochs": 2, "dim": 16, "batch_size": 256},
              "ranker": {"enabled": False}}
    rec = Recommender(config)
    rec.fit(ds.interactions, ds.users, ds.items, progress=False)
    bundle = root / "bundle"
    rec.save(bundle)
    finalize_bundle(bundle, MODEL, "1", training_config=config,
                    data_fingerprint=ds.fingerprint(), metrics={}, code_revision="bench")
    return bundle


def q(xs: list[float], p: float) -> float:
    return float(np.quantile(np.asarray(xs), p))


def overhead(server: str, router: str, n: int, block: int = 100) -> dict[str, float]:
    direct: list[float] = []
    routed: list[float] = []
    users = np.random.default_rng(0).integers(1, 2001, size=n)
    with httpx.Client(timeout=10, trust_env=False) as c:
        def call_direct(u: int) -> None:
            t = time.perf_counter()
            r = c.post(f"{server}/v1/models/{MODEL}:predict",
                       json={"instances": [{"user_id": int(u), "k": 10}]})
            direct.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()

        def call_router(u: int) -> None:
            t = time.perf_counter()
            r = c.post(f"{router}/recommend", json={"user_id": int(u), "k": 10})
            routed.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()

        for u in users[:200]:  # warm-up: connections, caches, JIT-free but lazy paths
            call_direct(u)
            call_router(u)
        direct.clear()
        routed.clear()
        for start in range(0, n, block):
            chunk = users[start:start + block]
            first, second = (call_direct, call_router) if (start // block) % 2 == 0 else (
                call_router, call_direct)
            for u in chunk:
                first(u)
            for u in chunk:
                second(u)
    return {"direct_p50": q(direct, 0.5), "direct_p99": q(direct, 0.99),
            "router_p50": q(routed, 0.5), "router_p99": q(routed, 0.99),
            "overhead_p50": q(routed, 0.5) - q(direct, 0.5),
            "overhead_p99": q(routed, 0.99) - q(direct, 0.99), "n": float(len(direct))}


def shadow_cost(router: str, candidate_url: str, n: int, block: int = 100,
                sample_rate: float = 1.0) -> dict[str, float]:
    """User latency with mirroring off and on, in alternating blocks (closed loop); ``n``
    requests per mode."""
    single = {"strategy": "single", "baseline": {"version": "1"}}
    mirror = {"strategy": "shadow", "baseline": {"version": "1"},
              "candidate": {"version": "2", "url": candidate_url},
              "shadow_sample_rate": sample_rate}
    lat: dict[str, list[float]] = {"off": [], "on": []}
    errors = 0
    users = np.random.default_rng(1).integers(1, 2001, size=2 * n)
    since = time.time() - 1
    with httpx.Client(timeout=10, trust_env=False) as c:
        for i, start in enumerate(range(0, 2 * n, block)):
            mode = "off" if i % 2 == 0 else "on"
            c.put(f"{router}/admin/routing", json=single if mode == "off" else mirror
                  ).raise_for_status()
            for u in users[start:start + block]:
                t = time.perf_counter()
                r = c.post(f"{router}/recommend", json={"user_id": int(u), "k": 10})
                lat[mode].append((time.perf_counter() - t) * 1000)
                errors += r.status_code != 200
        time.sleep(0.5)  # let the last mirrors finish before counting them
        sh = c.get(f"{router}/admin/stats", params={"since": since}).json()["shadow"]
    return {"off_p50": q(lat["off"], 0.5), "off_p99": q(lat["off"], 0.99),
            "on_p50": q(lat["on"], 0.5), "on_p99": q(lat["on"], 0.99),
            "p99_change": q(lat["on"], 0.99) / q(lat["off"], 0.99) - 1,
            "errors": float(errors), "mirrored": float(sh["mirrored"]),
            "dropped": float(sh["dropped"]), "mirror_errors": float(sh["errors"]),
            "load": os.getloadavg()[0]}


def shadow_killed(router: str, candidate: subprocess.Popen, candidate_url: str,
                  n: int) -> dict[str, float]:
    since = time.time() - 1
    """Mirroring on while the candidate's server is killed a third of the way in."""
    mirror = {"strategy": "shadow", "baseline": {"version": "1"},
              "candidate": {"version": "2", "url": candidate_url}, "shadow_sample_rate": 1.0}
    httpx.put(f"{router}/admin/routing", json=mirror).raise_for_status()
    lat: list[float] = []
    errors = 0
    with httpx.Client(timeout=10, trust_env=False) as c:
        for i in range(n):
            if i == n // 3:
                candidate.kill()
            t = time.perf_counter()
            r = c.post(f"{router}/recommend", json={"user_id": i % 2000 + 1, "k": 10})
            lat.append((time.perf_counter() - t) * 1000)
            errors += r.status_code != 200
    time.sleep(0.5)
    stats = httpx.get(f"{router}/admin/stats", params={"since": since}).json()["shadow"]
    return {"p50": q(lat, 0.5), "p99": q(lat, 0.99), "errors": float(errors),
            "mirrors": float(stats["mirrored"]), "mirror_errors": float(stats["errors"])}


_FIXED = b'{"predictions": [{"user_id": 1, "items": [1,2,3,4,5,6,7,8,9,10], ' \
         b'"scores": [0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1,0.0], "model_version": "1", ' \
         b'"request_id": "fixed", "cold_start": false, "fallback": false}]}'


def serve_fixed(port: int) -> None:
    """A bare uvicorn app that answers every request with the same prediction."""
    import uvicorn

    async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(_FIXED)).encode())]})
        await send({"type": "http.response.body", "body": _FIXED})

    uvicorn.run(app, host="127.0.0.1", port=port, loop="auto", http="auto",
                log_level="warning", access_log=False)


def start_fixed(log: Path, cpus: set[int] | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-fixed", str(port)], cwd=REPO,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            preexec_fn=child_setup(cpus=cpus))
    url = f"http://127.0.0.1:{port}"
    wait(f"{url}/", proc)
    return proc, url


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-fixed":
        serve_fixed(int(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--shadow-requests", type=int, default=3000,
                    help="Requests per mode (off, on) in each shadow run.")
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--repeats", type=int, default=3, help="Runs of each measurement.")
    ap.add_argument("--candidate-nice", type=int, default=19,
                    help="CPU niceness of the shadow candidate's model server.")
    ap.add_argument("--candidate-sched", choices=("normal", "idle"), default="normal",
                    help="Linux scheduling policy of the low-priority candidate (idle: "
                    "SCHED_IDLE, runs only on a core nobody else wants).")
    ap.add_argument("--pin", action="store_true",
                    help="Core 0: this client, the routers, the baseline server and the fixed "
                    "upstream; core 1: the shadow candidates' servers (the chart places "
                    "shadow pods on other nodes than serving pods). Default: no pinning.")
    ap.add_argument("--shadow-max-in-flight", type=int, default=8)
    ap.add_argument("--shadow-sample-rate", type=float, default=1.0,
                    help="Share of user requests mirrored to the shadow candidate.")
    ap.add_argument("--shadow-modes", default="inline,worker",
                    help="Router shadow modes to measure, comma-separated (worker: mirrors in "
                    "the router's shadow worker process; inline: tasks on its event loop).")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    modes = [m.strip() for m in args.shadow_modes.split(",") if m.strip()]
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        t = time.time()
        bundle = args.bundle or build_bundle(home)
        print(f"bundle ready in {time.time() - t:.0f}s", flush=True)
        serving_cpus, shadow_cpus = ({0}, {1}) if args.pin and (os.cpu_count() or 1) > 1 \
            else (None, None)
        if serving_cpus:
            os.sched_setaffinity(0, serving_cpus)  # the client, after the bundle's training
        procs = []
        try:
            server, server_url = start_server(bundle, home, home / "server.log",
                                              cpus=serving_cpus)
            procs.append(server)
            cand, cand_url = start_server(bundle, home, home / "candidate.log",
                                          niceness=args.candidate_nice,
                                          idle=args.candidate_sched == "idle", cpus=shadow_cpus)
            procs.append(cand)
            peer, peer_url = start_server(bundle, home, home / "candidate-peer.log",
                                          cpus=shadow_cpus)
            procs.append(peer)
            routers: dict[str, str] = {}
            for mode in modes:
                proc, routers[mode] = start_router(
                    {"1": server_url}, home, home / f"router-{mode}.log", cpus=serving_cpus,
                    shadow_max_in_flight=str(args.shadow_max_in_flight), shadow_mode=mode)
                procs.append(proc)
            router_url = routers[modes[0]]
            fixed, fixed_url = start_fixed(home / "fixed.log", cpus=serving_cpus)
            procs.append(fixed)
            hop_router, hop_url = start_router({"1": fixed_url}, home, home / "router-hop.log",
                                               cpus=serving_cpus)
            procs.append(hop_router)
            load0 = os.getloadavg()
            runs, hops = [], []
            mirror_fixed_url = fixed_url
            if shadow_cpus:  # the control's mirror target sits with the other shadow targets
                mirror_fixed, mirror_fixed_url = start_fixed(home / "fixed-mirror.log",
                                                             cpus=shadow_cpus)
                procs.append(mirror_fixed)
            kinds = (("low", cand_url), ("peer", peer_url), ("fixed", mirror_fixed_url))
            shadows: dict[str, list[dict[str, float]]] = {
                f"{mode}/{key}": [] for mode in modes for key, _ in kinds}
            for _ in range(args.repeats):  # interleaved, so drift hits all alike
                runs.append(overhead(server_url, router_url, args.requests))
                hops.append(overhead(fixed_url, hop_url, args.requests))
                print(json.dumps({"model server": runs[-1], "hop": hops[-1]}), flush=True)
                for mode in modes:
                    for key, url in kinds:
                        shadows[f"{mode}/{key}"].append(shadow_cost(
                            routers[mode], url, args.shadow_requests,
                            sample_rate=args.shadow_sample_rate))
                        print(mode, key, json.dumps(shadows[f"{mode}/{key}"][-1]), flush=True)
            stop(peer)
            o = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
            h = {k: float(np.median([r[k] for r in hops])) for k in hops[0]}
            s_kill = shadow_killed(router_url, cand, cand_url, args.shadow_requests // 2)
            print(json.dumps({"killed": s_kill}), flush=True)
            load1 = os.getloadavg()
        finally:
            for p in procs:
                stop(p)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                         text=True).stdout.strip()

    def med(key: str, field: str) -> float:
        return float(np.median([r[field] for r in shadows[key]]))

    def shadow_row(key: str, label: str) -> str:
        rs = shadows[key]
        return (f"| {key.split('/')[0]} | {label} | {med(key, 'off_p50'):.2f} → {med(key, 'on_p50'):.2f} | "
                f"{med(key, 'off_p99'):.2f} → {med(key, 'on_p99'):.2f} | "
                f"**{100 * med(key, 'p99_change'):+.0f}%** | "
                + ", ".join(f"{100 * r['p99_change']:+.0f}%" for r in rs) + " | "
                + f"{sum(r['errors'] for r in rs):.0f} | "
                + f"{sum(r['mirrored'] for r in rs):.0f} / {sum(r['dropped'] for r in rs):.0f} |")

    def per_run(key: str) -> str:
        return "; ".join(f"{r['off_p99']:.2f} → {r['on_p99']:.2f} (load {r['load']:.1f})"
                         for r in shadows[key])

    where = "on core 1, the serving path on core 0" if serving_cpus else "same machine"
    labels = {"low": f"a second real model server at low CPU priority (nice "
                     f"{args.candidate_nice}), {where}",
              "peer": f"a second real model server at the same priority, {where}",
              "fixed": "the fixed-answer upstream (the router's own mirroring work)"}
    rows = "\n".join(shadow_row(f"{mode}/{key}", labels[key]) for mode in modes
                     for key in labels)
    runs_text = "; ".join(f"{key}: {per_run(key)}" for key in shadows)
    text = f"""
## Router overhead

- command: `.venv/bin/python benchmarks/router.py --requests {args.requests} --shadow-requests {args.shadow_requests} --repeats {args.repeats} --candidate-nice {args.candidate_nice} --shadow-max-in-flight {args.shadow_max_in_flight} --shadow-sample-rate {args.shadow_sample_rate} --shadow-modes {",".join(modes)}{" --candidate-sched idle" if args.candidate_sched == "idle" else ""}{" --pin" if serving_cpus else ""}`
- date: {date.today()}; code revision: {rev}
- machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; shared with other jobs; load average (1/5/15 min) {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f} when the servers were up, {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f} at the end ({load_start[0]:.1f} before start)
- setup: real KServe model server (`marquee serve`, small two-tower bundle), router (`marquee router`: uvloop + httptools server, its keep-alive HTTP/1.1 upstream pool, exposure logs on), one closed-loop client with keep-alive; direct and routed calls in alternating blocks of 100

| path | p50 (ms) | p99 (ms) |
|---|---:|---:|
| model server directly | {o['direct_p50']:.2f} | {o['direct_p99']:.2f} |
| through the router | {o['router_p50']:.2f} | {o['router_p99']:.2f} |
| **router overhead** | **{o['overhead_p50']:.2f}** | **{o['overhead_p99']:.2f}** |

(medians of {args.repeats} runs of {args.requests} requests per path; per run, overhead p50/p99 ms:
{"; ".join(f"{r['overhead_p50']:.2f}/{r['overhead_p99']:.2f}" for r in runs)}.)

The router hop alone (same client and router, upstream = a bare uvicorn app with a canned answer):

| path | p50 (ms) | p99 (ms) |
|---|---:|---:|
| fixed upstream directly | {h['direct_p50']:.2f} | {h['direct_p99']:.2f} |
| through the router | {h['router_p50']:.2f} | {h['router_p99']:.2f} |
| **router hop** | **{h['overhead_p50']:.2f}** | **{h['overhead_p99']:.2f}** |

(per run: {"; ".join(f"{r['overhead_p50']:.2f}/{r['overhead_p99']:.2f}" for r in hops)}.)

### Shadow

The same closed-loop client through the router, mirroring off and on in alternating blocks of
100 requests, {args.shadow_requests} requests per mode in each of {args.repeats} runs, a
share {args.shadow_sample_rate} of requests mirrored (the router sends a mirror only after the user's response is
written, never waits for it, and drops mirrors beyond {args.shadow_max_in_flight} in flight,
counted in `marquee_router_shadow_dropped_total`). Shadow modes: `worker` = mirrors handed to
the router's shadow worker process (nice +10 to the router), `inline` = mirrors as tasks on the
router's event loop. Every mode and candidate was measured in turn within each run.

| shadow mode | mirror goes to | user p50 off → on (ms) | user p99 off → on (ms) | **p99 change (median)** | p99 change per run | user-visible errors | mirrors sent / dropped |
|---|---|---:|---:|---:|---|---:|---:|
{rows}

(user p99 off → on per run, ms — {runs_text}.)

Candidate server (low priority, shadow mode {modes[0]}) killed a third of the way through {args.shadow_requests // 2} mirrored requests: user p50 {s_kill['p50']:.2f} ms, p99 {s_kill['p99']:.2f} ms, **{s_kill['errors']:.0f} user-visible errors**; mirrors {s_kill['mirrors']:.0f}, {s_kill['mirror_errors']:.0f} failed.
"""
    print(text)
    out = Path(tempfile.gettempdir()) / "marquee-router-results.md"
    out.write_text(text)
    if args.record:
        with open(REPO / "benchmarks" / "RESULTS.md", "a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
