"""What the store, bundle fetches and the atomic writes create has the modes a plain ``open()``
or ``mkdir()`` gives under the umask, and a replaced file keeps its mode.

``tempfile.mkstemp``/``mkdtemp`` made every stored object, checksum, fetched file, fetched
bundle directory and atomically written state file 0600/0700 whatever the umask: in a store or
``MARQUEE_HOME`` shared by pods of different uids (the pipeline writes, the model server reads;
the CLI writes a rollout, the controller reads it) the reader got ``PermissionError``, and an
existing 0644 file rewritten by ``write_text_atomic`` became 0600.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from marquee.bundle import fetch_bundle, publish_bundle
from marquee.durable import write_text_atomic, write_text_exclusive
from marquee.store import LocalStore
from tests.unit.test_bundle import NAME, make_bundle

# umask -> (file mode, directory mode) a plain open()/mkdir() gives under it
UMASKS = {0o022: (0o644, 0o755), 0o077: (0o600, 0o700)}


@pytest.fixture(params=sorted(UMASKS), ids=lambda m: f"umask-{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes_under(root: Path) -> dict[str, str]:
    """{relative path: octal mode} of ``root`` and everything under it."""
    return {(p.relative_to(root).as_posix() or "."): oct(mode(p))
            for p in [root, *sorted(root.rglob("*"))]}


def expected_modes(root: Path, umask: int) -> dict[str, str]:
    file_mode, dir_mode = UMASKS[umask]
    return {(p.relative_to(root).as_posix() or "."): oct(dir_mode if p.is_dir() else file_mode)
            for p in [root, *sorted(root.rglob("*"))]}


def test_local_store_objects_checksums_and_fetched_files_have_the_umask_modes(
        tmp_path: Path, umask: int) -> None:
    store = LocalStore(tmp_path / "store")
    source = tmp_path / "features.parquet"
    source.write_bytes(b"PAR1 features")
    os.chmod(source, 0o600)  # the source's own mode is not what the object gets
    store.put_file("datasets/ml/abc/features.parquet", source)
    store.put_bytes("payloads/2024/part-0.parquet", b"PAR1 payloads")

    # every object, checksum record, lock and directory of the store
    stored = modes_under(store.root)
    assert ".marquee-store/sha256/datasets/ml/abc/features.parquet" in stored
    assert stored == expected_modes(store.root, umask)

    out = tmp_path / "out"
    store.get_file("datasets/ml/abc/features.parquet", out / "a" / "features.parquet")
    store.get_dir("payloads", out / "payloads")
    assert modes_under(out) == expected_modes(out, umask)
    assert (out / "payloads" / "2024" / "part-0.parquet").read_bytes() == b"PAR1 payloads"


def test_a_published_and_fetched_bundle_has_the_umask_modes(tmp_path: Path, umask: int) -> None:
    manifest = make_bundle(tmp_path / "b")
    store = LocalStore(tmp_path / "store")
    uri = publish_bundle(store, tmp_path / "b", NAME, "v1")
    dest = tmp_path / "cache" / "bundles" / "v1"

    fetched, got = fetch_bundle(uri, dest, store=store)

    assert (fetched, got) == (dest, manifest)
    assert modes_under(store.root) == expected_modes(store.root, umask)
    assert modes_under(dest) == expected_modes(dest, umask)
    assert mode(dest) == UMASKS[umask][1]  # the bundle directory itself, not mkdtemp's 0700


def test_write_text_atomic_gives_a_new_file_the_umask_mode_and_keeps_an_old_files_mode(
        tmp_path: Path, umask: int) -> None:
    new, old, spec = tmp_path / "state" / "new.json", tmp_path / "old.json", tmp_path / "spec"
    write_text_atomic(new, "{}")
    write_text_exclusive(spec, "kind: ModelRollout\n")
    assert (mode(new), mode(spec)) == (UMASKS[umask][0],) * 2
    assert mode(new.parent) == UMASKS[umask][1]

    old.write_text("{}")
    os.chmod(old, 0o640)  # group-readable on purpose: the controller's group reads it
    write_text_atomic(old, '{"phase": "Progressing"}')
    assert old.read_text() == '{"phase": "Progressing"}'
    assert mode(old) == 0o640
    os.chmod(old, 0o444)  # a read-only file is replaced (the directory allows it), still 0444
    write_text_atomic(old, "{}")
    assert (old.read_text(), mode(old)) == ("{}", 0o444)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json", "spec", "state"]


def marquee(home: Path, umask: int, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    return subprocess.run([str(Path(sys.executable).parent / "marquee"), *args],
                          env={**clean, "MARQUEE_HOME": str(home)}, umask=umask,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("umask", sorted(UMASKS), ids=lambda m: f"umask-{m:03o}")
def test_the_cli_writes_a_shared_home_with_the_umask_modes(tmp_path: Path, umask: int) -> None:
    """`marquee rollout start --detach` writes the rollout a controller of another uid runs;
    `marquee rollout report` rewrites a report whose mode its owner chose."""
    home = tmp_path / "home"
    out = marquee(home, umask, "rollout", "start", "--strategy", "canary", "--candidate", "2",
                  "--baseline", "1", "--name", "shared", "--detach")
    assert out.returncode == 0, out.stderr
    rollouts = home / "rollouts"
    assert modes_under(rollouts) == expected_modes(rollouts, umask)
    assert sorted(modes_under(rollouts)) == [".", "shared", "shared/rollout.yaml",
                                             "shared/status.json"]

    report = tmp_path / "rollout-shared.html"
    out = marquee(home, umask, "rollout", "report", "shared", "-o", str(report))
    assert out.returncode == 0, out.stderr
    assert mode(report) == UMASKS[umask][0]
    os.chmod(report, 0o664)
    out = marquee(home, umask, "rollout", "report", "shared", "-o", str(report))
    assert out.returncode == 0, out.stderr
    assert mode(report) == 0o664
