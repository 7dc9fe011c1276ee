"""Synthetic serving-feature windows with planted drift, for tests, benchmarks and demos.

``feature_frame(n, seed, scenario)`` draws ``n`` request feature vectors (the 20 FEATURE_SPEC
features and a model ``score``), vectorised, about 1 s per million rows:

* ``none``         the reference population
* ``demographic``  a new demographic mix: younger users, more women, more students, more
                   ``US-9``/``non-US``, with shorter histories (new sign-ups)
* ``genre``        a genre shift: Sci-Fi, Action and Adventure up, Drama and Comedy down
                   (a season of blockbusters), which moves ``top_genre`` too

Features that a scenario does not touch keep exactly the reference distribution, so the
planted drift is the only drift; a no-drift window is a fresh sample of the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from marquee.store import ObjectStore

from recsys.data.schema import AGE_BUCKETS, GENDERS, REGIONS
from recsys.data.synth import OCCUPATIONS

__all__ = ["SCENARIOS", "SHARE_GENRES", "FEATURES", "CATEGORICAL", "feature_frame",
           "payload_table", "payload_frame", "item_tables", "write_bundle",
           "write_payload_logs", "expected_drifted", "without_features"]

Scenario = Literal["none", "demographic", "genre"]
SCENARIOS: tuple[str, ...] = ("none", "demographic", "genre")

SHARE_GENRES: tuple[str, ...] = ("Drama", "Comedy", "Action", "Thriller", "Romance",
                                 "Adventure", "Sci-Fi", "Crime", "Horror", "Children's")
CATEGORICAL: tuple[str, ...] = ("age_bucket", "gender", "occupation", "region", "top_genre")
NUMERIC: tuple[str, ...] = ("history_length", "hour_of_day", "day_of_week",
                            "history_mean_year", "history_mean_popularity",
                            *(f"genre_share_{g}" for g in SHARE_GENRES))
FEATURES: tuple[str, ...] = CATEGORICAL + NUMERIC

_AGE_P = np.array([0.04, 0.18, 0.34, 0.20, 0.08, 0.07, 0.05, 0.04])
_AGE_P_NEW = np.array([0.16, 0.38, 0.26, 0.08, 0.04, 0.03, 0.02, 0.03])
_GENDER_P = np.array([0.70, 0.28, 0.02])
_GENDER_P_NEW = np.array([0.47, 0.51, 0.02])
_OCC_P = np.random.default_rng(7).dirichlet(np.full(len(OCCUPATIONS), 3.0))
_OCC_P_NEW = _OCC_P.copy()
_OCC_P_NEW[OCCUPATIONS.index("student")] += 0.35
_OCC_P_NEW /= _OCC_P_NEW.sum()
_REGION_P = np.array([0.10, 0.09, 0.11, 0.08, 0.09, 0.08, 0.09, 0.08, 0.09, 0.10, 0.06, 0.03])
_REGION_P_NEW = _REGION_P.copy()
_REGION_P_NEW[REGIONS.index("US-9")] += 0.15
_REGION_P_NEW[REGIONS.index("non-US")] += 0.15
_REGION_P_NEW /= _REGION_P_NEW.sum()
_HOUR_P = np.array([3, 2, 1.5, 1, 1, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 4.5, 4.5, 5, 5.5, 6.5, 8,
                    9.5, 10, 9, 7, 5], dtype=np.float64)
_HOUR_P /= _HOUR_P.sum()
_DAY_P = np.array([0.12, 0.12, 0.12, 0.13, 0.16, 0.18, 0.17])
# Dirichlet weights of the 10 share genres plus "everything else"
_ALPHA = np.array([5.0, 4.0, 3.0, 2.5, 2.0, 1.6, 1.4, 1.5, 1.2, 1.0, 4.0])
# Drama and Comedy give 3 to Action, Adventure and Sci-Fi; the total stays, so every other
# genre keeps exactly its reference distribution (Dirichlet marginals are Beta(a, sum - a)).
_ALPHA_GENRE = _ALPHA + np.array([-2.0, -1.0, 1.0, 0, 0, 1.0, 1.0, 0, 0, 0, 0])

#: Features each scenario moves (what a correct drift check must flag).
_EXPECTED = {
    "none": (),
    "demographic": ("age_bucket", "gender", "occupation", "region", "history_length"),
    "genre": ("top_genre", "genre_share_Drama", "genre_share_Comedy", "genre_share_Action",
              "genre_share_Adventure", "genre_share_Sci-Fi"),
}


def expected_drifted(scenario: str) -> tuple[str, ...]:
    return _EXPECTED[scenario]


def _choice(rng: np.random.Generator, values: tuple[str, ...], p: np.ndarray,
            n: int) -> pd.Categorical:
    codes = np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right")
    codes = np.minimum(codes, len(values) - 1)
    return pd.Categorical.from_codes(codes, categories=list(values))


def feature_frame(n: int, seed: int, scenario: Scenario = "none") -> pd.DataFrame:
    """``n`` feature vectors: FEATURE_SPEC columns (no ``f_`` prefix) and ``score``."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r}: one of {SCENARIOS}")
    rng = np.random.default_rng(seed)
    demo = scenario == "demographic"
    out: dict[str, object] = {
        "age_bucket": _choice(rng, AGE_BUCKETS, _AGE_P_NEW if demo else _AGE_P, n),
        "gender": _choice(rng, GENDERS, _GENDER_P_NEW if demo else _GENDER_P, n),
        "occupation": _choice(rng, OCCUPATIONS, _OCC_P_NEW if demo else _OCC_P, n),
        "region": _choice(rng, REGIONS, _REGION_P_NEW if demo else _REGION_P, n),
    }
    mu = 2.9 if demo else 3.6
    length = np.floor(np.exp(rng.normal(mu, 0.9, n))).astype(np.float64)
    length[rng.random(n) < 0.03] = 0.0  # cold users
    alpha = _ALPHA_GENRE if scenario == "genre" else _ALPHA
    g = rng.standard_gamma(alpha, size=(n, len(alpha)))
    shares = g[:, :-1] / g.sum(axis=1, keepdims=True)
    shares = np.minimum(shares * rng.uniform(1.2, 1.8, (n, 1)), 1.0)  # multi-genre items
    shares[length == 0] = 0.0
    top = np.argmax(shares, axis=1)
    top_names = np.array(SHARE_GENRES + ("none",), dtype=object)
    top[length == 0] = len(SHARE_GENRES)
    out["top_genre"] = pd.Categorical.from_codes(top, categories=list(top_names))
    out["history_length"] = length
    out["hour_of_day"] = _choice(rng, tuple(map(str, range(24))), _HOUR_P, n).codes.astype(
        np.float64)
    out["day_of_week"] = _choice(rng, tuple(map(str, range(7))), _DAY_P, n).codes.astype(
        np.float64)
    out["history_mean_year"] = np.where(length > 0, rng.normal(1992.0, 5.0, n), 0.0)
    out["history_mean_popularity"] = np.where(length > 0, rng.normal(4.8, 0.7, n), 0.0)
    for j, name in enumerate(SHARE_GENRES):
        out[f"genre_share_{name}"] = shares[:, j]
    out["score"] = rng.normal(0.6, 0.15, n)
    frame = pd.DataFrame(out)
    for c in CATEGORICAL:  # plain strings, as the serving runtime logs them
        frame[c] = frame[c].astype(str)
    return frame


def without_features(table: pa.Table) -> pa.Table:
    """The rows as KServe's logger writes them through the payload sink: every ``f_*`` null
    (KServe V1 responses carry no features)."""
    for i, name in enumerate(table.column_names):
        if name.startswith("f_"):
            table = table.set_column(i, name, pa.nulls(table.num_rows,
                                                       table.schema.field(name).type))
    return table


def payload_table(n: int, seed: int, scenario: Scenario = "none", *,
                  start_ts: float = 1_740_787_200.0, span_seconds: float = 3600.0,
                  model_version: str = "1", k: int = 10, n_items: int = 1682,
                  item_zipf: float = 1.3) -> pa.Table:
    """A payload-log window (docs/CONTRACTS.md § Payload logs) around ``feature_frame``."""
    feats = feature_frame(n, seed, scenario)
    rng = np.random.default_rng(seed + 1_000_003)
    ts = np.sort(start_ts + rng.random(n) * span_seconds)
    top = feats.pop("score").to_numpy()
    # k recommended items per request, Zipf-popular, scores decreasing from the top score
    items = np.minimum(rng.zipf(item_zipf, size=n * k), n_items).astype(np.int64)
    gaps = np.sort(rng.random((n, k)) * 0.2, axis=1)
    scores = (top[:, None] - (gaps - gaps[:, :1])).ravel()  # scores[0] is the top score
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    columns = {
        "request_id": pa.array([f"req-{seed}-{i}" for i in range(n)]),
        "ts": pa.array(ts),
        "model_version": pa.array(np.full(n, model_version, dtype=object), pa.string()),
        "variant": pa.array(np.full(n, "baseline", dtype=object), pa.string()),
        "user_id": pa.array(rng.integers(1, 944, n)),
        "k": pa.array(np.full(n, k, dtype=np.int64)),
        "cold_start": pa.array(feats["history_length"].to_numpy() < 5),
        "fallback": pa.array(np.zeros(n, dtype=bool)),
        "status": pa.array(np.full(n, 200, dtype=np.int64)),
        "latency_ms": pa.array(rng.gamma(2.0, 6.0, n)),
        "items": pa.ListArray.from_arrays(offsets, pa.array(items)),
        "scores": pa.ListArray.from_arrays(offsets, pa.array(scores)),
    }
    for c in FEATURES:
        columns[f"f_{c}"] = pa.array(feats[c].to_numpy())
    return pa.table(columns)


def payload_frame(n: int, seed: int, scenario: Scenario = "none", **kw: object) -> pd.DataFrame:
    return payload_table(n, seed, scenario, **kw).to_pandas()


def item_tables(n_items: int = 1682, seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(items, popularity) as a bundle stores them: item ids 1..n, MovieLens genres."""
    from recsys.data.schema import GENRES

    rng = np.random.default_rng(seed)
    names = list(GENRES[1:])
    genres = ["|".join(sorted(set(rng.choice(names, rng.integers(1, 4), replace=False))))
              for _ in range(n_items)]
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1, dtype=np.int64),
                          "title": [f"Movie {i}" for i in range(1, n_items + 1)],
                          "year": rng.integers(1930, 1999, n_items), "genres": genres})
    counts = np.maximum(1, (20000 / np.arange(1, n_items + 1) ** 0.9).astype(np.int64))
    popularity = pd.DataFrame({"item_id": items["item_id"], "count": counts})
    return items, popularity


def write_bundle(root: Path | str, *, n_reference: int = 100_000, seed: int = 1,
                 name: str = "movie-recommender", version: str = "1") -> Path:
    """A minimal finalized bundle for the monitoring jobs (no model weights): reference
    features and predictions, items and popularity tables."""
    from marquee.bundle import finalize_bundle

    root = Path(root)
    (root / "reference").mkdir(parents=True, exist_ok=True)
    (root / "model").mkdir(parents=True, exist_ok=True)
    feature_frame(n_reference, seed).to_parquet(root / "reference" / "features.parquet",
                                                index=False)
    preds = payload_table(min(n_reference, 50_000), seed + 7)
    pq.write_table(preds.select(["items", "scores"]), root / "reference" / "predictions.parquet")
    items, popularity = item_tables()
    items.to_parquet(root / "model" / "items.parquet", index=False)
    popularity.to_parquet(root / "model" / "popularity.parquet", index=False)
    finalize_bundle(root, name, version, training_config={"synthetic": True},
                    data_fingerprint="0" * 64, metrics={}, code_revision="test",
                    pipeline_run_id="synthetic")
    return root


def write_payload_logs(store: ObjectStore, table: pa.Table, n_files: int = 1) -> list[str]:
    """Write ``table`` in the payload-log layout (partitioned by hour and model version)."""
    import tempfile
    import uuid
    from datetime import datetime, timezone

    keys = []
    ts = table.column("ts").to_numpy()
    hours = (ts // 3600).astype(np.int64)
    versions = table.column("model_version").to_numpy(zero_copy_only=False)
    with tempfile.TemporaryDirectory() as tmp:
        for hour in np.unique(hours):
            for version in np.unique(versions[hours == hour]):
                idx = np.flatnonzero((hours == hour) & (versions == version))
                when = datetime.fromtimestamp(int(hour) * 3600, tz=timezone.utc)
                prefix = (f"payload-logs/date={when:%Y-%m-%d}/hour={when:%H}/"
                          f"model_version={version}")
                for part in np.array_split(idx, n_files):
                    if not part.size:
                        continue
                    path = Path(tmp) / f"{uuid.uuid4().hex}.parquet"
                    pq.write_table(table.take(part), path)
                    key = f"{prefix}/part-{uuid.uuid4().hex}.parquet"
                    store.put_file(key, path)
                    keys.append(key)
    return keys
