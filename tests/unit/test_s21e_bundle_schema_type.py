"""A ``bundle.json`` whose ``schema_version`` is not a number (defect hunt s21 E).

Before: ``"1"``, ``1.5`` or ``[1]`` were reported as a bundle "written by another Marquee
release" of schema_version '1' (or 1.5, or [1]), and the advice was to serve it with that
release or retrain; the manifest is broken, not from another release.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marquee.bundle import fetch_bundle, verify_bundle
from marquee.errors import BundleError
from tests.unit.test_bundle import make_bundle


@pytest.mark.parametrize("value", ["1", None, 1.5, [1]])
def test_a_schema_version_of_another_type_is_named_as_a_bad_field(tmp_path: Path,
                                                                  value: object) -> None:
    root = tmp_path / "b"
    make_bundle(root)
    path = root / "bundle.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": value}))
    for call in (lambda: verify_bundle(root), lambda: fetch_bundle(str(root), tmp_path / "d")):
        with pytest.raises(BundleError) as info:
            call()
        text = str(info.value)
        assert "schema_version:" in text and "another Marquee release" not in text, text
        assert "\n" not in text
    assert not (tmp_path / "d").exists()


def test_another_schema_version_number_still_names_the_release(tmp_path: Path) -> None:
    root = tmp_path / "b"
    make_bundle(root)
    path = root / "bundle.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 2}))
    with pytest.raises(BundleError, match="schema_version 2; this Marquee reads bundles of "
                                          "schema_version 1"):
        verify_bundle(root)
