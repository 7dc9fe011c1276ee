"""Online quality per model version: click-through from the router's logs, and a rolling
NDCG on replayed ground truth.

* **Click-through** (:func:`click_through_by_version`): of the lists the router served
  (``exposure-logs``, one row per served list with its ``model_version``), the share that got
  at least one click (``feedback-logs``, joined by ``request_id``). The router also exports
  ``marquee_router_click_through_ratio`` per *variant*; here it is per *version*, over any
  window of the logs, which is what a version's history needs.
* **Rolling NDCG@k** (:class:`RollingNDCG`, :func:`rolling_ndcg`): when traffic is replayed
  from held-out interactions, each request's ground truth is what that user really went on to
  interact with. NDCG@k of each served list against it, per model version, over the last
  ``window`` lists (live) or per time bucket (from the exposure logs afterwards). Binary
  relevance, ideal DCG over ``min(k, |truth|)`` items, as in ``recsys.metrics``' offline NDCG.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["ndcg_at_k", "RollingNDCG", "VersionCTR", "click_through", "click_through_by_version",
           "rolling_ndcg", "read_logs"]

EXPOSURE_PREFIX = "exposure-logs"
FEEDBACK_PREFIX = "feedback-logs"
_DISCOUNT = 1.0 / np.log2(np.arange(2, 502))


def ndcg_at_k(items: Sequence[int], truth: Iterable[int], k: int = 10) -> float:
    """Binary-relevance NDCG@k of one list; 0 when the user has no ground truth."""
    relevant = truth if isinstance(truth, (set, frozenset)) else set(truth)
    if not relevant:
        return 0.0
    top = list(items)[:k]
    dcg = sum(_DISCOUNT[i] for i, item in enumerate(top) if item in relevant)
    ideal = float(_DISCOUNT[: min(k, len(relevant))].sum())
    return float(dcg / ideal)


class RollingNDCG:
    """NDCG@k per model version over its last ``window`` lists (users without ground truth
    are not counted)."""

    def __init__(self, k: int = 10, window: int = 500) -> None:
        self.k, self.window = k, window
        self._values: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, version: str, items: Sequence[int], truth: Iterable[int]) -> float | None:
        truth = truth if isinstance(truth, (set, frozenset)) else set(truth)
        if not truth:
            return None
        value = ndcg_at_k(items, truth, self.k)
        self._values[str(version)].append(value)
        self.counts[str(version)] += 1
        return value

    def value(self, version: str) -> float | None:
        values = self._values.get(str(version))
        return float(np.mean(values)) if values else None

    def summary(self) -> dict[str, dict[str, float]]:
        return {v: {"ndcg": float(np.mean(q)), "lists": len(q), "seen": self.counts[v]}
                for v, q in self._values.items() if q}


@dataclass(frozen=True)
class VersionCTR:
    version: str
    exposures: int
    clicked: int

    @property
    def ctr(self) -> float | None:
        return self.clicked / self.exposures if self.exposures else None

    def interval(self, z: float = 1.96) -> tuple[float, float] | None:
        """Wilson score interval of the click-through rate."""
        n = self.exposures
        if not n:
            return None
        p = self.clicked / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        return max(0.0, centre - half), min(1.0, centre + half)


def click_through(exposures: pd.DataFrame, feedback: pd.DataFrame,
                  events: Sequence[str] = ("click", "watch")) -> dict[str, VersionCTR]:
    """Per model version: served lists, and those with at least one ``events`` feedback."""
    if exposures.empty:
        return {}
    clicked_ids = set(feedback.loc[feedback["event"].isin(events), "request_id"]) \
        if not feedback.empty else set()
    ex = exposures[["request_id", "model_version"]].drop_duplicates("request_id")
    ex = ex.assign(clicked=ex["request_id"].isin(clicked_ids))
    out = {}
    for version, g in ex.groupby("model_version", sort=True):
        out[str(version)] = VersionCTR(str(version), int(len(g)), int(g["clicked"].sum()))
    return out


def read_logs(store: object, prefix: str, since: str, until: str = "now",
              columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of the router's ``exposure-logs`` or ``feedback-logs`` inside a window (empty
    frame when there are none)."""
    from monitoring.errors import NoDataError
    from monitoring.window import list_window_keys, parse_window, read_window

    window = parse_window(since, until)
    keys = list_window_keys(store, window, prefix=prefix)  # type: ignore[arg-type]
    try:
        table = read_window(store, keys, window, columns)  # type: ignore[arg-type]
    except NoDataError:
        return pd.DataFrame(columns=list(columns or []))
    return table.to_pandas()


def click_through_by_version(store: object, since: str, until: str = "now"
                             ) -> dict[str, VersionCTR]:
    """Click-through per model version over a window of the router's logs in ``store``."""
    exposures = read_logs(store, EXPOSURE_PREFIX, since, until,
                          ["request_id", "ts", "model_version"])
    feedback = read_logs(store, FEEDBACK_PREFIX, since, until, ["request_id", "ts", "event"])
    return click_through(exposures, feedback)


def rolling_ndcg(exposures: pd.DataFrame, truth: Mapping[int, Iterable[int]], *, k: int = 10,
                 bucket_seconds: float = 30.0, window_buckets: int = 2) -> pd.DataFrame:
    """NDCG@k per model version and time bucket, each value the mean over the last
    ``window_buckets`` buckets (a rolling window), from exposure rows ``ts, user_id,
    model_version, items``. Users not in ``truth`` are left out."""
    cols = ["bucket_start", "model_version", "ndcg", "lists"]
    if exposures.empty:
        return pd.DataFrame(columns=cols)
    sets = {int(u): frozenset(int(i) for i in items) for u, items in truth.items()}
    rows = []
    for ts, user, version, items in zip(exposures["ts"], exposures["user_id"],
                                        exposures["model_version"], exposures["items"]):
        t = sets.get(int(user))
        if t:
            rows.append((math.floor(float(ts) / bucket_seconds) * bucket_seconds, str(version),
                         ndcg_at_k([int(i) for i in items], t, k)))
    if not rows:
        return pd.DataFrame(columns=cols)
    frame = pd.DataFrame(rows, columns=["bucket_start", "model_version", "ndcg"])
    per = frame.groupby(["model_version", "bucket_start"])["ndcg"].agg(["sum", "count"])
    out = []
    for version, g in per.groupby(level=0):
        g = g.droplevel(0).sort_index()
        sums = g["sum"].rolling(window_buckets, min_periods=1).sum()
        counts = g["count"].rolling(window_buckets, min_periods=1).sum()
        for start in g.index:
            out.append((float(start), str(version), float(sums[start] / counts[start]),
                        int(counts[start])))
    return pd.DataFrame(out, columns=cols).sort_values(["bucket_start", "model_version"],
                                                       ignore_index=True)

