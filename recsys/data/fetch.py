"""Fetch MovieLens-100k into a local Parquet cache.

Without a ``source`` the data comes from PyPI: the ``recbole==1.2.1`` wheel ships MovieLens-100k
as atomic files, so ``pip download --no-deps`` is all the network this needs, and only the three
``ml-100k`` data files are extracted from the wheel. With a ``source`` (a directory or zip in the
GroupLens layout or holding the atomic files) nothing is downloaded. Either way the result is
cached as Parquet under ``cache_dir/movielens-100k/`` and the next call reads the cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from recsys.data.errors import DataFetchError, DataSourceError
from recsys.data.files import has_tables, read_raw_dataset, write_raw_dataset
from recsys.data.ingest import ingest
from recsys.data.movielens import ATOMIC_FILES, load_atomic, load_movielens_100k
from recsys.data.schema import RawDataset
from recsys.data.validate import validate_dataset

__all__ = [
    "RECBOLE_REQUIREMENT",
    "CACHE_NAME",
    "WheelDownloader",
    "PipWheelDownloader",
    "extract_movielens_from_wheel",
    "fetch_movielens_100k",
]

RECBOLE_REQUIREMENT = "recbole==1.2.1"
CACHE_NAME = "movielens-100k"
_MANIFEST = "fetch.json"


class WheelDownloader(Protocol):
    """Puts a wheel that contains the ML-100k atomic files into ``dest`` and returns its path."""

    def __call__(self, dest: Path) -> Path: ...


@dataclass(frozen=True)
class PipWheelDownloader:
    """``<python> -m pip download --no-deps <requirement> -d <dest>``."""

    requirement: str = RECBOLE_REQUIREMENT
    python: str = field(default_factory=lambda: sys.executable)
    extra_args: Sequence[str] = ()
    timeout_seconds: float = 600.0

    def __call__(self, dest: Path) -> Path:
        cmd = [self.python, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--only-binary=:all:", self.requirement, "-d", str(dest), *self.extra_args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=self.timeout_seconds, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataFetchError(f"could not run {' '.join(cmd)}: {exc}") from exc
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise DataFetchError(
                f"pip download of {self.requirement} failed (exit {proc.returncode}); "
                f"is PyPI reachable? Pass --source with a local MovieLens-100k copy instead.\n"
                f"{tail}"
            )
        wheels = sorted(Path(dest).glob("*.whl"))
        if not wheels:
            raise DataFetchError(f"pip download of {self.requirement} produced no wheel in {dest}")
        return wheels[0]


def extract_movielens_from_wheel(wheel: Path, dest: Path) -> Path:
    """Extract only the three ``ml-100k`` atomic files from ``wheel`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = {PurePosixPath(n).name: n for n in archive.namelist()
                       if PurePosixPath(n).name in ATOMIC_FILES
                       and PurePosixPath(n).parent.name == "ml-100k"}
            missing = [n for n in ATOMIC_FILES if n not in members]
            if missing:
                raise DataSourceError(f"{wheel.name} has no ml-100k file(s) {missing}")
            for name, member in members.items():
                (dest / name).write_bytes(archive.read(member))
    except zipfile.BadZipFile as exc:
        raise DataSourceError(f"{wheel} is not a valid wheel: {exc}") from exc
    return dest


def _cached_origin(target: Path) -> str | None:
    """Where the cached copy came from, or ``None`` when there is no complete cache."""
    try:
        manifest = json.loads((target / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return str(manifest.get("source")) if has_tables(target) else None


def fetch_movielens_100k(cache_dir: Path, source: Path | None = None, *, refresh: bool = False,
                         downloader: WheelDownloader | None = None) -> RawDataset:
    """MovieLens-100k as a :class:`RawDataset`, from the cache when it is there.

    ``source``: a directory or zip in the GroupLens layout or holding the atomic files; when
    ``None`` the recbole wheel is downloaded with ``downloader`` (default: pip) unless a cache
    exists; with a ``source`` the cache is used only when it was made from that same source.
    ``refresh`` ignores an existing cache. A copy whose ingested tables break the data contract
    raises :class:`DataValidationError` before the cache is touched, so a bad ``source`` never
    replaces a good cached copy (which the pipeline's ``movielens-100k`` source reads).
    """
    target = Path(cache_dir) / CACHE_NAME
    cached = None if refresh else _cached_origin(target)
    if cached is not None and (source is None or cached == str(Path(source).resolve())):
        return read_raw_dataset(target)
    if source is not None:
        raw = load_movielens_100k(Path(source))
        origin = str(Path(source).resolve())
    else:
        download = downloader or PipWheelDownloader()
        with tempfile.TemporaryDirectory(prefix="marquee-ml100k-") as tmp:
            wheel = download(Path(tmp) / "wheel")
            raw = load_atomic(extract_movielens_from_wheel(wheel, Path(tmp) / "ml-100k"))
            origin = f"pypi:{getattr(download, 'requirement', wheel.name)}"
    validate_dataset(ingest(raw))
    (target / _MANIFEST).unlink(missing_ok=True)
    write_raw_dataset(raw, target)
    manifest = {"source": origin, "fingerprint": raw.fingerprint(), "counts": raw.counts()}
    (target / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return raw
