"""marquee.filelock: the one flock primitive behind the registry, local store, demo, rollout
controller and retrain trigger locks. Held across real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from marquee.filelock import LockHeld, flock

HOLD = """
import sys, time
from marquee.filelock import flock
with flock(sys.argv[1], record_pid=True):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture()
def holder(tmp_path: Path):
    path = tmp_path / "sub" / "x.lock"  # the parent is created by an exclusive taker
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout.readline().strip() == "held"
        yield path, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_held_lock_names_its_holder_and_is_free_once_the_holder_dies(holder) -> None:
    path, proc = holder
    with pytest.raises(LockHeld) as caught, flock(path, wait=False):
        pass
    assert caught.value.holder == str(proc.pid)
    with pytest.raises(LockHeld), flock(path, shared=True, wait=False):
        pass  # a reader waits for a writer too
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel released it with the process
        try:
            with flock(path, wait=False) as held:
                assert held
            break
        except LockHeld:
            assert time.monotonic() < deadline, "lock not released after its holder died"
            time.sleep(0.05)


def test_readers_share_and_never_create_the_file(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    with flock(path, shared=True, optional=True) as held:
        assert held is False  # no writer made it yet: nothing to wait for
    assert not path.exists()
    with pytest.raises(FileNotFoundError), flock(path, shared=True):
        pass
    path.touch()
    with flock(path, shared=True) as one, flock(path, shared=True, wait=False) as two:
        assert one and two
