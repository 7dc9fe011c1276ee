"""State files reach the disk before they replace the old ones (helper A, session 18):
the retrain trigger's state and run records, and the router's routing file, all written by
``marquee.durable.write_text_atomic``.

The real process runs under ``strace``, which records the system calls it makes: every rename
over a state file must follow an fsync of the renamed temp file (else a power loss can leave an
empty or cut-short file: for the trigger's state, every decision stops until someone repairs it
by hand; for the router's, a restarted router has no routing) and be followed by an fsync of
the directory.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.monitoring.test_retrain_cli import _env
from tests.rollout.rollout_support import _env as router_env
from tests.rollout.rollout_support import wait_ready

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")]

_CALL = re.compile(r'^\d+\s+(?P<call>fsync|fdatasync|rename|renameat|renameat2)\((?P<args>.*)\)'
                   r'\s+=\s+0$')
_FD_PATH = re.compile(r"^\d+<(?P<path>[^>]*)>")
_PATHS = re.compile(r'"([^"]*)"')
_TRACE = ["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2"]


def _synced_renames(trace: Path, under: Path) -> list[tuple[str, str, int]]:
    """``(temp file, target, index)`` of every rename onto a file under ``under``, each
    checked: the temp file was synced before it, the target's directory after it."""
    synced: set[str] = set()
    replaced: list[tuple[str, str, int]] = []
    dirs_synced: list[tuple[str, int]] = []
    calls = [m for line in trace.read_text().splitlines() if (m := _CALL.match(line))]
    for i, m in enumerate(calls):
        if m["call"] in ("fsync", "fdatasync"):
            fd = _FD_PATH.match(m["args"])
            if fd:
                synced.add(fd["path"])
                dirs_synced.append((fd["path"], i))
        else:
            paths = _PATHS.findall(m["args"])
            if len(paths) == 2 and str(under) in paths[1]:
                assert paths[0] in synced, f"{paths[0]} renamed over {paths[1]} unsynced"
                replaced.append((paths[0], paths[1], i))
    for _, target, at in replaced:
        parent = str(Path(target).parent)
        assert any(d == parent and j > at for d, j in dirs_synced), \
            f"directory {parent} not synced after the rename to {target}"
    return replaced


def test_state_and_run_records_are_synced_before_they_replace_the_old_ones(
        tmp_path: Path) -> None:
    env = _env(tmp_path)
    trace = tmp_path / "trace.txt"
    out = subprocess.run(
        [*_TRACE, "-o", str(trace), sys.executable, "-m", "marquee.cli", "retrain", "--local",
         "--reason", "drift after the catalogue import"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    if out.returncode != 0 and "ptrace" in out.stderr.lower():
        pytest.skip(f"strace cannot trace here: {out.stderr[-300:]}")
    assert out.returncode == 0, out.stdout + out.stderr
    retrain = tmp_path / "home" / "retrain"
    replaced = _synced_renames(trace, retrain)
    targets = {Path(t).relative_to(retrain).parts[0] for _, t, _ in replaced}
    assert {"state.json", "runs"} <= targets, replaced  # both kinds were written


def test_the_routers_routing_file_is_synced_before_it_replaces_the_old_one(
        tmp_path: Path) -> None:
    import httpx

    from tests.conftest import free_port, stop_process

    port, routing = free_port(), tmp_path / "router" / "routing.json"
    trace, log = tmp_path / "trace.txt", tmp_path / "router.log"
    cmd = [*_TRACE, "-o", str(trace), sys.executable, "-m", "marquee.cli", "router",
           "--host", "127.0.0.1", "--port", str(port), "--baseline", "1",
           "--routing-file", str(routing)]
    env = router_env(tmp_path / "home", "MARQUEE_ROUTER_",
                     upstreams='{"1": "http://127.0.0.1:9", "2": "http://127.0.0.1:9"}')
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, cmd, log, f"{url}/readyz")
        put = httpx.put(f"{url}/admin/routing", timeout=10, json={
            "strategy": "canary", "salt": "s", "baseline": {"version": "1"},
            "candidate": {"version": "2"}, "candidate_weight": 10})
        assert put.status_code == 200, put.text
    finally:
        stop_process(proc)
    replaced = _synced_renames(trace, routing.parent)
    assert [t for _, t, _ in replaced][-1] == str(routing), replaced
