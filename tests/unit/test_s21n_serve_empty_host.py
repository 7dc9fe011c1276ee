"""``marquee serve`` refuses an empty bind address (session 21, helper N).

Before: ``--host ""`` or ``MARQUEE_SERVING_HOST=""`` fell back to MARQUEE_BIND_HOST without a
word, while an empty MARQUEE_BIND_HOST is refused. The chart never sets MARQUEE_SERVING_HOST
(``modelServer`` has no ``host``), so empty is not how it spells "unset".
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

MARQUEE = str(Path(sys.executable).parent / "marquee")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(tmp_path: Path, *args: str, **env_extra: str) -> tuple[int, str]:
    """``marquee serve`` expected to exit; a server that starts instead is stopped and fails."""
    from monitoring.loop.procs import stop_group

    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(MARQUEE_HOME=str(tmp_path / "home"), **env_extra)
    proc = subprocess.Popen([MARQUEE, "serve", "--runtime", "payload-sink",
                             "--port", str(_free_port()), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        out, err = proc.communicate()
        pytest.fail(f"marquee serve {' '.join(args)} started a server: {(out + err)[-1500:]}")
    assert "Traceback" not in out + err, err[-2000:]
    return proc.returncode, err.strip().splitlines()[-1]


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_host_flag_is_refused_naming_it(tmp_path: Path, host: str) -> None:
    code, line = _serve(tmp_path, "--host", host)
    assert code == 2
    assert line.startswith("Error: Invalid value for --host: must not be empty"), line


def test_an_empty_serving_host_variable_is_refused_naming_it(tmp_path: Path) -> None:
    code, line = _serve(tmp_path, MARQUEE_SERVING_HOST="")
    assert code == 2
    assert line.startswith("error: invalid settings: host:"), line
    assert "MARQUEE_SERVING_HOST" in line


def test_the_serving_settings_refuse_an_empty_host() -> None:
    from pydantic import ValidationError

    from serving.settings import ServingSettings

    with pytest.raises(ValidationError, match="must not be empty"):
        ServingSettings(host="")
    assert ServingSettings(host="127.0.0.1").host == "127.0.0.1"
