"""The model bundle: one self-describing, checksummed directory per trained model.

Training writes the bundle's files, then ``finalize_bundle`` hashes every file and writes
``bundle.json`` last; ``publish_bundle`` uploads it to ``models/<name>/<version>/`` in the
object store (``bundle.json`` last again, so a visible manifest means a complete bundle);
``fetch_bundle`` downloads it and checks every checksum before anything may load it. Tensors
are stored as safetensors or ``.npy`` through ``save_arrays``/``save_array``: nothing is ever
pickled or unpickled.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from marquee.durable import new_dir
from marquee.errors import (
    BundleError,
    BundleExistsError,
    BundleIntegrityError,
    BundleNotFoundError,
    DestinationExistsError,
    InvalidKeyError,
    ObjectNotFoundError,
    validation_text,
)
from marquee.settings import NAME_PATTERN
from marquee.store import (
    LocalStore,
    ObjectStore,
    S3Store,
    check_key,
    find_local_store_root,
    join_key,
    local_path_of,
    sha256_file,
)

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "BundleManifest",
    "bundle_key",
    "new_bundle_version",
    "finalize_bundle",
    "read_manifest",
    "verify_bundle",
    "publish_bundle",
    "fetch_bundle",
    "save_arrays",
    "load_arrays",
    "save_array",
    "load_array",
    "code_revision",
]

MANIFEST_NAME = "bundle.json"
SCHEMA_VERSION = 1
_SEGMENT = re.compile(NAME_PATTERN)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _check_segment(field: str, value: str) -> str:
    if not _SEGMENT.fullmatch(value):
        raise ValueError(f"{field}={value!r} must match {_SEGMENT.pattern}")
    return value


class BundleManifest(BaseModel):
    """``bundle.json``: what the bundle is, where it came from, and a sha256 per file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    schema_version: Literal[1] = SCHEMA_VERSION
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    training_config: dict[str, Any] = Field(default_factory=dict)
    data_fingerprint: str
    metrics: dict[str, float] = Field(default_factory=dict)
    code_revision: str
    pipeline_run_id: str
    files: dict[str, str]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_segment("name", v)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: object) -> str:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str):
            raise ValueError(f"version={v!r} must be a string")
        return _check_segment("version", v)

    @field_validator("created")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError(f"created={v.isoformat()!r} must carry a time zone")
        return v.astimezone(UTC)

    @field_validator("metrics")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not math.isfinite(x)}
        if bad:
            raise ValueError(f"metrics must be finite, got {bad}")
        return v

    @field_validator("files")
    @classmethod
    def _files(cls, v: dict[str, str]) -> dict[str, str]:
        for rel, digest in v.items():
            try:
                inside = check_key(rel) == rel and rel != MANIFEST_NAME
            except InvalidKeyError:
                inside = False
            if not inside:
                raise ValueError(f"files[{rel!r}] is not a relative file path inside the bundle")
            if not _SHA256.fullmatch(digest):
                raise ValueError(f"files[{rel!r}]={digest!r} is not a sha256 hex digest")
        return v


def bundle_key(name: str, version: str) -> str:
    """Where a bundle lives in the object store: ``models/<name>/<version>``."""
    try:
        return join_key("models", _check_segment("name", name), _check_segment("version", version))
    except ValueError as exc:
        raise BundleError(str(exc)) from None


def new_bundle_version() -> str:
    """A unique, sortable bundle version: ``<UTC timestamp>-<8 hex>``.

    The registry numbers versions itself when they are registered, after the bundle is
    published; this id names the bundle before that (the registry tags carry the link).
    """
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _scan(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the manifest; symlinks are refused."""
    files: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise BundleIntegrityError(rel, "is a symbolic link (bundles hold regular files only)")
        if path.is_file() and rel != MANIFEST_NAME:
            files[rel] = sha256_file(path)
    return files


def finalize_bundle(
    dir: Path | str,
    name: str,
    version: str,
    training_config: Mapping[str, Any],
    data_fingerprint: str,
    metrics: Mapping[str, float],
    code_revision: str | None = None,
    pipeline_run_id: str = "local",
) -> BundleManifest:
    """Hash every file under ``dir`` and write ``bundle.json`` last; return the manifest."""
    root = Path(dir)
    if not root.is_dir():
        raise BundleNotFoundError(f"bundle directory {root} does not exist")
    try:
        manifest = BundleManifest(
            name=name, version=version, training_config=dict(training_config),
            data_fingerprint=data_fingerprint, metrics=dict(metrics),
            code_revision=code_revision if code_revision is not None else _git_revision(),
            pipeline_run_id=pipeline_run_id, files=_scan(root),
        )
    except ValidationError as exc:
        raise BundleError(f"invalid bundle manifest: {exc}") from exc
    tmp = root / f".{MANIFEST_NAME}.{uuid.uuid4().hex}.part"
    try:
        # UTF-8 whatever the locale (a title in the training config, a non-ASCII metric name):
        # read_manifest reads the bytes as JSON, which is UTF-8
        tmp.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, root / MANIFEST_NAME)
    finally:
        tmp.unlink(missing_ok=True)
    return manifest


def read_manifest(dir: Path | str) -> BundleManifest:
    path = Path(dir) / MANIFEST_NAME
    if not path.is_file():
        raise BundleNotFoundError(f"no {MANIFEST_NAME} in {Path(dir)}: not a model bundle")
    data = path.read_bytes()
    try:
        return BundleManifest.model_validate_json(data)
    except ValidationError as exc:
        version = next((e.get("input") for e in exc.errors()
                        if e.get("loc") == ("schema_version",)), None)
        # a bundle written by another Marquee (another number): say which; a schema_version
        # of another type ("1", true, null) is a broken manifest, named as any other field
        if isinstance(version, int) and not isinstance(version, bool):
            raise BundleError(f"invalid {path}: schema_version {version!r}; this Marquee reads "
                              f"bundles of schema_version {SCHEMA_VERSION} (the bundle was "
                              "written by another Marquee release: serve it with that one, or "
                              "retrain)") from None
        raise BundleError(f"invalid {path}: {validation_text(exc)}") from None


def verify_bundle(dir: Path | str) -> BundleManifest:
    """Check every file against ``bundle.json``; raise BundleIntegrityError naming the file."""
    root = Path(dir)
    manifest = read_manifest(root)
    present = _scan(root)
    for rel in sorted(set(manifest.files) | set(present)):
        if rel not in present:
            raise BundleIntegrityError(rel, "is missing")
        if rel not in manifest.files:
            raise BundleIntegrityError(rel, f"is not listed in {MANIFEST_NAME}")
        if present[rel] != manifest.files[rel]:
            raise BundleIntegrityError(
                rel, f"changed: sha256 {present[rel]}, {MANIFEST_NAME} says {manifest.files[rel]}")
    return manifest


def publish_bundle(store: ObjectStore, dir: Path | str, name: str, version: str) -> str:
    """Upload a finalized bundle to ``models/<name>/<version>/``; return its URI.

    The bundle is verified first, every file's stored sha256 must match the manifest, and
    ``bundle.json`` goes up last. A published version is immutable: publishing it again
    raises BundleExistsError.
    """
    root = Path(dir)
    manifest = verify_bundle(root)
    if (manifest.name, manifest.version) != (name, str(version)):
        raise BundleError(
            f"bundle in {root} is {manifest.name}/{manifest.version}, not {name}/{version}")
    key = bundle_key(name, str(version))
    if store.list(key + "/"):
        raise BundleExistsError(f"{store.uri(key)} already exists; bundles are immutable")
    for rel, digest in sorted(manifest.files.items()):
        if store.put_file(join_key(key, rel), root / rel) != digest:
            raise BundleIntegrityError(rel, "changed while it was being uploaded")
    store.put_file(join_key(key, MANIFEST_NAME), root / MANIFEST_NAME)
    return store.uri(key)


def _download(ref: str, into: Path, store: ObjectStore | None, s3_endpoint_url: str | None) -> None:
    """Copy the bundle named by ``ref`` (store key or URI) into the empty directory ``into``."""
    if store is not None:
        base = store.uri("").rstrip("/") + "/"
        if "://" not in ref and not Path(ref).expanduser().is_absolute():  # a key, not a path
            store.get_dir(check_key(ref), into)
            return
        if ref.startswith(base):
            store.get_dir(check_key(ref[len(base):]), into)
            return
    if ref.startswith("s3://"):
        bucket, _, path = ref[len("s3://"):].partition("/")
        S3Store(bucket, "", s3_endpoint_url).get_dir(check_key(path), into)
        return
    path = local_path_of(ref)
    if path is None:
        raise BundleError(f"cannot fetch a bundle from {ref!r}: use a store key, s3:// or a path")
    path = path.resolve()
    if not path.is_dir():
        raise BundleNotFoundError(f"no bundle at {ref}")
    root = find_local_store_root(path)
    if root is not None and root != path:  # inside a LocalStore: check the recorded checksums
        LocalStore(root).get_dir(path.relative_to(root).as_posix(), into)
    else:  # a plain directory: bundle.json alone vouches for its files
        shutil.copytree(path, into, dirs_exist_ok=True, symlinks=True)


def fetch_bundle(
    uri_or_key: str,
    dest: Path | str,
    store: ObjectStore | None = None,
    s3_endpoint_url: str | None = None,
) -> tuple[Path, BundleManifest]:
    """Download a bundle into ``dest`` (absent or empty) and verify every file.

    ``uri_or_key`` is a key in ``store`` (``models/<name>/<version>``), an ``s3://`` URI
    (``s3_endpoint_url`` for non-AWS endpoints), a ``file://`` URI or a local path. The bundle
    lands at ``dest`` only after it verified; on failure ``dest`` is left untouched. A fetch
    that finds the same bundle put at ``dest`` by another fetch meanwhile returns that one.
    """
    target = Path(dest)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DestinationExistsError(f"{target} exists and is not an empty directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    # a plain mkdir's mode (not mkdtemp's 0700): the bundle is renamed into place as it is, and
    # a cache shared with servers of another uid must stay readable by them
    staging = new_dir(target.parent, prefix=f".{target.name}.", suffix=".fetch")
    try:
        try:
            _download(uri_or_key, staging, store, s3_endpoint_url)
        except ObjectNotFoundError as exc:
            raise BundleNotFoundError(f"no bundle at {uri_or_key}: {exc}") from exc
        try:
            manifest = verify_bundle(staging)
        except BundleNotFoundError as exc:  # it named the staging directory, gone by now
            raise BundleNotFoundError(
                f"no {MANIFEST_NAME} at {uri_or_key}: not a model bundle, or one whose upload "
                "did not finish (the manifest goes up last)") from exc
        except BundleIntegrityError:  # names the file inside the bundle: clear as it is
            raise
        except BundleError as exc:  # an invalid manifest, named by its staging path
            raise BundleError(str(exc).replace(str(staging), str(uri_or_key))) from exc
        try:
            if target.exists():
                target.rmdir()
            os.replace(staging, target)
        except OSError:
            # Another fetch into ``dest`` (a drift and a skew check sharing a cache) finished
            # first. Bundles are immutable: the one it left is as good, once it verifies.
            if not (target.is_dir() and any(target.iterdir())):
                raise
            if not _holds(target, manifest):
                raise DestinationExistsError(
                    f"{target} exists and is not an empty directory") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, manifest


def _holds(dir: Path, manifest: BundleManifest) -> bool:
    """Whether ``dir`` holds the bundle ``manifest`` describes, every file verified."""
    try:
        return verify_bundle(dir) == manifest
    except BundleError:
        return False


# Arrays: safetensors and .npy, never pickle ------------------------------------------------
def _is_torch(x: object) -> bool:
    return type(x).__module__.split(".", 1)[0] == "torch"


def save_arrays(path: Path | str, arrays: Mapping[str, Any],
                metadata: Mapping[str, str] | None = None) -> Path:
    """Write named numpy arrays or torch tensors to a ``.safetensors`` file."""
    out = Path(path)
    if out.suffix != ".safetensors":
        raise BundleError(f"save_arrays writes .safetensors files, got {out.name!r}")
    meta = dict(metadata) if metadata else None
    try:
        if any(_is_torch(v) for v in arrays.values()):
            import torch
            from safetensors.torch import save_file as save_torch

            tensors = {k: (v if _is_torch(v) else torch.from_numpy(v)).detach().cpu().contiguous()
                       for k, v in arrays.items()}
            save_torch(tensors, str(out), metadata=meta)
        else:
            import numpy as np
            from safetensors.numpy import save_file as save_numpy

            save_numpy({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(out),
                       metadata=meta)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"cannot write {out.name}: {exc}") from exc
    return out


def load_arrays(path: Path | str, flavour: Literal["numpy", "torch"] = "numpy") -> dict[str, Any]:
    """Read a ``.safetensors`` file as numpy arrays or (CPU) torch tensors."""
    if flavour == "torch":
        from safetensors.torch import load_file as load_torch

        return load_torch(str(path), device="cpu")
    from safetensors.numpy import load_file as load_numpy

    return load_numpy(str(path))


def save_array(path: Path | str, array: Any) -> Path:
    """Write one array to a ``.npy`` file; object arrays (which would need pickle) are refused."""
    import numpy as np

    out = Path(path)
    if out.suffix != ".npy":
        raise BundleError(f"save_array writes .npy files, got {out.name!r}")
    try:
        np.save(out, np.asarray(array), allow_pickle=False)
    except ValueError as exc:
        raise BundleError(f"cannot write {out.name} without pickle: {exc}") from exc
    return out


def load_array(path: Path | str, mmap_mode: Literal["r", "c"] | None = None) -> Any:
    """Read a ``.npy`` file with ``allow_pickle=False``."""
    import numpy as np

    try:
        return np.load(path, allow_pickle=False, mmap_mode=mmap_mode)
    except ValueError as exc:
        raise BundleError(f"{Path(path).name} cannot be loaded without pickle: {exc}") from exc


# Provenance ----------------------------------------------------------------------------------
def _git_revision(cwd: Path | str | None = None) -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    revision = result.stdout.strip()
    return revision if result.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", revision) \
        else "unknown"


def code_revision(cwd: Path | str | None = None) -> str:
    """``git rev-parse HEAD`` of the code (or of ``cwd``), or ``"unknown"`` outside a checkout."""
    return _git_revision(cwd)

