"""Two fetches of one bundle into one destination at once: a drift check and a skew check
started together share ``<home>/cache/bundles/<hash>``, as two model servers of one version
share theirs. Both passed the "destination is empty" check, both downloaded, and the one that
finished second failed on the rename with ``OSError: [Errno 39] Directory not empty`` although
the very bundle it fetched was sitting there, verified.

Each race is forced: the store holds every fetch at a barrier until all of them have passed
the destination check, so they all download and rename after one another.
"""

from __future__ import annotations

import threading
from pathlib import Path

from marquee.bundle import BundleManifest, fetch_bundle, publish_bundle, verify_bundle
from marquee.errors import DestinationExistsError
from marquee.store import LocalStore
from tests.unit.test_bundle import NAME, make_bundle


class GatedStore(LocalStore):
    """A local store whose downloads start only once ``parties`` fetches have begun."""

    def __init__(self, root: Path, parties: int) -> None:
        super().__init__(root)
        self.gate = threading.Barrier(parties, timeout=30)

    def get_dir(self, prefix: str, path: Path | str) -> dict[str, str]:
        self.gate.wait()  # every fetch has passed its destination check by now
        return super().get_dir(prefix, path)


def _fetch_all(refs: list[str], dest: Path, store: LocalStore) -> list[object]:
    """fetch_bundle(ref, dest) for each ref in its own thread; their results or errors."""
    results: list[object] = [None] * len(refs)

    def run(i: int, ref: str) -> None:
        try:
            results[i] = fetch_bundle(ref, dest, store=store)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, ref)) for i, ref in enumerate(refs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_fetches_of_one_bundle_into_one_place_both_get_it(tmp_path: Path) -> None:
    manifest = make_bundle(tmp_path / "b")
    store = GatedStore(tmp_path / "store", parties=2)
    uri = publish_bundle(store, tmp_path / "b", NAME, "v1")
    dest = tmp_path / "cache" / "bundles" / "0123abcd"

    results = _fetch_all([uri, uri], dest, store)

    for result in results:
        assert not isinstance(result, BaseException), repr(result)
        assert result == (dest, manifest)
    assert verify_bundle(dest) == manifest
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no staging left behind


def test_another_bundle_put_there_meanwhile_is_a_destination_error(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b1", "v1")
    make_bundle(tmp_path / "b2", "v2")
    store = GatedStore(tmp_path / "store", parties=2)
    uris = [publish_bundle(store, tmp_path / f"b{i}", NAME, f"v{i}") for i in (1, 2)]
    dest = tmp_path / "dest"

    results = _fetch_all(uris, dest, store)

    won = [r for r in results if isinstance(r, tuple)]
    lost = [r for r in results if not isinstance(r, tuple)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], DestinationExistsError), repr(lost[0])
    assert str(lost[0]) == f"{dest} exists and is not an empty directory"
    path, manifest = won[0]
    assert isinstance(manifest, BundleManifest) and verify_bundle(path) == manifest


def test_several_fetches_at_once_all_return_the_verified_bundle(tmp_path: Path) -> None:
    parties = 3
    manifest = make_bundle(tmp_path / "b")
    store = GatedStore(tmp_path / "store", parties=parties)
    publish_bundle(store, tmp_path / "b", NAME, "v1")
    dest = tmp_path / "dest"

    results = _fetch_all([f"models/{NAME}/v1"] * parties, dest, store)

    assert results == [(dest, manifest)] * parties
