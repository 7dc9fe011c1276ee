"""Helpers shared by the component bodies (imported inside them, at run time)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["settings_from", "check_params", "check_source", "check_local_source", "link_tree",
           "write_json", "read_json", "read_tables", "recommender_config", "SPLIT_MODES",
           "REGISTRY_SCHEMES"]

SPLIT_MODES = ("user_temporal", "temporal", "user_random")  # the split step's ``mode``
#: URI schemes MLflow keeps a registry on ("": a local path); "+driver" is allowed after the
#: database ones (postgresql+psycopg2://…)
REGISTRY_SCHEMES = ("", "file", "http", "https", "sqlite", "postgresql", "mysql", "mssql",
                    "databricks", "databricks-uc", "uc")


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
    a path inside the step's pod, not on this machine)."""
    from marquee.errors import InvalidArgumentError

    kind, sep, arg = source.partition(":")
    if not source.strip():
        raise InvalidArgumentError("source", source, "is empty: use movielens-100k[:PATH], "
                                   "synth:users=N,items=N,events=N or a dataset directory")
    if kind != "synth" or not sep:
        return
    for part in filter(None, arg.split(",")):
        key, eq, value = part.partition("=")
        if key not in ("users", "items", "events", "seed") or not eq or not value.isdigit():
            raise InvalidArgumentError("source", source, f"{part!r} is not one of users=N, "
                                       "items=N, events=N, seed=N")
        if key != "seed" and int(value) < 1:
            raise InvalidArgumentError("source", source, f"{part!r}: {key} must be 1 or more")


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
    """Copy a directory of artifacts, hard-linking files where the filesystem allows."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
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

    base = Path(dataset_path)
    inter = pd.concat([pd.read_parquet(Path(p) / "interactions.parquet") for p in parts],
                      ignore_index=True)
    return inter, pd.read_parquet(base / "users.parquet"), pd.read_parquet(base / "items.parquet")
