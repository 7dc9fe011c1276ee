"""`components.common.link_tree` leaves a killed model save's staging out (session 21, helper P).

``recsys.persist.save`` writes ``.model.<hex>.part`` beside ``model/`` and swaps it in (the
model before parked as ``.model.<hex>.old``); a save killed mid-way leaves them behind, and
link_tree, which assembles bundles (``components.register``), copied them into the bundle.
"""

from __future__ import annotations

from pathlib import Path

from components.common import link_tree


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _tree(root: Path) -> None:
    for rel, body in {"model/meta.json": b"{}", "model/weights.safetensors": b"w" * 64,
                      "model/tables/items.parquet": b"items", "metrics.json": b"{}",
                      ".marquee-keep": b"kept", "model/.model.notes": b"a dot-file too"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)


def test_a_killed_saves_leftovers_are_not_linked(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    expected = _files(src)
    for leftover in (".model.0f3a9c.part", ".model.77be01.old"):
        (src / leftover / "tables").mkdir(parents=True)
        (src / leftover / "weights.safetensors").write_bytes(b"half-written")
        (src / leftover / "tables" / "items.parquet").write_bytes(b"stale")

    link_tree(src, tmp_path / "bundle")

    assert _files(tmp_path / "bundle") == expected  # the rest, dot-files included, as before
    assert not list((tmp_path / "bundle").glob(".model.*"))


def test_a_tree_without_leftovers_is_linked_whole(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    (src / "empty").mkdir()
    link_tree(src, tmp_path / "bundle" / "reference")
    dst = tmp_path / "bundle" / "reference"
    assert _files(dst) == _files(src)
    assert (dst / "empty").is_dir()
    assert (dst / "model" / "weights.safetensors").stat().st_ino == \
        (src / "model" / "weights.safetensors").stat().st_ino  # hard-linked, not copied
