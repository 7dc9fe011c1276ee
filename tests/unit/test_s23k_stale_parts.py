"""A writer killed mid-write leaves its ``.part`` in ``<store>/.marquee-store/tmp``; nothing
removed those, and a store that many pipeline runs and payload loggers write to filled up with
them. Writers now remove parts untouched for a day (a live writer's part is fresh)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from marquee.store import LocalStore

WRITER = textwrap.dedent("""
    import sys
    from marquee.store import LocalStore
    LocalStore(sys.argv[1]).put_file("datasets/big.parquet", sys.argv[2])
""")


def _parts(root: Path) -> list[Path]:
    tmp = root / ".marquee-store" / "tmp"
    return sorted(tmp.glob("*.part")) if tmp.is_dir() else []


def _kill_a_writer_mid_write(root: Path, fifo: Path) -> Path:
    """Start ``put_file`` from a FIFO, so it sits in the copy with its part open; SIGKILL it."""
    os.mkfifo(fifo)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(fifo)],
                              cwd=Path(__file__).resolve().parents[2])
    try:
        fd = os.open(fifo, os.O_WRONLY)  # returns once the writer opened it: its part exists
        os.write(fd, b"PAR1 half a table")
        deadline = time.monotonic() + 60
        while not _parts(root) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(60)
    os.close(fd)
    (part,) = _parts(root)
    return part


def test_a_dead_writers_part_is_removed_by_the_next_writer_a_live_ones_is_not(
        tmp_path: Path) -> None:
    root = tmp_path / "store"
    dead = _kill_a_writer_mid_write(root, tmp_path / "fifo")
    assert not LocalStore(root).exists("datasets/big.parquet")
    live = dead.with_name("live-writer.part")  # another writer's part, being written now
    live.write_bytes(b"PAR1 in progress")
    recent = dead.with_name("an-hour-old.part")  # a slow writer's: still well within the day
    recent.write_bytes(b"PAR1 slow")
    an_hour_ago = time.time() - 3600
    os.utime(recent, (an_hour_ago, an_hour_ago))

    LocalStore(root).put_bytes("payloads/p.parquet", b"x")  # a day before the writer died:
    assert dead in _parts(root)  # its part is kept (it cannot tell it from a live one yet)

    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(dead, (two_days_ago, two_days_ago))
    store = LocalStore(root)  # the next run's writer
    store.put_bytes("payloads/q.parquet", b"y")

    assert _parts(root) == sorted([live, recent])
    assert store.get_bytes("payloads/q.parquet") == b"y"
    assert store.list("") == ["payloads/p.parquet", "payloads/q.parquet"]
