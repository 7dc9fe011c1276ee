"""A model server's start-up and its log, on both runtimes, through real ``marquee serve``
processes on 127.0.0.1 (helper R, session 20).

* a port already in use is one ``error:`` line and exit 1 before a server starts (KServe
  exited 3 after uvicorn's start-up lines; BentoML printed a 50-line traceback);
* a BentoML worker that cannot load its model ends the server with a non-zero exit (BentoML
  restarted the worker for ever: never ready, never exiting, hundreds of traceback lines);
* each start logs one line naming the model version, the bundle and the bind address (neither
  runtime logged the version or the bundle: Marquee's INFO lines went nowhere).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from serving_support import V1_PATH, bundle_dir, serving_env, start_server  # noqa: E402, F401

pytestmark = pytest.mark.integration

MARQUEE = str(Path(sys.executable).parent / "marquee")


def _serve(runtime: str, bundle: Path, home: Path, port: int, timeout: float = 90,
           **serving: object) -> tuple[int, str, str, float]:
    """``marquee serve`` expected to exit: (exit code, stdout, stderr, seconds it ran)."""
    from monitoring.loop.procs import stop_group

    started = time.monotonic()
    proc = subprocess.Popen(
        [MARQUEE, "serve", "--runtime", runtime, "--bundle-uri", str(bundle),
         "--host", "127.0.0.1", "--port", str(port)],
        env=serving_env(home, **serving), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)  # BentoML's workers are stopped with the group
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        out, err = proc.communicate()
        pytest.fail(f"marquee serve --runtime {runtime} still running after {timeout:.0f}s: "
                    f"{(out + err)[-1500:]}")
    return proc.returncode, out, err, time.monotonic() - started


@pytest.mark.parametrize("runtime", ["kserve", "bentoml"])
def test_a_port_in_use_is_one_error_line_and_exit_1(
        runtime: str, bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, out, err, _ = _serve(runtime, bundle_dir, tmp_path / "home", port)
    assert code == 1, (code, out[-1500:], err[-1500:])
    assert err.strip().splitlines()[-1] == \
        f"error: port={port}: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert "Traceback" not in out + err, err[-1500:]
    assert "Registering model" not in out + err and "uvicorn" not in out + err  # no server


def test_a_bentoml_worker_that_cannot_load_ends_the_server(
        bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    # The bundle passes marquee serve's own check; the worker's load fails after it (here on
    # a history store URL it cannot use), as it would on any error of the worker's load.
    code, out, err, _ = _serve("bentoml", bundle_dir, tmp_path / "home", free_port(),
                               timeout=120, redis_url="notaurl")
    assert code != 0
    failed = [line for line in (out + err).splitlines() if "cannot load the model" in line]
    assert len(failed) == 1, (out + err)[-3000:]
    assert "[ERROR]" in failed[0] and "redis" in failed[0]


@pytest.mark.parametrize("runtime", ["kserve", "bentoml"])
def test_a_start_logs_one_line_with_version_bundle_and_address(
        runtime: str, bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    from conftest import stop_process

    port = free_port()
    log = tmp_path / "server.log"
    proc = start_server(runtime, bundle_dir, tmp_path / "home", port, log,
                        payload_log_enabled=False)
    stop_process(proc)
    text = log.read_text()
    lines = [line for line in text.splitlines()
             if f"movie-recommender version 1 from {bundle_dir} on http://127.0.0.1:{port}"
             in line]
    assert len(lines) == 1, text[-3000:]
    assert " INFO " in lines[0] or "[INFO]" in lines[0]


def test_kserve_info_lines_of_marquee_reach_the_log(bundle_dir: Path,  # noqa: F811
                                                   tmp_path: Path) -> None:
    """A 404 for another model is logged in one INFO line (server.py), on the real server."""
    import httpx
    from conftest import stop_process

    port = free_port()
    log = tmp_path / "server.log"
    proc = start_server("kserve", bundle_dir, tmp_path / "home", port, log,
                        payload_log_enabled=False)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/models/other:predict",
                       json={"instances": [{"user_id": 1}]}, timeout=30)
        assert r.status_code == 404
    finally:
        stop_process(proc)
    text = log.read_text()
    assert any("404 POST /v1/models/other:predict" in line for line in text.splitlines()), \
        text[-3000:]


@pytest.mark.parametrize("runtime", ["kserve", "bentoml"])
def test_sigterm_waits_at_most_the_grace_period_for_requests_in_flight(
        runtime: str, bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """``grace_period_seconds`` bounds the drain on both runtimes (BentoML ignored it and
    waited for every request, past Kubernetes' grace period and its SIGKILL)."""
    import signal
    import threading

    import httpx

    port = free_port()
    proc = start_server(runtime, bundle_dir, tmp_path / "home", port, tmp_path / "server.log",
                        fault_extra_latency_ms=40_000, grace_period_seconds=2,
                        payload_log_enabled=False)
    answers: list[object] = []

    def slow() -> None:
        try:
            answers.append(httpx.post(f"http://127.0.0.1:{port}{V1_PATH}",
                                      json={"instances": [{"user_id": 1}]},
                                      timeout=60).status_code)
        except httpx.HTTPError as exc:
            answers.append(type(exc).__name__)

    client = threading.Thread(target=slow)
    client.start()
    try:
        time.sleep(1.0)  # the request is in flight (it takes 40 s)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        client.join(timeout=60)
    assert code == 0
    assert took < 20, f"exited {took:.1f}s after SIGTERM with a 2 s grace period"
    assert answers and answers[0] != 200
