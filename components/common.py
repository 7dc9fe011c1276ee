"""Helpers shared by the component bodies (imported inside them, at run time)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["settings_from", "check_params", "check_source", "check_local_source", "link_tree",
           "write_json", "read_json", "read_tables", "recommender_config", "read_s3_source",
           "SPLIT_MODES", "REGISTRY_SCHEMES", "S3_SOURCE_MAX_OBJECTS", "S3_SOURCE_MAX_BYTES"]

SPLIT_MODES = ("user_temporal", "temporal", "user_random")  # the split step's ``mode``
#: URI schemes MLflow keeps a registry on ("": a local path); "+driver" is allowed after the
#: database ones (postgresql+psycopg2://…)
REGISTRY_SCHEMES = ("", "file", "http", "https", "sqlite", "postgresql", "mysql", "mssql",
                    "databricks", "databricks-uc", "uc")
#: The most objects an ``s3://`` source's directory may hold (its top level, as a local
#: directory's listing), and the most bytes the ingest step downloads from it unless the
#: step's ``MARQUEE_S3_SOURCE_MAX_BYTES`` says otherwise
S3_SOURCE_MAX_OBJECTS = 10_000
S3_SOURCE_MAX_BYTES = 2 * 1024**3
_SOURCE_FORMS = ("use movielens-100k[:PATH], synth:users=N,items=N,events=N, a dataset "
                 "directory or s3://bucket/prefix")


def recommender_config(config_json: str | dict, seed: int = 42,
                       tuned: dict[str, Any] | None = None):
    """``RecommenderConfig``: the defaults, then the pipeline's ``config_json`` overrides,
    then ``tuned`` (last wins). A ``config_json`` that is not a JSON object, or names a
    setting or value the recommender does not take, raises ``InvalidArgumentError`` naming
    ``config_json`` and what is wrong in it."""
    from pydantic import ValidationError

    from marquee.errors import InvalidArgumentError, validation_text
    from marquee.mapping import deep_merge
    from recsys.config import RecommenderConfig

    try:
        base = RecommenderConfig(seed=seed)
    except ValidationError as exc:
        raise InvalidArgumentError("seed", seed, validation_text(exc)) from None
    try:
        overrides = (json.loads(config_json or "{}") if isinstance(config_json, str)
                     else config_json)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError("config_json", config_json, f"not JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise InvalidArgumentError("config_json", config_json, "must be a JSON object")
    merged = deep_merge(base.model_dump(), overrides)
    try:
        return RecommenderConfig.model_validate(deep_merge(merged, tuned or {}))
    except ValidationError as exc:
        raise InvalidArgumentError("config_json", config_json, validation_text(exc)) from None


def settings_from(store_uri: str = "", registry_uri: str = "", s3_endpoint_url: str = "",
                  home: str = ""):
    """Settings from the environment (MARQUEE_*), overridden by non-empty pipeline params.

    A value the settings refuse raises ``InvalidArgumentError`` naming the field and the
    value (a pydantic error would name neither in a step's one-line summary); a
    ``registry_uri`` of no scheme MLflow knows (``mlflow:5000``) is refused here too, not
    by MLflow in the evaluate step after training."""
    from urllib.parse import urlparse

    from pydantic import ValidationError

    from marquee.errors import InvalidArgumentError, redact_uri
    from marquee.settings import Settings

    overrides: dict[str, Any] = {k: v for k, v in {
        "store_uri": store_uri, "registry_uri": registry_uri,
        "s3_endpoint_url": s3_endpoint_url, "home": home}.items() if v}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err.get("loc", ())) or "settings"
        value = err.get("input")
        raise InvalidArgumentError(field, redact_uri(value) if isinstance(value, str) else value,
                                   err.get("msg", "").removeprefix("Value error, ")) from None
    uri = settings.registry_uri
    if uri:
        parsed = urlparse(uri)
        if parsed.scheme.partition("+")[0] not in REGISTRY_SCHEMES or (
                parsed.scheme in ("http", "https") and not parsed.hostname):
            raise InvalidArgumentError(
                "registry_uri", redact_uri(uri), "not an MLflow tracking URI: use "
                "http(s)://host[:port], sqlite:///path, postgresql://… or mysql://…")
    return settings


def check_source(source: str) -> None:
    """The forms the ingest step knows; a directory is the step's to find (in a cluster it is
    a path inside the step's pod, not on this machine), and so is an ``s3://`` prefix's
    content (only its form is checked: a bucket, no user info, a prefix of plain segments)."""
    from marquee.errors import InvalidArgumentError

    kind, sep, arg = source.partition(":")
    if not source.strip():
        raise InvalidArgumentError("source", source, f"is empty: {_SOURCE_FORMS}")
    if source.startswith("s3://"):
        import re

        from marquee.errors import InvalidKeyError, redact_uri
        from marquee.store import check_key

        bucket, _, prefix = source[len("s3://"):].partition("/")
        why = ("needs a bucket: s3://bucket/prefix" if not bucket else
               "must not carry credentials: the step's S3 credentials come from its "
               "environment (AWS_ACCESS_KEY_ID, AWS_PROFILE or the pod's role)" if "@" in bucket
               else "a query or fragment (?, #) is not part of an S3 prefix"
               if "?" in source or "#" in source else
               f"{bucket!r} is not a bucket name" if not bucket.strip() or ":" in bucket
               or any(c.isspace() for c in bucket) else "")
        if not why:
            try:
                check_key(prefix, allow_empty=True)
            except InvalidKeyError as exc:
                why = f"the prefix {prefix!r}: " + exc.message.removeprefix(
                    f"invalid object key {prefix!r}: ")
        if why:  # user info in an s3:// URI is a key or a secret: masked whole
            raise InvalidArgumentError("source", redact_uri(
                re.sub(r"^s3://[^/]*@", "s3://***@", source)), why)
        return
    if kind != "synth" or not sep:
        return
    for part in filter(None, arg.split(",")):
        key, eq, value = part.partition("=")
        if key not in ("users", "items", "events", "seed") or not eq or not value.isdigit():
            raise InvalidArgumentError("source", source, f"{part!r} is not one of users=N, "
                                       "items=N, events=N, seed=N")
        if key != "seed" and int(value) < 1:
            raise InvalidArgumentError("source", source, f"{part!r}: {key} must be 1 or more")


def read_s3_source(source: str, endpoint_url: str | None = None, *,
                   max_objects: int = S3_SOURCE_MAX_OBJECTS, max_bytes: int | None = None):
    """The :class:`Dataset` of ``s3://bucket/prefix``: its table files are downloaded into a
    temporary directory, laid out as a local dataset directory is, and read and checked by
    ``validate_directory`` exactly as one (findings name ``source``, not the temporary copy).

    Only what a local directory's reading looks at is fetched: the objects directly under the
    prefix named ``interactions|users|items`` + ``.parquet|.csv|.tsv`` (any case); other
    objects named after a table (``items.csv.gz``) and "directories" (Spark's
    ``interactions.parquet/part-…``) are stood for by an empty file or directory, so the
    findings say what to change as they do locally. Nothing outside the prefix is read. A
    prefix of more than ``max_objects`` entries, or table files over ``max_bytes`` in all
    (default: the step's MARQUEE_S3_SOURCE_MAX_BYTES, else :data:`S3_SOURCE_MAX_BYTES`), is
    refused. A missing bucket, an empty prefix, refused credentials or an unreachable
    endpoint raise ``DataSourceError``, one line naming the source."""
    import tempfile

    from marquee.errors import InvalidArgumentError, MarqueeError, redact_uri
    from marquee.store import open_store
    from recsys.data.coerce import FILE_SUFFIXES
    from recsys.data.errors import DataSourceError, DataValidationError
    from recsys.data.files import TABLE_NAMES
    from recsys.data.validate import validate_directory

    check_source(source)
    if max_bytes is None:
        raw = os.environ.get("MARQUEE_S3_SOURCE_MAX_BYTES", "").strip()
        if raw and not (raw.isdigit() and int(raw) > 0):
            raise InvalidArgumentError("MARQUEE_S3_SOURCE_MAX_BYTES", raw,
                                       "must be a whole number of bytes, 1 or more")
        max_bytes = int(raw) if raw else S3_SOURCE_MAX_BYTES
    shown = redact_uri(source)
    readable = {f"{name}{suffix}" for name in TABLE_NAMES for suffix in FILE_SUFFIXES}

    def of_a_table(name: str) -> bool:
        return any(name.lower().startswith(f"{table}.") for table in TABLE_NAMES)

    with tempfile.TemporaryDirectory(prefix="marquee-s3-source-") as tmp:
        try:
            store = open_store(source.rstrip("/") or source, endpoint_url)
            files, dirs = store.list_dir(max_entries=max_objects)
            if not files and not dirs:
                raise DataSourceError(
                    f"source {shown!r}: no objects under it at "
                    f"{redact_uri(endpoint_url or 'AWS')} (an empty or mistyped prefix)")
            fetch = {name: size for name, size in files.items() if name.lower() in readable}
            total = sum(fetch.values())
            if total > max_bytes:
                raise DataSourceError(
                    f"source {shown!r}: its table files ({', '.join(sorted(fetch))}) hold "
                    f"{total} bytes, more than the {max_bytes} the ingest step downloads "
                    "(raise MARQUEE_S3_SOURCE_MAX_BYTES in the step's environment)")
            left = max_bytes
            for name in sorted(fetch):
                left -= store.get_foreign_file(name, Path(tmp, name), left)
        except MarqueeError as exc:
            raise DataSourceError(f"source {shown!r}: {redact_uri(exc.message)}") from None
        for name in [*files, *dirs]:
            if of_a_table(name) and name not in fetch:
                try:
                    if name in dirs:
                        Path(tmp, name).mkdir(exist_ok=True)
                    else:
                        Path(tmp, name).touch()
                except OSError:  # a name this file system cannot hold: never read anyway
                    pass
        try:
            return validate_directory(tmp)
        except DataValidationError as exc:
            report = [f.model_copy(update={"detail": f.detail.replace(tmp, shown)})
                      for f in exc.report]
            raise DataValidationError(report, title=f"{shown}: data validation failed") from None


def check_local_source(source: str) -> None:
    """For a run on this machine (kfp.local), whose ingest step reads this machine's file
    system: a dataset directory, or the copy of ``movielens-100k:PATH``, that is not here is
    refused before the run starts (it failed only in the ingest step). Not for a Kubeflow
    run, whose steps read a path inside their pods; a URI (``s3://…``) is not a local path
    and is left to the step. The form itself is :func:`check_source`'s to check."""
    from marquee.errors import InvalidArgumentError

    kind, _, arg = source.partition(":")
    if kind == "synth" or "://" in source:
        return
    if kind == "movielens-100k":
        if arg and not os.path.exists(arg):
            raise InvalidArgumentError("source", source, f"{arg}: no such directory or zip "
                                       "file on this machine (a MovieLens-100k copy)")
        return
    if not os.path.isdir(source):
        raise InvalidArgumentError(
            "source", source, ("not a directory" if os.path.exists(source) else
                               "no such directory on this machine")
            + ": use movielens-100k[:PATH], synth:users=N,items=N,events=N or a directory "
            "holding the dataset's tables")


def check_params(*, source: str | None = None, split_mode: str | None = None,
                 test_frac: float | None = None, val_frac: float | None = None,
                 n_trials: int | None = None, tune_timeout_seconds: int | None = None,
                 config_json: str | dict | None = None, gate_tolerance: float | None = None,
                 reference_rows: int | None = None, seed: int | None = None,
                 store_uri: str | None = None, registry_uri: str | None = None,
                 s3_endpoint_url: str | None = None, home: str | None = None) -> None:
    """Raise ``InvalidArgumentError``, naming the pipeline parameter and its value, for a
    value a step would refuse. The one place these rules live: the client checks a run's
    parameters with it before submitting, the ingest step checks them all again (a run
    started from the Kubeflow UI skips the client, and a typo must fail the first step, not
    evaluate after training), and each later step checks the ones it consumes.

    Only the parameters given are checked; a rule on two of them (test_frac + val_frac, a
    search with no validation split) needs both. ``config_json`` is checked with ``seed``
    (42 when not given), the URIs together as the step's settings (``settings_from``)."""
    from marquee.errors import InvalidArgumentError
    from marquee.gate import check_tolerance

    if source is not None:
        check_source(source)
    if split_mode is not None and split_mode not in SPLIT_MODES:
        raise InvalidArgumentError("split_mode", split_mode,
                                   f"use one of {', '.join(SPLIT_MODES)}")
    for name, frac in (("test_frac", test_frac), ("val_frac", val_frac)):
        if frac is not None and not 0 <= frac < 1:  # also False for NaN
            raise InvalidArgumentError(name, frac, "must be in [0, 1)")
    if test_frac is not None and test_frac == 0:
        raise InvalidArgumentError("test_frac", test_frac,
                                   "must be above 0: the evaluate step scores the model on the "
                                   "test split, and an unscored model must not pass the gate")
    if test_frac is not None and val_frac is not None and test_frac + val_frac >= 1:
        raise InvalidArgumentError("val_frac", val_frac,
                                   f"test_frac + val_frac must be below 1 (test_frac is "
                                   f"{test_frac}): nothing would be left to train on")
    if n_trials is not None and n_trials < 0:
        raise InvalidArgumentError("n_trials", n_trials, "must be 0 or more")
    if tune_timeout_seconds is not None and tune_timeout_seconds < 1:
        why = (f" when n_trials={n_trials}: no trial starts after the time budget, so the "
               "search would run none; set n_trials=0 to skip the search"
               if n_trials else "")
        raise InvalidArgumentError("tune_timeout_seconds", tune_timeout_seconds,
                                   f"must be 1 or more{why}")
    if n_trials and val_frac is not None and val_frac == 0:
        raise InvalidArgumentError("val_frac", val_frac,
                                   f"must be above 0 when n_trials={n_trials}: the search "
                                   "scores its trials on the validation split, and with none "
                                   "every trial scores 0 and a random one would be kept")
    if reference_rows is not None and reference_rows < 1:
        raise InvalidArgumentError("reference_rows", reference_rows,
                                   "must be 1 or more: an empty drift reference gives "
                                   "monitoring nothing to compare served requests with")
    if gate_tolerance is not None and not gate_tolerance < 0:  # negative: the step's setting
        check_tolerance(gate_tolerance)
    if config_json is not None or seed is not None:
        recommender_config(config_json if config_json is not None else "{}",
                           42 if seed is None else seed)
    if any(v is not None for v in (store_uri, registry_uri, s3_endpoint_url, home)):
        settings_from(store_uri or "", registry_uri or "", s3_endpoint_url or "", home or "")


def link_tree(src: str | Path, dst: str | Path) -> None:
    """Copy a directory of artifacts, hard-linking files where the filesystem allows.

    A model save killed mid-way (``recsys.persist.save``) leaves ``.model.<hex>.part`` or
    ``.model.<hex>.old`` beside ``model/``: those, and what is in them, are not copied."""
    from fnmatch import fnmatchcase

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        if any(fnmatchcase(part, pattern) for part in rel.parts
               for pattern in (".model.*.part", ".model.*.old")):
            continue
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def write_json(path: str | Path, data: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def read_tables(dataset_path: str | Path, *parts: str | Path):
    """users and items from the validated dataset and the concatenated interactions parts."""
    import pandas as pd

    from recsys.data.parquet import read_parquet

    base = Path(dataset_path)
    inter = pd.concat([read_parquet(Path(p) / "interactions.parquet") for p in parts],
                      ignore_index=True)
    return inter, read_parquet(base / "users.parquet"), read_parquet(base / "items.parquet")
