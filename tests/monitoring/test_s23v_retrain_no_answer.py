"""`marquee retrain` when something at MARQUEE_RETRAIN_URL takes the connection and never
answers (a port-forward whose pod went away, a trigger stuck past the timeout), or when the
URL cannot be parsed: one ``error:`` line saying so, not an httpx traceback. After a
connection the request may have reached the trigger, so the line says the run may or may
not have started and where to look."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_retrain_cli import _env, _marquee

RUN = "rt-20260101T000000Z-0a1b2c"


@contextmanager
def silent_server(hang: bool) -> Iterator[str]:
    """A listener on 127.0.0.1 that reads each request and then closes the connection
    (``hang=False``) or keeps it open without a word until the block ends."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.recv(65536)
            if hang:
                held.append(conn)
            else:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        srv.close()
        for conn in held:
            conn.close()
        thread.join(5)


# a closed connection reads as either, depending on whether the close came as a reset
CLOSED = ("RemoteProtocolError", "ReadError", "WriteError")


@pytest.mark.parametrize(("hang", "args", "what", "kinds"), [
    (False, ["retrain", "--reason", "drift after the import"], "started a run", CLOSED),
    (False, ["retrain", "--cancel", RUN, "--reason", "wrong data"], "canceled the run",
     CLOSED),
    (True, ["retrain", "--reason", "drift after the import"], "started a run",
     ("ReadTimeout",)),
])
def test_a_trigger_that_does_not_answer_is_one_error_line(
        tmp_path: Path, hang: bool, args: list[str], what: str, kinds: tuple[str, ...]
        ) -> None:
    with silent_server(hang) as url:
        out = _marquee(args, _env(tmp_path, MARQUEE_RETRAIN_URL=url))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert any(f"error: the trigger at {url} did not answer ({kind}: " in out.stderr
               for kind in kinds), out.stderr
    assert f"may or may not have {what}: check `marquee incidents`" in out.stderr
    assert not (tmp_path / "stand-in-runs").exists()  # and nothing ran on this machine


def test_a_url_httpx_cannot_parse_is_a_usage_error(tmp_path: Path) -> None:
    out = _marquee(["retrain", "--reason", "drift after the import", "--url", "http://[::1"],
                   _env(tmp_path))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert "error: --url / MARQUEE_RETRAIN_URL 'http://[::1' is not a valid URL" in out.stderr
    assert "nothing was started" in out.stderr
