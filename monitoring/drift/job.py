"""The drift check: a payload-log window against a model's training reference.

``run_check`` is pure computation (tables in, ``DriftSummary`` out); ``monitoring.drift.cli``
reads the inputs, publishes the summary and the reports, and exports the gauges.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from monitoring.drift.config import DriftConfig, ResolvedFeature
from monitoring.drift.embedding import EmbeddingSource, embedding_drift
from monitoring.drift.prediction import ItemLookup, prediction_drift, top_scores
from monitoring.drift.stats import (
    finite,
    score_categorical,
    score_numeric,
    to_float,
    unit_scale,
    value_counts,
)
from monitoring.drift.summary import (
    DriftSummary,
    EmbeddingResult,
    FeatureResult,
    Histogram,
    PredictionResult,
    WindowInfo,
)
from monitoring.errors import MonitoringInputError, NoDataError
from monitoring.reference import Reference

__all__ = ["window_columns", "dictionary_columns", "require_columns", "check_features",
           "run_check"]


def window_columns(config: DriftConfig) -> list[str]:
    """Payload-log columns the drift check reads."""
    return [f.column for f in config.resolved()] + ["ts", "model_version", "user_id", "items",
                                                    "scores"]


def dictionary_columns(config: DriftConfig) -> list[str]:
    """String columns read dictionary-encoded (categorical features, model_version)."""
    return [f.column for f in config.resolved() if f.kind == "categorical"] + ["model_version"]


def _too_few(config: DriftConfig, values: int) -> str | None:
    """Why a feature with ``values`` logged values in the window gets no verdict, if so."""
    if values >= config.min_rows:
        return None
    return (f"only {values:,} values in the window; a drift verdict needs at least "
            f"{config.min_rows} (min_rows in the drift config)")


def require_columns(config: DriftConfig, reference: pa.Table, window: pa.Table) -> None:
    """MonitoringInputError naming the first configured feature the reference or the window
    lacks (before anything, Evidently's report worker included, selects them)."""
    for f in config.resolved():
        if f.name not in reference.column_names:
            raise MonitoringInputError(f"reference has no column {f.name!r} "
                                       f"(columns: {', '.join(reference.column_names)})")
        if f.column not in window.column_names:
            raise MonitoringInputError(f"payload logs have no column {f.column!r}")


def check_features(config: DriftConfig, reference: pa.Table, window: pa.Table,
                   rng: np.random.Generator) -> list[FeatureResult]:
    """One result per configured feature. min_rows holds per feature as for the window:
    a feature logged on a few rows only (payload files of an older schema without its
    column, a serving path that leaves it null) is skipped, never judged on a handful of
    values, which "drift" by chance."""
    require_columns(config, reference, window)
    out = []
    for f in config.resolved():
        try:
            if f.kind == "categorical":
                ref_c = value_counts(reference.column(f.name))
                cur_c = value_counts(window.column(f.column))
                skip = _too_few(config, sum(cur_c.values()))
                if skip:
                    out.append(_skipped(f, sum(ref_c.values()), sum(cur_c.values()), skip))
                    continue
                s = score_categorical(f.method, ref_c, cur_c, f.threshold,
                                      sample_rows=config.sample_rows, rng=rng)
                hist = category_histogram(ref_c, cur_c)
            else:
                ref_x = finite(to_float(reference.column(f.name)))
                cur_x = finite(to_float(window.column(f.column)))
                skip = _too_few(config, cur_x.size)
                if skip:
                    out.append(_skipped(f, ref_x.size, cur_x.size, skip))
                    continue
                s = score_numeric(f.method, ref_x, cur_x, f.threshold,
                                  sample_rows=config.sample_rows,
                                  exact_margin=config.exact_margin, rng=rng)
                hist = numeric_histogram(ref_x, cur_x, rng)
        except (ValueError, TypeError, pa.ArrowInvalid) as exc:
            raise MonitoringInputError(f"feature {f.name!r}: {exc}") from exc
        out.append(FeatureResult(name=f.name, kind=f.kind, method=f.method,
                                 threshold=f.threshold, score=s.score, drifted=s.drifted,
                                 rows_reference=s.rows_reference, rows_current=s.rows_current,
                                 exact=s.exact, histogram=hist))
    return out


def _skipped(f: ResolvedFeature, reference_values: int, values: int, why: str
             ) -> FeatureResult:
    return FeatureResult(name=f.name, kind=f.kind, method=f.method, threshold=f.threshold,
                         score=math.nan, drifted=False, rows_reference=reference_values,
                         rows_current=values, exact=True, skipped=why)


def category_histogram(ref: dict, cur: dict, top: int = 10) -> Histogram:
    """Shares of the most frequent categories (either side) and of the rest."""
    n_ref, n_cur = max(sum(ref.values()), 1), max(sum(cur.values()), 1)
    keys = sorted(set(ref) | set(cur), key=lambda k: -max(ref.get(k, 0) / n_ref,
                                                          cur.get(k, 0) / n_cur))
    shown, rest = keys[:top], keys[top:]
    r = [ref.get(k, 0) / n_ref for k in shown]
    c = [cur.get(k, 0) / n_cur for k in shown]
    labels = [str(k) for k in shown]
    if rest:
        labels.append("other")
        r.append(1 - sum(r))
        c.append(1 - sum(c))
    return Histogram(labels=labels, reference=r, current=c)


def numeric_histogram(ref: np.ndarray, cur: np.ndarray, rng: np.random.Generator,
                      bins: int = 12, sample: int = 200_000) -> Histogram | None:
    """Shares per bin over the central 99% of both (ends folded into the outer bins). Bins
    of values past ~1e144 are taken on them scaled by a power of two (:func:`unit_scale`;
    ``hi - lo`` of values near ±1.8e308 is inf: bins labelled nan and inf) and labelled
    with the values themselves."""
    if ref.size == 0 or cur.size == 0:
        return None
    if cur.size > sample:
        cur = cur[rng.integers(0, cur.size, sample)]
    ref, cur, scale = unit_scale(ref, cur)
    both = np.concatenate([ref, cur])
    lo, hi = np.quantile(both, [0.005, 0.995])
    if hi <= lo:
        lo, hi = float(both.min()), float(both.max()) + 1e-9
    edges = np.linspace(lo, hi, bins + 1)
    r = np.bincount(np.clip(np.searchsorted(edges, ref, "right") - 1, 0, bins - 1),
                    minlength=bins) / ref.size
    c = np.bincount(np.clip(np.searchsorted(edges, cur, "right") - 1, 0, bins - 1),
                    minlength=bins) / cur.size
    return Histogram(labels=[f"{np.ldexp(e, scale):.3g}" for e in edges[:-1]],
                     reference=r.tolist(), current=c.tolist())


def _version_counts(window: pa.Table) -> dict[str, int]:
    if "model_version" not in window.column_names:
        return {}
    return {str(k): v for k, v in value_counts(window.column("model_version")).items()}


def _served_by(window: pa.Table, version: str, versions: dict[str, int]
               ) -> tuple[pa.Table | None, str | None]:
    """Rows answered by ``version`` (prediction drift is about one model's answers)."""
    if not versions or version in versions and len(versions) == 1:
        return window, None
    if version in versions:
        return window.filter(pc.equal(window.column("model_version").cast(pa.string()),
                                      version)), None
    if len(versions) == 1:  # the logs name the version differently (e.g. registry number)
        return window, None
    return None, (f"no rows served by model version {version} (window has "
                  f"{', '.join(sorted(versions))}); pass --model-version")


def _reference_scores(reference: Reference) -> np.ndarray | None:
    """Top scores at training time: the features' ``score`` column when the reference has
    one, else the rank-1 score of each reference recommendation list."""
    if "score" in reference.features.column_names:
        return to_float(reference.features.column("score"))
    preds = reference.predictions
    if preds is not None and "scores" in preds.column_names:
        return top_scores(preds)
    return None


def run_check(config: DriftConfig, reference: Reference, window: pa.Table, window_info: WindowInfo,
              *, embeddings: EmbeddingSource | None = None,
              prediction_reference: pa.Table | None = None,
              with_prediction: bool = True, with_embedding: bool = True) -> DriftSummary:
    rng = np.random.default_rng(config.seed)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    features = check_features(config, reference.features, window, rng)
    timings["features"] = time.perf_counter() - t
    judged = [f for f in features if f.skipped is None]
    if not judged:
        most = max(f.rows_current for f in features)
        raise NoDataError(f"no feature has at least {config.min_rows} values in the window "
                          f"(the most any has is {most:,}); a drift verdict needs at least "
                          f"{config.min_rows} (min_rows in the drift config)")
    drifted = [f.name for f in judged if f.drifted]
    share = len(drifted) / len(judged)
    dataset_drift = share >= config.drift_share

    versions = window_info.model_versions or _version_counts(window)
    prediction: list[PredictionResult] = []
    if with_prediction:
        t = time.perf_counter()
        served, why = _served_by(window, reference.model_version, versions)
        pc_cfg = config.prediction
        if served is None:
            prediction = [PredictionResult(name=n, method=m.method, threshold=m.threshold,
                                           skipped=why)
                          for n, m in (("score", pc_cfg.score),
                                       ("item_popularity", pc_cfg.item_popularity),
                                       ("genre_mix", pc_cfg.genre_mix))]
        else:
            ref_scores = _reference_scores(reference)
            prediction = prediction_drift(
                pc_cfg, served, ref_scores, prediction_reference or reference.predictions,
                ItemLookup(reference.items, reference.popularity),
                sample_rows=config.sample_rows, exact_margin=config.exact_margin, rng=rng)
        timings["prediction"] = time.perf_counter() - t

    embedding: EmbeddingResult | None = None
    if with_embedding:
        t = time.perf_counter()
        try:
            embedding = embedding_drift(embeddings, window, config.embedding, rng)
        except Exception as exc:  # noqa: BLE001 - a broken model must not hide the data drift
            embedding = EmbeddingResult(method=config.embedding.method,
                                        threshold=config.embedding.threshold,
                                        skipped=f"{type(exc).__name__}: {exc}")
        timings["embedding"] = time.perf_counter() - t

    detected = (dataset_drift or any(p.drifted for p in prediction)
                or bool(embedding and embedding.drifted))
    return DriftSummary(
        created=datetime.now(timezone.utc), model_name=reference.model_name,
        model_version=reference.model_version, reference=reference.source,
        reference_rows=reference.features.num_rows, window=window_info,
        drift_share=share, drift_share_threshold=config.drift_share,
        dataset_drift=dataset_drift, drifted_features=drifted, features=features,
        prediction=prediction, embedding=embedding, drift_detected=detected,
        timings_seconds={k: round(v, 3) for k, v in timings.items()},
    )
