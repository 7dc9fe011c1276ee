"""``marquee serve`` refuses options it cannot honour at once, in one line naming them, before
any bundle is fetched or loaded (helper D, session 21).

Before: ``--enable-grpc`` with the bentoml or payload-sink runtime, and a model reference with
the payload sink, were ignored without a word (a server without what was asked for); a host
that is no address of this machine was refused as "port=…", after the model had loaded; the
payload sink on a taken port ended with uvicorn's line and exit 3; ``--model-version`` with
``--alias`` read "invalid settings: value: Value error, …".
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

MARQUEE = str(Path(sys.executable).parent / "marquee")


@pytest.fixture()
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        yield taken.getsockname()[1]


def _serve(tmp_path: Path, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """``marquee serve`` expected to exit; a server that starts instead is stopped and fails."""
    import os

    from monitoring.loop.procs import stop_group

    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(MARQUEE_HOME=str(tmp_path / "home"), BENTOML_DO_NOT_TRACK="true")
    proc = subprocess.Popen([MARQUEE, "serve", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        out, err = proc.communicate()
        pytest.fail(f"marquee serve {' '.join(args)} started a server: {(out + err)[-1500:]}")
    assert "Traceback" not in out + err, err[-2000:]
    return proc.returncode, out, err


def _last(err: str) -> str:
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(("args", "line"), [
    (("--model-version", "1", "--alias", "production"),
     "Error: Invalid value for --alias: give only one of --model-version, --alias, "
     "--bundle-uri (got --model-version and --alias)"),
    (("--alias", "production", "--bundle-uri", "/nowhere"),
     "Error: Invalid value for --bundle-uri: give only one of --model-version, --alias, "
     "--bundle-uri (got --alias and --bundle-uri)"),
    (("--runtime", "bentoml", "--enable-grpc", "--bundle-uri", "/nowhere"),
     "Error: Invalid value for --enable-grpc: only the kserve runtime serves gRPC "
     "(runtime bentoml)"),
])
def test_options_that_do_not_go_together_are_usage_errors(tmp_path: Path, args: tuple[str, ...],
                                                          line: str) -> None:
    code, _, err = _serve(tmp_path, *args)
    assert code == 2, err[-2000:]
    assert _last(err) == line


@pytest.mark.parametrize(("args", "line"), [
    (("--enable-grpc",), "Error: Invalid value for --enable-grpc: only the kserve runtime "
                         "serves gRPC (runtime payload-sink)"),
    (("--bundle-uri", "/nowhere"), "Error: Invalid value for --bundle-uri: not used by the "
                                   "payload-sink runtime, which serves no model"),
    (("--alias", "production"), "Error: Invalid value for --alias: not used by the "
                                "payload-sink runtime, which serves no model"),
    (("--variant", "blue"), "Error: Invalid value for --variant: not used by the "
                            "payload-sink runtime, which serves no model"),
])
def test_the_payload_sink_refuses_model_options(tmp_path: Path, taken_port: int,
                                                args: tuple[str, ...], line: str) -> None:
    # on a taken port: a sink that went on would stop there instead of serving for ever
    code, _, err = _serve(tmp_path, "--runtime", "payload-sink", "--port", str(taken_port),
                          *args)
    assert code == 2, err[-2000:]
    assert _last(err) == line


def test_the_payload_sink_on_a_taken_port_is_one_error_line(tmp_path: Path,
                                                            taken_port: int) -> None:
    code, _, err = _serve(tmp_path, "--runtime", "payload-sink", "--port", str(taken_port))
    assert code == 1, err[-2000:]
    assert _last(err) == (f"error: port={taken_port}: cannot listen on 127.0.0.1:"
                          f"{taken_port}: Address already in use")


@pytest.mark.parametrize("runtime", ["kserve", "bentoml"])
@pytest.mark.parametrize("host", ["999.1.1.1", "192.0.2.77"])
def test_a_host_that_is_not_this_machines_is_named_before_a_bundle_is_read(
        tmp_path: Path, runtime: str, host: str) -> None:
    # the bundle does not exist: the host is refused before anything is fetched or loaded
    code, out, err = _serve(tmp_path, "--runtime", runtime, "--bundle-uri",
                            str(tmp_path / "nowhere"), "--host", host, "--port", "18089")
    assert code == 1, err[-2000:]
    assert _last(err).startswith(f"error: host={host!r}: cannot listen on {host}:18089: "), err
    assert "bundle" not in out + err


def test_a_taken_grpc_port_is_named_before_a_bundle_is_read(tmp_path: Path,
                                                           taken_port: int) -> None:
    import os

    from monitoring.loop.procs import stop_group

    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(MARQUEE_HOME=str(tmp_path / "home"),
               MARQUEE_SERVING_GRPC_PORT=str(taken_port))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        http_port = s.getsockname()[1]
    proc = subprocess.Popen([MARQUEE, "serve", "--runtime", "kserve", "--enable-grpc",
                             "--bundle-uri", str(tmp_path / "nowhere"),
                             "--port", str(http_port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        pytest.fail("a server started")
    assert proc.returncode == 1, err[-2000:]
    assert _last(err) == (f"error: grpc_port={taken_port}: cannot listen on 127.0.0.1:"
                          f"{taken_port}: Address already in use")
