"""The skew check: served feature vectors against an offline recomputation, request by request.

The payload logs hold what serving computed for each request (``f_<feature>``). The same
features are recomputed offline with the training pipeline's feature code — a function
taken as a parameter (``recsys.features.request_features`` in production) — from the same
user, history and timestamp, and each logged request is compared with its own recomputation
(reported by ``request_id``). Per feature:

* mismatch rate: share of joined requests whose values differ (categories: not equal;
  numbers: beyond ``atol + rtol * |offline|``) — catches a bug on every request even when the
  served distribution still looks plausible;
* distance: the distribution distance between served and recomputed values (normed
  Wasserstein for numbers, Jensen-Shannon for categories), to tell a shift from a shuffle;
  a number whose offline values are constant in the window is normed by the spread of both
  sides instead (``wasserstein_pooled``, 0 to 2), not by Evidently's floor of 0.001;
* examples: a few request ids with both values, for the engineer who fixes it.

Rows without logged features (every ``f_*`` null: what KServe's logger writes through the
payload sink) are left out and counted (``rows_without_features``): a null served value is
not evidence of skew. A window of such rows only is no data. So are sampled rows that cannot
be recomputed, from a foreign or hand-made log: a ``user_id`` that is null or no integer, a
``history`` item in the request body that is no item id (``rows_unreadable``, the first one
named in ``unreadable_example``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from monitoring.drift.rows import no_logged_features, split_featured
from monitoring.drift.stats import (SPREAD_FLOOR, finite, jensenshannon_counts, unit_scale,
                                    w1_sorted, wasserstein_norm)
from monitoring.errors import MonitoringInputError, NoDataError
from serving.fields import MAX_HISTORY, History, short_repr

__all__ = ["FeatureFn", "Recompute", "SkewConfig", "SkewFeatureResult", "SkewSummary",
           "OfflineRecompute", "request_history", "request_demographics", "compare", "run_skew"]

#: (user demographics or None, history item ids, unix ts) -> {feature: value}
FeatureFn = Callable[[Mapping[str, object] | None, Sequence[int], float], Mapping[str, object]]
#: requests [request_id, user_id, ts, request_json] -> [request_id, <feature>...]
#: (``run_skew`` passes one unique ``request_id`` key per sampled row, to be returned as is)
Recompute = Callable[[pd.DataFrame], pd.DataFrame]

DEMOGRAPHICS = ("age_bucket", "gender", "occupation", "region")
_INT64 = (-(2**63), 2**63 - 1)
#: the model server's rule for a request's history items, not a third copy of it
_HISTORY = TypeAdapter(History)


class SkewConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mismatch_threshold: float = Field(0.01, ge=0, le=1, description="A feature is skewed when "
                                      "more than this share of requests mismatch.")
    rtol: float = Field(1e-4, ge=0)
    atol: float = Field(1e-6, ge=0)
    max_requests: int = Field(20_000, ge=1, description="Requests recomputed per check "
                              "(a random sample of the window).")
    examples: int = Field(3, ge=0)
    seed: int = 0


class SkewExample(BaseModel):
    request_id: str
    served: object
    offline: object


class SkewFeatureResult(BaseModel):
    name: str
    kind: str
    compared: int
    mismatches: int
    mismatch_rate: float
    threshold: float
    skewed: bool
    distance: float | None
    distance_method: str = Field(description="jensenshannon, wasserstein (normed by the "
                                 "offline spread, as the drift check), or wasserstein_pooled "
                                 "(the offline values are constant: normed by both sides' "
                                 "spread, 0 to 2)")
    examples: list[SkewExample] = Field(default_factory=list)


class SkewSummary(BaseModel):
    created: datetime
    model_name: str
    model_version: str
    window_rows: int
    rows_without_features: int = Field(0, description="Window rows left out: every f_* null "
                                       "(KServe's logger sink logs no features).")
    rows_unreadable: int = Field(0, description="Sampled rows left out: they cannot be "
                                 "recomputed (user_id null or no integer, a history item that "
                                 "is no item id: a foreign or hand-made log).")
    unreadable_example: str | None = Field(None, description="The first of them: its request "
                                           "id and what is wrong with it.")
    requests_sampled: int
    joined: int
    unmatched: int
    features: list[SkewFeatureResult]
    skewed_features: list[str]
    skew_detected: bool
    timings_seconds: dict[str, float] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    push_error: str | None = Field(None, description="Why the gauges did not reach the "
                                   "Pushgateway (the alerts do not see this verdict; exit 1)")


def _request_instance(request_json: object) -> dict | None:
    """The one instance of a logged request (router or KServe V1 body), else None."""
    if request_json is None or (isinstance(request_json, float) and np.isnan(request_json)):
        return None
    try:
        body = json.loads(request_json) if isinstance(request_json, (str, bytes)) \
            else request_json
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("instances"), list) and body["instances"]:
        body = body["instances"][0]
    return body if isinstance(body, dict) else None


def _item_ids(history: list) -> list[int]:
    """``history`` checked by the model server's own rule (``serving.fields.History``: at
    most ``MAX_HISTORY`` items, each a JSON integer from 1 to int64's max, no text, no bool, no
    float), so that a row the model server would have refused is not recomputed as if it had
    been served; ValueError naming the first item that is no item id, or the length."""
    try:
        return _HISTORY.validate_python(history)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "too_long":
            raise ValueError(f"history of {len(history)} items is longer than the model "
                             f"server's {MAX_HISTORY}") from None
        raise ValueError(f"history item {short_repr(first.get('input'), 40)} is not an item "
                         "id") from None


def request_history(request_json: object) -> list[int] | None:
    """The ``history`` a request carried (router or KServe V1 body), else None; ValueError
    naming an item that is no item id (``serving.fields.ItemId``)."""
    body = _request_instance(request_json)
    if body is not None and isinstance(body.get("history"), list):
        return _item_ids(body["history"])
    return None


def _unreadable(user_id: object, request_json: object) -> str | None:
    """Why a payload row cannot be recomputed offline, or None when it can."""
    if user_id is None or (isinstance(user_id, float) and np.isnan(user_id)):
        return "user_id is null"
    try:
        uid = int(user_id)  # type: ignore[call-overload]
        if uid != user_id or not _INT64[0] <= uid <= _INT64[1]:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        return f"user_id {short_repr(user_id, 40)} is not an integer"
    if uid < 1:  # the model server's rule (serving.fields.UserId): it refused this request
        return f"user_id {uid} is not a user id (ids start at 1)"
    try:
        request_history(request_json)
    except ValueError as exc:
        return str(exc)
    return None


def request_demographics(request_json: object) -> dict[str, object] | None:
    """The ``demographics`` a request carried for a user the model has no record of, else
    None."""
    body = _request_instance(request_json)
    demo = body.get("demographics") if body is not None else None
    return {k: v for k, v in demo.items() if k in DEMOGRAPHICS} if isinstance(demo, dict) \
        else None


class OfflineRecompute:
    """Recompute each request's features with ``features_fn`` from the user table.

    ``users``: ``user_id``, the demographics, and ``history`` (item ids, most recent last) —
    the bundle's ``model/user_features.parquet``. A request's own ``history`` wins over the
    stored one, and its ``demographics`` stand in for a user the table does not hold, as in
    serving (``Recommender.user_state``).
    """

    def __init__(self, features_fn: FeatureFn, users: pd.DataFrame) -> None:
        self.features_fn = features_fn
        cols = [c for c in DEMOGRAPHICS if c in users.columns]
        self._demo = {int(u): dict(zip(cols, vals)) for u, *vals in
                      users[["user_id", *cols]].itertuples(index=False, name=None)}
        self._history = ({int(u): list(h) if h is not None else [] for u, h in
                          zip(users["user_id"], users["history"])}
                         if "history" in users.columns else {})

    def __call__(self, requests: pd.DataFrame) -> pd.DataFrame:
        rows = []
        has_json = "request_json" in requests.columns
        for rid, uid, ts, body in zip(requests["request_id"], requests["user_id"],
                                      requests["ts"],
                                      requests["request_json"] if has_json
                                      else [None] * len(requests)):
            uid = int(uid)
            history = request_history(body)
            if history is None:
                history = self._history.get(uid, [])
            user = self._demo[uid] if uid in self._demo else request_demographics(body)
            feats = dict(self.features_fn(user, history, float(ts)))
            feats["request_id"] = rid
            rows.append(feats)
        return pd.DataFrame(rows)


def _mismatch(kind: str, served: pd.Series, offline: pd.Series, cfg: SkewConfig) -> np.ndarray:
    if kind == "categorical":
        s = served.astype(object).where(served.notna(), None).to_numpy()
        o = offline.astype(object).where(offline.notna(), None).to_numpy()
        return np.array([a != b for a, b in zip(s.astype(str), o.astype(str))])
    s = pd.to_numeric(served, errors="coerce").to_numpy(np.float64)
    o = pd.to_numeric(offline, errors="coerce").to_numpy(np.float64)
    both_nan = np.isnan(s) & np.isnan(o)
    close = np.abs(s - o) <= cfg.atol + cfg.rtol * np.abs(o)
    return ~(close | both_nan)


def _distance(kind: str, served: pd.Series, offline: pd.Series) -> tuple[float | None, str]:
    try:
        if kind == "categorical":
            return jensenshannon_counts(offline.astype(str).value_counts().to_dict(),
                                        served.astype(str).value_counts().to_dict(),
                                        1.0).score, "jensenshannon"
        return _numeric_distance(pd.to_numeric(served, errors="coerce").to_numpy(np.float64),
                                 pd.to_numeric(offline, errors="coerce").to_numpy(np.float64))
    except ValueError:
        return None, "wasserstein" if kind == "numeric" else "jensenshannon"


def _numeric_distance(served: np.ndarray, offline: np.ndarray) -> tuple[float, str]:
    """The drift check's normed Wasserstein (Evidently's: W1 / max(std(offline), 0.001)),
    unless the offline values have no spread (a constant feature in the window: one hour of
    day in a window within an hour, no history on any request). There Evidently's floor made
    the distance W1 × 1000 (1000.0 for an hour of day off by one): a number on no scale, on
    the report, in the alert's text and on the dashboard. W1 is then normed by the spread of
    both sides together (``wasserstein_pooled``): 0 when they are the same constant, 2 when
    served is another constant on every request, never above 2 while each request has a
    finite value on both sides: the scale of the other features' distances. ValueError when
    a side has no finite value.

    Values past about 1e154 overflow a spread's squares: W1 and the spread are taken of both
    sides scaled by a power of two (the drift check's ``unit_scale``), which leaves the
    distance as it is (a constant served as 1e160 for an offline 0, the kind of serving bug
    this check is for, read 0.0, as if the two agreed).
    """
    o, s = finite(offline), finite(served)
    if o.size == 0 or s.size == 0 or _spread(o) >= SPREAD_FLOOR:
        return wasserstein_norm(offline, served, 1.0, sample_rows=10**9, exact_margin=0,
                                rng=np.random.default_rng(0)).score, "wasserstein"
    o, s, e = unit_scale(o, s)  # the drift check's guard: huge values by a power of two
    norm = float(np.std(np.concatenate([o, s])))
    return (w1_sorted(np.sort(o), np.sort(s)) / max(norm, math.ldexp(SPREAD_FLOOR, -e)),
            "wasserstein_pooled")


def _magnitude(x: np.ndarray) -> float:
    """The largest |value| of finite ``x`` (1.0 when all are 0): what to divide it by."""
    return float(np.max(np.abs(x))) or 1.0


def _spread(x: np.ndarray) -> float:
    """The standard deviation of finite ``x``, without overflow or the rounding a constant of
    large values shows (a constant 1e160 is 0, not 1e144: offline constant all the same)."""
    m = _magnitude(x)
    return float(np.std(x / m)) * m


def _jsonable(v: object) -> object:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def compare(served: pd.DataFrame, offline: pd.DataFrame, kinds: Mapping[str, str],
            cfg: SkewConfig) -> tuple[list[SkewFeatureResult], int]:
    """Join on request_id and compare every feature; returns (results, joined rows)."""
    joined = served.merge(offline, on="request_id", how="inner", suffixes=("", "__offline"))
    results = []
    for name, kind in kinds.items():
        col = f"f_{name}"
        if col not in joined.columns:
            raise MonitoringInputError(f"payload logs have no column {col!r}")
        if name not in offline.columns:
            raise MonitoringInputError(f"the offline recomputation returned no {name!r}")
        s, o = joined[col], joined[name]
        bad = _mismatch(kind, s, o, cfg)
        n = int(len(joined))
        rate = float(bad.mean()) if n else 0.0
        dist, method = _distance(kind, s, o) if n else (None, "")
        idx = np.flatnonzero(bad)[: cfg.examples]
        examples = [SkewExample(request_id=str(joined["request_id"].iat[i]),
                                served=_jsonable(s.iat[i]), offline=_jsonable(o.iat[i]))
                    for i in idx]
        results.append(SkewFeatureResult(
            name=name, kind=kind, compared=n, mismatches=int(bad.sum()), mismatch_rate=rate,
            threshold=cfg.mismatch_threshold, skewed=rate > cfg.mismatch_threshold,
            distance=dist, distance_method=method, examples=examples))
    return results, int(len(joined))


def run_skew(window: pa.Table, recompute: Recompute, kinds: Mapping[str, str], cfg: SkewConfig,
             *, model_name: str, model_version: str) -> SkewSummary:
    """Sample the window, recompute offline, join each row with its recomputation, compare."""
    needed = ["request_id", "user_id", "ts"]
    missing = [c for c in needed if c not in window.column_names]
    if missing:
        raise MonitoringInputError(f"payload logs have no column(s) {missing}")
    if window.num_rows == 0:
        raise NoDataError("no requests to compare")
    featured, without = split_featured(window, [f"f_{n}" for n in kinds])
    if featured.num_rows == 0:
        raise no_logged_features(without, None, "the skew check")
    timings = {}
    rng = np.random.default_rng(cfg.seed)
    take = featured
    if featured.num_rows > cfg.max_requests:
        take = featured.take(np.sort(rng.choice(featured.num_rows, cfg.max_requests,
                                                replace=False)))
    cols = needed + [c for c in ("request_json",) if c in take.column_names] + \
        [f"f_{n}" for n in kinds if f"f_{n}" in take.column_names]
    served = take.select(cols).to_pandas()
    # Each row is compared with its own recomputation, under a key unique to the row: request
    # ids a client sends (x-request-id, the body's request_id) can repeat (a retry, a client
    # numbering its requests from 1 again) and a join on them paired every row of an id with
    # every recomputation of it: other requests' features, reported as skew, in a join
    # that grows with the square of the repeats.
    request_ids = served["request_id"].to_numpy(dtype=object, copy=True)
    served["request_id"] = np.arange(len(served)).astype(str)
    # rows the offline side cannot recompute (a foreign or hand-made log) are left out and
    # counted, as the rows without features are: a verdict on the others still stands
    reasons = [_unreadable(u, b) for u, b in zip(
        served["user_id"], served["request_json"] if "request_json" in served.columns
        else [None] * len(served))]
    bad = np.array([r is not None for r in reasons], dtype=bool)
    unreadable, example = int(bad.sum()), None
    if unreadable:
        first = int(np.flatnonzero(bad)[0])
        example = f"request {request_ids[first]}: {reasons[first]}"
        if unreadable == len(served):
            raise NoDataError(f"none of the {unreadable:,} sampled payload rows can be "
                              f"recomputed offline (e.g. {example}); the skew check needs "
                              "rows the model server logged")
        served = served[~bad].reset_index(drop=True)
    t = time.perf_counter()
    offline = recompute(served[[c for c in ("request_id", "user_id", "ts", "request_json")
                                if c in served.columns]])
    timings["recompute"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    results, joined = compare(served.drop(columns=["request_json"], errors="ignore"), offline,
                              kinds, cfg)
    for r in results:  # examples name the requests as they were logged
        for ex in r.examples:
            ex.request_id = str(request_ids[int(ex.request_id)])
    timings["compare"] = round(time.perf_counter() - t, 3)
    skewed = [r.name for r in results if r.skewed]
    return SkewSummary(
        created=datetime.now(timezone.utc), model_name=model_name, model_version=model_version,
        window_rows=window.num_rows, rows_without_features=without,
        rows_unreadable=unreadable, unreadable_example=example,
        requests_sampled=take.num_rows, joined=joined,
        unmatched=take.num_rows - unreadable - joined, features=results, skewed_features=skewed,
        skew_detected=bool(skewed), timings_seconds=timings)
