"""fetch_bundle names the bundle it was asked for when the manifest is absent or invalid, not
the temporary staging directory it downloaded into (gone by the time the error is read)."""

from __future__ import annotations

from pathlib import Path

import pytest

from marquee.bundle import bundle_key, fetch_bundle, finalize_bundle, publish_bundle
from marquee.errors import BundleError, BundleNotFoundError
from marquee.store import LocalStore


def _published(tmp_path: Path) -> tuple[LocalStore, str]:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "weights.npy").write_bytes(b"\x93NUMPY" + b"0" * 64)
    finalize_bundle(bundle, "movie-recommender", "v1", {}, "fp", {"ndcg_at_10": 0.3},
                    code_revision="abc")
    store = LocalStore(tmp_path / "store")
    publish_bundle(store, bundle, "movie-recommender", "v1")
    return store, bundle_key("movie-recommender", "v1")


def test_a_bundle_whose_manifest_never_arrived_is_named_by_its_uri(tmp_path: Path) -> None:
    """An upload that stopped before bundle.json (it goes up last) leaves the data files."""
    store, key = _published(tmp_path)
    store.delete(f"{key}/bundle.json")
    uri = store.uri(key)
    dest = tmp_path / "serving" / "bundle"
    for ref, kwargs in ((key, {"store": store}), (uri, {})):
        with pytest.raises(BundleNotFoundError) as caught:
            fetch_bundle(ref, dest, **kwargs)
        message = str(caught.value)
        assert message.startswith(f"no bundle.json at {ref}: not a model bundle"), message
        assert ".fetch" not in message  # before: 'no bundle.json in <dest>/.bundle.xxx.fetch'
        assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_an_invalid_manifest_is_named_by_its_uri(tmp_path: Path) -> None:
    store, key = _published(tmp_path)
    store.put_bytes(f"{key}/bundle.json", b'{"schema_version": 2}')
    dest = tmp_path / "serving" / "bundle"
    with pytest.raises(BundleError) as caught:
        fetch_bundle(key, dest, store=store)
    message = str(caught.value)
    assert message.startswith(f"invalid {key}/bundle.json:"), message
    assert "schema_version" in message and ".fetch" not in message
