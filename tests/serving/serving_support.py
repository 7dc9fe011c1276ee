"""Serving test support: a real bundle (tiny synthetic data, the real Recommender), built once
per test session and shared between xdist workers, and real model servers on 127.0.0.1.

Not a conftest.py: a second conftest module would shadow ``tests/conftest.py`` for
``from conftest import …``. Test modules import the fixtures from here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

N_USERS, N_ITEMS, N_EVENTS = 300, 400, 15_000


def build_bundle(root: Path, version: str = "1", seed: int = 1) -> Path:
    """Train the real recommender on tiny synthetic data and write a finalized bundle."""
    from marquee.bundle import finalize_bundle
    from recsys import Recommender
    from recsys.data.synth import generate

    ds = generate(N_USERS, N_ITEMS, N_EVENTS, seed=seed)
    config = {"seed": seed, "retrieval": {"epochs": 1, "dim": 16, "batch_size": 1024},
              "ranker": {"enabled": False}}
    rec = Recommender(config)
    rec.fit(ds.interactions, ds.users, ds.items)
    bundle = root / f"bundle-{version}"
    rec.save(bundle)
    finalize_bundle(bundle, "movie-recommender", version, training_config=config,
                    data_fingerprint=ds.fingerprint(), metrics={"ndcg_at_10": 0.0},
                    code_revision="test")
    return bundle


def bundle_with_bad_config(bundle: Path, root: Path) -> Path:
    """A copy of ``bundle`` under ``root`` whose model/config.json is not JSON, its checksums
    recomputed: it passes the bundle's checks and fails when the model loads."""
    import json
    import shutil

    from marquee.bundle import finalize_bundle

    manifest = json.loads((bundle / "bundle.json").read_text())
    bad = root / "bad-bundle"
    shutil.copytree(bundle, bad)
    (bad / "bundle.json").unlink()
    (bad / "model" / "config.json").write_text("{not json")
    finalize_bundle(bad, manifest["name"], manifest["version"],
                    training_config=manifest.get("training_config") or {},
                    data_fingerprint=manifest.get("data_fingerprint") or "",
                    metrics={"ndcg_at_10": 0.0}, code_revision="test")
    return bad


def shared_bundle(tmp_path_factory: pytest.TempPathFactory, version: str = "1") -> Path:
    """The bundle of this test session, built by whichever worker asks first."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # workers' temp dirs share this session's parent
        base = base.parent
    root = base / "marquee-serving-bundles"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        bundle = root / f"bundle-{version}"
        if not (bundle / "bundle.json").is_file():
            build_bundle(root, version)
    return bundle


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_bundle(tmp_path_factory)


MODEL = "movie-recommender"
V1_PATH = f"/v1/models/{MODEL}:predict"
V2_PATH = f"/v2/models/{MODEL}/infer"


def serving_env(home: Path, **serving: object) -> dict[str, str]:
    """Environment of a model server process: its own MARQUEE_HOME and MARQUEE_SERVING_*."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MARQUEE_", "PROMETHEUS_MULTIPROC"))}
    env.update({"MARQUEE_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true",
                "PYTHONUNBUFFERED": "1"})
    for key, value in serving.items():
        env[f"MARQUEE_SERVING_{key.upper()}"] = str(value).lower() if isinstance(value, bool) \
            else str(value)
    return env


def start_server(runtime: str, bundle: Path, home: Path, port: int, log_path: Path,
                 grpc_port: int | None = None, **serving: object):
    """``marquee serve`` in a subprocess on 127.0.0.1, polled until it answers (and, with
    ``grpc_port``, KServe's gRPC server is on too and listening there)."""
    import subprocess
    import sys

    import httpx
    import psutil

    from conftest import wait_until

    cmd = [sys.executable, "-m", "marquee.cli", "serve", "--runtime", runtime,
           "--bundle-uri", str(bundle), "--host", "127.0.0.1", "--port", str(port)]
    if grpc_port is not None:
        cmd.append("--enable-grpc")
        serving["grpc_port"] = grpc_port
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, env=serving_env(home, **serving), stdout=log,
                            stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
    ready = f"http://127.0.0.1:{port}" + ("/readyz" if runtime == "bentoml"
                                          else f"/v1/models/{MODEL}")

    def listening() -> bool:
        return grpc_port is None or grpc_port in {
            c.laddr.port for c in psutil.Process(proc.pid).connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: "
                               f"{log_path.read_text()[-2000:]}")
        return listening() and httpx.get(ready, timeout=2.0).status_code == 200

    try:
        wait_until(up, timeout=120, interval=0.2, what=f"{runtime} server ready")
    except Exception:
        from conftest import stop_process

        stop_process(proc)
        raise
    return proc


def kserve_app(bundle: Path, home: Path, **serving: object):
    """The KServe model server's ASGI app in process, with its payload logger (not started)."""
    from marquee.settings import Settings
    from serving.kserve.model import RecommenderModel
    from serving.kserve.server import MarqueeModelServer
    from serving.payload.sink import sink_pairer
    from serving.runtime.loader import build_service, open_payload_logger
    from serving.settings import ServingSettings

    settings = Settings(home=home)
    ss = ServingSettings(bundle_uri=str(bundle), **serving)
    payload = open_payload_logger(settings, ss)
    model = RecommenderModel(MODEL, lambda: build_service(settings, ss, payload))
    model.load()
    server = MarqueeModelServer(host="127.0.0.1", http_port=0, max_body_bytes=ss.max_body_bytes,
                                pairer=sink_pairer(ss, payload),  # as serving.kserve.run
                                sink_token=ss.sink_token)
    server.register_model(model)
    return server.create_application(), model, payload


@pytest.fixture(scope="module")
def clients(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Both runtimes in process on the shared bundle, payload logging off: KServe's app and
    BentoML's ASGI app, as ``{"kserve": TestClient, "bentoml": TestClient}``; for tests that
    send one request to both and compare the answers."""
    from starlette.testclient import TestClient

    from serving.bento.service import MovieRecommender

    app, _, _ = kserve_app(bundle_dir, tmp_path_factory.mktemp("kserve"),
                           payload_log_enabled=False)
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("MARQUEE_")]:
            mp.delenv(key)
        mp.setenv("MARQUEE_HOME", str(tmp_path_factory.mktemp("bento")))
        mp.setenv("MARQUEE_SERVING_BUNDLE_URI", str(bundle_dir))
        mp.setenv("MARQUEE_SERVING_PAYLOAD_LOG_ENABLED", "false")
        with TestClient(app, raise_server_exceptions=False) as kserve, \
                TestClient(MovieRecommender.to_asgi(), raise_server_exceptions=False) as bento:
            yield {"kserve": kserve, "bentoml": bento}
