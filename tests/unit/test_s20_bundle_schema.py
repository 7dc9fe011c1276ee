"""A bundle written by another Marquee release (``schema_version`` other than this one's)
is refused in one line saying so; before, pydantic's four-line error ("Input should be 1")
reached the model server's error line. Other manifest errors are one line too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marquee.bundle import verify_bundle
from marquee.errors import BundleError
from tests.unit.test_bundle import make_bundle


def _edit(root: Path, **fields: object) -> None:
    path = root / "bundle.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_a_bundle_of_another_schema_version_names_both_versions(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b")
    _edit(tmp_path / "b", schema_version=99)
    with pytest.raises(BundleError) as info:
        verify_bundle(tmp_path / "b")
    text = str(info.value)
    assert "schema_version 99" in text and "schema_version 1" in text and "\n" not in text


def test_other_manifest_errors_are_one_line_naming_the_field(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b")
    _edit(tmp_path / "b", files="nope")
    with pytest.raises(BundleError) as info:
        verify_bundle(tmp_path / "b")
    assert "files:" in str(info.value) and "\n" not in str(info.value)
