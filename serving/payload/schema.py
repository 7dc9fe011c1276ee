"""The payload-log row (docs/CONTRACTS.md, "Payload and feedback logs") and its Arrow schema.

One row per answered request: ``request_id, ts, model_version, variant, user_id, k,
cold_start, fallback, status, latency_ms, items, scores, request_json, response_json`` and
one ``f_<name>`` column per ``recsys.features.FEATURE_SPEC`` feature (strings for
categorical features, float64 for numeric ones; null when the feature vector is unknown).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from recsys.features import FEATURE_SPEC

__all__ = ["PAYLOAD_PREFIX", "BASE_FIELDS", "payload_schema", "payload_row", "partition_key",
           "rows_to_table"]

PAYLOAD_PREFIX = "payload-logs"

BASE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("ts", pa.float64(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("variant", pa.string()),
    pa.field("user_id", pa.int64()),
    pa.field("k", pa.int64()),
    pa.field("cold_start", pa.bool_()),
    pa.field("fallback", pa.bool_()),
    pa.field("status", pa.int64(), nullable=False),
    pa.field("latency_ms", pa.float64()),
    pa.field("items", pa.list_(pa.int64())),
    pa.field("scores", pa.list_(pa.float64())),
    pa.field("request_json", pa.string()),
    pa.field("response_json", pa.string()),
)


def payload_schema() -> pa.Schema:
    feats = [pa.field(f"f_{name}", pa.string() if kind == "categorical" else pa.float64())
             for name, kind in FEATURE_SPEC.items()]
    return pa.schema([*BASE_FIELDS, *feats])


_SCHEMA = payload_schema()
_FEATURE_KINDS = {f"f_{n}": k for n, k in FEATURE_SPEC.items()}


def _feature_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "categorical":
        return str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def payload_row(*, request_id: str, ts: float, model_version: str, variant: str | None,
                user_id: int | None, k: int | None, cold_start: bool | None,
                fallback: bool | None, status: int, latency_ms: float | None,
                items: Sequence[int] | None, scores: Sequence[float] | None,
                request_json: str | None, response_json: str | None,
                features: Mapping[str, Any] | None) -> dict[str, Any]:
    """A row as a plain dict with exactly the schema's columns."""
    row: dict[str, Any] = {
        "request_id": request_id, "ts": float(ts), "model_version": str(model_version),
        "variant": variant or "", "user_id": user_id, "k": k, "cold_start": cold_start,
        "fallback": fallback, "status": int(status), "latency_ms": latency_ms,
        "items": list(items) if items is not None else None,
        "scores": list(scores) if scores is not None else None,
        "request_json": request_json, "response_json": response_json,
    }
    feats = features or {}
    for col, kind in _FEATURE_KINDS.items():
        row[col] = _feature_value(kind, feats.get(col[2:]))
    return row


#: Longest ``model_version=`` path segment. Bundle versions are ~25 characters; a longer value
#: (the payload sink takes it from the sender) keeps its first characters and a hash of the
#: whole, so distinct versions stay in distinct partitions and a key stays short.
MAX_VERSION_SEGMENT = 64


def _safe_segment(value: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in value) or "unknown"
    if len(safe) <= MAX_VERSION_SEGMENT:
        return safe
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{safe[:MAX_VERSION_SEGMENT - 17]}-{digest}"


def partition_key(ts: float, model_version: str) -> str:
    """``payload-logs/date=YYYY-MM-DD/hour=HH/model_version=V`` for a row's time (UTC)."""
    when = datetime.fromtimestamp(ts, tz=timezone.utc)
    return (f"{PAYLOAD_PREFIX}/date={when:%Y-%m-%d}/hour={when:%H}/"
            f"model_version={_safe_segment(str(model_version))}")


def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=_SCHEMA)
