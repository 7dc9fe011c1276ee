"""The retrain trigger's state files reach the disk before they replace the old ones
(helper A, session 18).

``marquee retrain --local`` runs under ``strace``, which records the system calls the real
process makes: every rename over ``state.json`` or a run record must follow an fsync of the
renamed temp file (else a power loss can leave an empty or cut-short file, which stops every
decision until someone repairs it by hand) and be followed by an fsync of the directory.
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

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")]

_CALL = re.compile(r'^\d+\s+(?P<call>fsync|fdatasync|rename|renameat|renameat2)\((?P<args>.*)\)'
                   r'\s+=\s+0$')
_FD_PATH = re.compile(r"^\d+<(?P<path>[^>]*)>")
_PATHS = re.compile(r'"([^"]*)"')


def test_state_and_run_records_are_synced_before_they_replace_the_old_ones(
        tmp_path: Path) -> None:
    env = _env(tmp_path)
    trace = tmp_path / "trace.txt"
    out = subprocess.run(
        ["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
         "-o", str(trace), sys.executable, "-m", "marquee.cli", "retrain", "--local",
         "--reason", "drift after the catalogue import"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    if out.returncode != 0 and "ptrace" in out.stderr.lower():
        pytest.skip(f"strace cannot trace here: {out.stderr[-300:]}")
    assert out.returncode == 0, out.stdout + out.stderr
    retrain = tmp_path / "home" / "retrain"
    synced: set[str] = set()
    replaced: list[tuple[str, str, int]] = []  # (temp file, target, index of the rename)
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
            if len(paths) == 2 and str(retrain) in paths[1]:
                assert paths[0] in synced, f"{paths[0]} renamed over {paths[1]} unsynced"
                replaced.append((paths[0], paths[1], i))
    targets = {Path(t).relative_to(retrain).parts[0] for _, t, _ in replaced}
    assert {"state.json", "runs"} <= targets, replaced  # both kinds were written
    for _, target, at in replaced:
        parent = str(Path(target).parent)
        assert any(d == parent and j > at for d, j in dirs_synced), \
            f"directory {parent} not synced after the rename to {target}"
