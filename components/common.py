"""Helpers shared by the component bodies (imported inside them, at run time)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["settings_from", "link_tree", "write_json", "read_json", "read_tables",
           "recommender_config", "SPLIT_MODES"]

SPLIT_MODES = ("user_temporal", "temporal", "user_random")  # the split step's ``mode``


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
        overrides = (json.loads(config_json or "{}") if isinstance(config_json, str)
                     else config_json)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError("config_json", config_json, f"not JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise InvalidArgumentError("config_json", config_json, "must be a JSON object")
    merged = deep_merge(RecommenderConfig(seed=seed).model_dump(), overrides)
    try:
        return RecommenderConfig.model_validate(deep_merge(merged, tuned or {}))
    except ValidationError as exc:
        raise InvalidArgumentError("config_json", config_json, validation_text(exc)) from None


def settings_from(store_uri: str = "", registry_uri: str = "", s3_endpoint_url: str = "",
                  home: str = ""):
    """Settings from the environment (MARQUEE_*), overridden by non-empty pipeline params."""
    from marquee.settings import Settings

    overrides: dict[str, Any] = {k: v for k, v in {
        "store_uri": store_uri, "registry_uri": registry_uri,
        "s3_endpoint_url": s3_endpoint_url, "home": home}.items() if v}
    return Settings(**overrides)


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
