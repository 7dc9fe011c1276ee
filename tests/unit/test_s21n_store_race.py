"""LocalStore reads racing a delete (session 21): the key is gone, not a raw FileNotFoundError."""

from __future__ import annotations

from pathlib import Path

import pytest

from marquee.errors import ObjectNotFoundError
from marquee.store import LocalStore


@pytest.fixture
def racing_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    """A store whose object ``a/b.bin`` is deleted right after the existence check passes."""
    store = LocalStore(tmp_path / "store")
    store.put_bytes("a/b.bin", b"payload")
    real_is_file = Path.is_file

    def is_file_then_delete(self: Path) -> bool:
        found = real_is_file(self)
        if found and self.name == "b.bin" and self.parent.name == "a":
            store.delete("a/b.bin")  # a concurrent writer removes it between check and read
        return found

    monkeypatch.setattr(Path, "is_file", is_file_then_delete)
    return store


def test_get_bytes_of_a_key_deleted_during_the_read_is_not_found(racing_store: LocalStore) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"no object under key 'a/b\.bin'"):
        racing_store.get_bytes("a/b.bin")


def test_get_file_of_a_key_deleted_during_the_read_is_not_found(
    racing_store: LocalStore, tmp_path: Path
) -> None:
    dest = tmp_path / "out" / "b.bin"
    with pytest.raises(ObjectNotFoundError, match=r"no object under key 'a/b\.bin'"):
        racing_store.get_file("a/b.bin", dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no temporary file left behind


def test_reads_without_a_race_are_unchanged(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("k.bin", b"x")
    assert store.get_bytes("k.bin") == b"x"
    dest = tmp_path / "d" / "k.bin"
    assert store.get_file("k.bin", dest) and dest.read_bytes() == b"x"
