"""Quality of Marquee's recommender against open-source peers on MovieLens-100k.

    .venv/bin/python benchmarks/quality.py                    # both splits, all models
    .venv/bin/python benchmarks/quality.py --splits temporal --quick
    .venv/bin/python benchmarks/quality.py --record           # append to benchmarks/RESULTS.md

Same data, same splits, same metric code for every model:

* splits: a per-user random 75/25 split (Microsoft Recommenders' ``python_stratified_split``)
  and a per-user temporal split (each user's last 25% of events);
* models: popularity; Marquee retrieval-only (two-tower) and full (two-tower → LightGBM
  ranker → re-ranking); implicit ALS and BPR; EASE (closed form); LightFM WARP; cornac BPR;
* tuning: each model picks its parameters on a validation split carved from train the same
  way as the test split (each user's last / a random 25% of training events), then is refitted
  on the whole training split;
* metrics: ``recsys.metrics.evaluate`` at k = 10, seen items excluded, catalogue coverage over
  all items; training seconds of the final fit (one thread where the library allows it);
* cold start: a third run on the temporal split where 15% of the test users keep only their
  first 0–4 training events; Marquee against popularity on those users;
* ranker objective: the same ranker training rows fitted pointwise, LambdaMART and listwise.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from results_file import append_to_section  # the script's own folder

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## Quality"
K = 10
METRICS = ("ndcg_at_10", "map_at_10", "precision_at_10", "recall_at_10", "coverage_at_10")


# ---------------------------------------------------------------------------- peers
class IdMaps:
    """Contiguous indices for the users and items of a training frame."""

    def __init__(self, users: np.ndarray, items: np.ndarray):
        self.users = np.unique(users)
        self.items = np.unique(items)

    def matrix(self, train: pd.DataFrame) -> sp.csr_matrix:
        u = np.searchsorted(self.users, train["user_id"].to_numpy())
        i = np.searchsorted(self.items, train["item_id"].to_numpy())
        x = sp.csr_matrix((np.ones(u.size, np.float32), (u, i)),
                          shape=(self.users.size, self.items.size))
        x.sum_duplicates()
        x.data[:] = 1.0
        return x

    def user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(self.users, user_ids), 0, self.users.size - 1)
        return np.where(self.users[pos] == user_ids, pos, -1)


def top_k_frame(user_ids: np.ndarray, scores: np.ndarray, seen: sp.csr_matrix,
                rows: np.ndarray, item_ids: np.ndarray, k: int) -> pd.DataFrame:
    """Top-k unseen items per user from a dense score matrix (rows of known users)."""
    s = np.array(scores, dtype=np.float64, copy=True)
    sub = seen[rows]
    r, c = sub.nonzero()
    s[r, c] = -np.inf
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, 1)
    return pd.DataFrame({"user_id": np.repeat(user_ids, k), "item_id": item_ids[top].ravel(),
                         "score": np.take_along_axis(s, top, 1).ravel(),
                         "rank": np.tile(np.arange(1, k + 1), len(user_ids))})


class Peer:
    """fit(train, users, items, **params) then recommend(user_ids, k)."""

    name = "peer"
    grid: dict[str, list[Any]] = {}

    def fit(self, train: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame,
            **params: Any) -> Peer:
        self.maps = IdMaps(train["user_id"].to_numpy(), train["item_id"].to_numpy())
        self.x = self.maps.matrix(train)
        self._fit(self.x, **params)
        return self

    def _fit(self, x: sp.csr_matrix, **params: Any) -> None:
        raise NotImplementedError

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def recommend(self, user_ids: Iterable[int], k: int = K) -> pd.DataFrame:
        uid = np.asarray(list(user_ids), dtype=np.int64)
        rows = self.maps.user_rows(uid)
        known = rows >= 0
        frames = []
        for s in range(0, int(known.sum()), 2048):
            sel = np.flatnonzero(known)[s:s + 2048]
            frames.append(top_k_frame(uid[sel], self._scores(rows[sel]), self.x, rows[sel],
                                      self.maps.items, k))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=["user_id", "item_id", "score", "rank"])


class Popularity(Peer):
    name = "popularity"
    grid = {"_": [0]}

    def _fit(self, x: sp.csr_matrix, **params: Any) -> None:
        self.pop = np.asarray(x.sum(axis=0)).ravel()

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.pop, (rows.size, self.pop.size))

    def recommend(self, user_ids: Iterable[int], k: int = K) -> pd.DataFrame:
        """Known users: most popular unseen items; users without training events: the most
        popular items."""
        uid = np.asarray(list(user_ids), dtype=np.int64)
        known = self.maps.user_rows(uid) >= 0
        top = self.maps.items[np.argsort(-self.pop, kind="stable")[:k]]
        cold = pd.DataFrame({"user_id": np.repeat(uid[~known], top.size),
                             "item_id": np.tile(top, int((~known).sum())),
                             "score": 0.0, "rank": np.tile(np.arange(1, top.size + 1),
                                                           int((~known).sum()))})
        return pd.concat([super().recommend(uid[known], k), cold], ignore_index=True)


class Ease(Peer):
    name = "EASE"
    grid = {"lam": [100.0, 250.0, 500.0, 1000.0]}

    def _fit(self, x: sp.csr_matrix, lam: float) -> None:
        g = (x.T @ x).toarray().astype(np.float64)
        g[np.diag_indices_from(g)] += lam
        p = np.linalg.inv(g)
        b = p / -np.diag(p)
        b[np.diag_indices_from(b)] = 0.0
        self.b = b

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.x[rows] @ self.b)


class ImplicitALS(Peer):
    name = "implicit ALS"
    grid = {"factors": [64, 128], "regularization": [0.01, 0.1], "alpha": [1.0, 10.0, 40.0]}

    def _fit(self, x: sp.csr_matrix, **params: Any) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        self.model = AlternatingLeastSquares(iterations=15, random_state=0, num_threads=1,
                                             **params)
        self.model.fit(x, show_progress=False)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return self.model.user_factors[rows] @ self.model.item_factors.T


class ImplicitBPR(Peer):
    name = "implicit BPR"
    grid = {"factors": [64, 128], "learning_rate": [0.01, 0.05], "iterations": [100, 300]}

    def _fit(self, x: sp.csr_matrix, **params: Any) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        self.model = BayesianPersonalizedRanking(regularization=0.01, random_state=0,
                                                 num_threads=1, **params)
        self.model.fit(x, show_progress=False)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return self.model.user_factors[rows] @ self.model.item_factors.T


class LightFMWarp(Peer):
    name = "LightFM WARP"
    grid = {"no_components": [32, 64], "epochs": [10, 30], "learning_rate": [0.02, 0.05]}

    def _fit(self, x: sp.csr_matrix, epochs: int, **params: Any) -> None:
        from lightfm import LightFM

        self.model = LightFM(loss="warp", random_state=0, **params)
        self.model.fit(x.tocoo(), epochs=epochs, num_threads=1)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        ub, ue = self.model.get_user_representations()
        ib, ie = self.model.get_item_representations()
        return ue[rows] @ ie.T + ib[None, :] + ub[rows, None]


class CornacBPR(Peer):
    name = "cornac BPR"
    grid = {"k": [50, 100], "max_iter": [100, 200], "learning_rate": [0.01, 0.05]}

    def _fit(self, x: sp.csr_matrix, **params: Any) -> None:
        from cornac.data import Dataset
        from cornac.models import BPR

        u, i = x.nonzero()
        data = Dataset.from_uir(list(zip(u.astype(str), i.astype(str), np.ones(u.size),
                                         strict=True)), seed=0)
        self.model = BPR(lambda_reg=0.01, seed=0, num_threads=1, **params)
        self.model.fit(data)
        # cornac's own indices → ours
        self.user_of = np.full(x.shape[0], -1)
        for raw, idx in data.uid_map.items():
            self.user_of[int(raw)] = idx
        self.item_pos = np.full(x.shape[1], -1)
        for raw, idx in data.iid_map.items():
            self.item_pos[int(raw)] = idx

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        m = self.model
        u = m.u_factors[self.user_of[rows]]
        cols = np.maximum(self.item_pos, 0)
        s = u @ m.i_factors[cols].T + m.i_biases[cols][None, :]
        s[:, self.item_pos < 0] = -np.inf
        return s


PEERS: tuple[type[Peer], ...] = (Ease, ImplicitALS, ImplicitBPR, LightFMWarp, CornacBPR)


# ---------------------------------------------------------------------------- marquee
def marquee_candidates(quick: bool) -> dict[str, dict[str, Any]]:
    """Configurations Marquee picks from on validation (retrieval and ranker together)."""
    ranker = {"objective": "rank_xendcg", "folds": 1 if quick else 3}
    retrieval: dict[str, Any] = {"epochs": 2 if quick else 5}
    return {
        "sequential": {"retrieval": {**retrieval, "history_mode": "causal"},
                       "ranker": {**ranker, "label_mode": "temporal"}},
        # Random held-out labels: each fold's lists come from a different random hold-out, so
        # more folds are more (independent) training lists; with ~940 users per fold the
        # ranker overfits after ~50 rounds at learning rate 0.1 (validation NDCG falls), so
        # smaller trees, a slower rate and a fixed number of rounds (early stopping on 10% of
        # the lists stops on noise). Chosen on the validation split carved from train.
        "set": {"retrieval": {**retrieval, "history_mode": "set", "history_len": 100,
                              "history_dropout": 0.3, "separate_history_table": True},
                # The EASE feature on the time-local Gram (pairs a few events apart in a
                # user's order weigh most): validation NDCG@10 0.2928 → 0.2977 over seeds
                # 42/43/44 (benchmarks/validation_sweep.py); on the temporal split it is
                # neutral (0.2793 vs 0.2797), so `sequential` keeps plain EASE.
                "ranker": {**ranker, "label_mode": "random", "ease_time_share": 0.1,
                           "ease_lambda": 60.0,
                           **({} if quick else {"folds": 8, "learning_rate": 0.02,
                                                "num_leaves": 15, "n_estimators": 250,
                                                "early_stopping_rounds": 0})}},
    }


class Marquee:
    """The recommender through its public API; ``stages`` picks retrieval-only or full."""

    def __init__(self, config: dict[str, Any]):
        from recsys.recommender import Recommender

        self.rec = Recommender(config)

    def fit(self, train: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame) -> Marquee:
        self.rec.fit(train, users, items, progress=False)
        return self

    def recommend(self, user_ids: Iterable[int], k: int = K, stages: str = "full"
                  ) -> pd.DataFrame:
        return self.rec.recommend(np.asarray(list(user_ids)), k, stages=stages)


# ---------------------------------------------------------------------------- harness
@dataclass
class Row:
    split: str
    model: str
    params: dict[str, Any]
    metrics: dict[str, float]
    fit_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def score(recs: pd.DataFrame, test: pd.DataFrame, train: pd.DataFrame, n_items: int
          ) -> dict[str, float]:
    from recsys.metrics import evaluate

    return evaluate(recs, test, train, k_values=(K,), n_items=n_items)


def grid(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(space)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(
        *(space[k] for k in keys))]


def carve(train: pd.DataFrame, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from recsys.data.split import per_user_random_split, per_user_temporal_split

    s = (per_user_random_split(train, 0.25, seed=7) if split == "random"
         else per_user_temporal_split(train, 0.25))
    return s.train, s.test


def tune_peer(cls: type[Peer], train: pd.DataFrame, val: pd.DataFrame, users: pd.DataFrame,
              items: pd.DataFrame, quick: bool, log: Callable[[str], None]
              ) -> dict[str, Any]:
    options = grid(cls.grid)
    if quick:
        options = options[:2]
    best, best_score = options[0], -1.0
    for params in options:
        model = cls().fit(train, users, items, **params)
        s = score(model.recommend(val["user_id"].unique()), val, train, len(items))
        log(f"    {cls.name} {params}: val ndcg@10 {s['ndcg_at_10']:.4f}")
        if s["ndcg_at_10"] > best_score:
            best, best_score = params, s["ndcg_at_10"]
    return best


def run_split(split: str, data: Any, quick: bool, log: Callable[[str], None]
              ) -> tuple[list[Row], dict[str, Any]]:
    from recsys.data.split import per_user_random_split, per_user_temporal_split

    inter, users, items = data.interactions, data.users, data.items
    s = (per_user_random_split(inter, 0.25, seed=42) if split == "random"
         else per_user_temporal_split(inter, 0.25))
    train, test = s.train, s.test
    tr_in, val = carve(train, split)
    test_users = test["user_id"].unique()
    n_items = len(items)
    rows: list[Row] = []
    log(f"[{split}] train {len(train)} test {len(test)} users {len(test_users)}")

    for cls in (Popularity, *PEERS):
        params = tune_peer(cls, tr_in, val, users, items, quick, log) if cls.grid else {}
        t0 = time.perf_counter()
        model = cls().fit(train, users, items, **params)
        fit_s = time.perf_counter() - t0
        m = score(model.recommend(test_users), test, train, n_items)
        rows.append(Row(split, cls.name, params, m, fit_s))
        log(f"  {cls.name}: ndcg@10 {m['ndcg_at_10']:.4f} ({fit_s:.1f}s) {params}")

    # Marquee: pick a configuration on validation, refit on the whole training split.
    val_scores = {}
    for name, cfg in marquee_candidates(quick).items():
        t0 = time.perf_counter()
        mq = Marquee(cfg).fit(tr_in, users, items)
        val_scores[name] = score(mq.recommend(val["user_id"].unique()), val, tr_in,
                                 n_items)["ndcg_at_10"]
        log(f"    Marquee {name}: val ndcg@10 {val_scores[name]:.4f} "
            f"({time.perf_counter() - t0:.0f}s)")
    chosen = max(val_scores, key=val_scores.get)
    cfg = marquee_candidates(quick)[chosen]
    # the two longest fits of the split, silent until both are scored
    log(f"  Marquee ({chosen}): fitting retrieval-only and full on the whole training split")
    t0 = time.perf_counter()
    retrieval_only = Marquee({**cfg, "ranker": {"enabled": False}}).fit(train, users, items)
    fit_retrieval = time.perf_counter() - t0
    t0 = time.perf_counter()
    mq = Marquee(cfg).fit(train, users, items)
    fit_full = time.perf_counter() - t0
    m_ret = score(retrieval_only.recommend(test_users), test, train, n_items)
    m_full = score(mq.recommend(test_users), test, train, n_items)
    rows.append(Row(split, "Marquee retrieval-only", {"config": chosen}, m_ret, fit_retrieval))
    rows.append(Row(split, "Marquee full", {"config": chosen}, m_full, fit_full,
                    {"ranker": mq.rec.ranker.report}))
    log(f"  Marquee ({chosen}): retrieval {m_ret['ndcg_at_10']:.4f} ({fit_retrieval:.1f}s), "
        f"full {m_full['ndcg_at_10']:.4f} ({fit_full:.1f}s)")

    objectives = ranker_objectives(mq, train, test, test_users, n_items, log)
    return rows, {"validation": val_scores, "chosen": chosen, "config": cfg,
                  "objectives": objectives}


def ranker_objectives(mq: Marquee, train: pd.DataFrame, test: pd.DataFrame,
                      test_users: np.ndarray, n_items: int, log: Callable[[str], None]
                      ) -> dict[str, float]:
    """The same ranker training rows fitted with each LightGBM objective."""
    from recsys.models.ranker import Ranker

    rec = mq.rec
    fitted = rec.ranker
    ex = Ranker(rec.config.ranker).examples(rec, rec.indexed(train))
    out = {}
    for objective in ("binary", "lambdarank", "rank_xendcg"):
        cfg = rec.config.ranker.model_copy(update={"objective": objective})
        rec.ranker = Ranker(cfg).fit_examples(ex)
        out[objective] = float(score(mq.recommend(test_users), test, train,
                                     n_items)["ndcg_at_10"])
        log(f"    ranker objective {objective}: ndcg@10 {out[objective]:.4f}")
    rec.ranker = fitted
    return out


def run_cold(data: Any, config: dict[str, Any], quick: bool, log: Callable[[str], None]
             ) -> dict[str, Any]:
    """Temporal split where 30% of the test users keep only their first 0–4 training events."""
    from recsys.data.split import per_user_temporal_split

    s = per_user_temporal_split(data.interactions, 0.25)
    rng = np.random.default_rng(3)
    test_users = s.test["user_id"].unique()
    cohort = rng.choice(test_users, max(int(0.3 * test_users.size), 1), replace=False)
    keep_n = pd.Series(rng.integers(0, 5, cohort.size), index=cohort)
    tr = s.train.sort_values(["user_id", "timestamp"], kind="stable")
    pos = tr.groupby("user_id").cumcount()
    limit = tr["user_id"].map(keep_n)
    train = tr[limit.isna() | (pos < limit.fillna(0))].reset_index(drop=True)
    test = s.test[s.test["user_id"].isin(cohort)]
    n_items = len(data.items)
    log(f"[cold] {cohort.size} test users keep their first 0-4 training events: fitting "
        "popularity and Marquee")
    out: dict[str, Any] = {"users": int(cohort.size),
                           "events_kept": {int(k): int((keep_n == k).sum()) for k in range(5)}}
    pop_recs = Popularity().fit(train, data.users, data.items).recommend(cohort)
    mq = Marquee(config).fit(train, data.users, data.items)
    answers = [("popularity", pop_recs), ("Marquee", mq.recommend(cohort))]
    mq.rec.config.cold_start = "model"  # the same model, cold users through the towers
    answers += [("Marquee, cold_start=model, full", mq.recommend(cohort)),
                ("Marquee, cold_start=model, retrieval-only",
                 mq.recommend(cohort, stages="retrieval"))]
    mq.rec.config.cold_start = config.get("cold_start", "popular")
    for name, recs in answers:
        m = score(recs, test, train, n_items)
        out[name] = {k: m.get(f"{k}.cold", float("nan")) for k in ("ndcg_at_10",
                                                                    "recall_at_10")}
        log(f"  cold {name}: ndcg@10 {out[name]['ndcg_at_10']:.4f}")
    return out


# ---------------------------------------------------------------------------- report
def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
        mem_s = f"{mem:.0f} GiB RAM"
    except (ValueError, OSError):
        mem_s = "? RAM"
    return f"{cores} cores, {mem_s}, {platform.machine()}, Python {platform.python_version()}"


def revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(rows: list[Row]) -> str:
    head = ("| model | NDCG@10 | MAP@10 | Precision@10 | Recall@10 | coverage@10 | "
            "train (s) | parameters (chosen on validation) |\n|---|---:|---:|---:|---:|---:|---:|---|")
    lines = [head]
    for r in sorted(rows, key=lambda r: -r.metrics["ndcg_at_10"]):
        m = r.metrics
        lines.append(f"| {r.model} | {m['ndcg_at_10']:.4f} | {m['map_at_10']:.4f} | "
                     f"{m['precision_at_10']:.4f} | {m['recall_at_10']:.4f} | "
                     f"{m['coverage_at_10']:.3f} | {r.fit_seconds:.1f} | "
                     f"{json.dumps(r.params, sort_keys=True)} |")
    return "\n".join(lines)


def verdict(rows: list[Row]) -> str:
    full = next(r for r in rows if r.model == "Marquee full").metrics["ndcg_at_10"]
    ret = next(r for r in rows if r.model == "Marquee retrieval-only").metrics["ndcg_at_10"]
    peers = [r for r in rows if not r.model.startswith("Marquee") and r.model != "popularity"]
    best = max(peers, key=lambda r: r.metrics["ndcg_at_10"])
    pop = next(r for r in rows if r.model == "popularity").metrics["ndcg_at_10"]
    b = best.metrics["ndcg_at_10"]
    return (f"- Marquee full vs best peer ({best.model}, {b:.4f}): {full / b:.3f}× "
            f"({(full / b - 1) * 100:+.1f}%; the bar is +5%: "
            f"{'met' if full >= 1.05 * b else 'NOT met'}); vs retrieval-only "
            f"{full / ret:.3f}×; retrieval-only vs popularity {ret / pop:.2f}× "
            f"(bar 1.3×: {'met' if ret >= 1.3 * pop else 'NOT met'})")


def report(results: dict[str, Any], command: str) -> str:
    out = [f"### MovieLens-100k, {', '.join(results['splits'])} "
           f"({'quick' if results['quick'] else 'full'} run)", "",
           f"- command: `{command}`",
           f"- date: {results['date']}; code revision: {results['revision']}",
           f"- machine: {results['machine']}; shared with other jobs, load average "
           f"{results['load'][0]:.1f} at start, {results['load'][1]:.1f} at end; one thread "
           "per model where the library allows it (implicit, LightFM, cornac, torch, "
           "LightGBM); wall seconds depend on that load",
           f"- total wall time {results['seconds'] / 60:.1f} min", ""]
    for split in results["splits"]:
        rows = [Row(**r) for r in results["rows"] if r["split"] == split]
        info = results["info"][split]
        title = ("per-user random 75/25 (seed 42)" if split == "random"
                 else "per-user temporal (each user's last 25%)")
        out += [f"#### Split: {title}", "", table(rows), "", verdict(rows),
                f"- Marquee configuration chosen on validation: `{info['chosen']}` "
                f"(validation NDCG@10 {json.dumps({k: round(v, 4) for k, v in info['validation'].items()})})",
                f"- ranker objective on the same training rows (test NDCG@10): "
                f"{json.dumps({k: round(v, 4) for k, v in info['objectives'].items()})}", ""]
    if "cold" in results:
        c = results["cold"]
        out += ["#### Cold start (temporal split, 30% of test users keep their first 0–4 "
                "training events)", "",
                f"- users: {c['users']}, events kept per user: {c['events_kept']}", "",
                "| model | NDCG@10 (cold) | Recall@10 (cold) |", "|---|---:|---:|"]
        for name in ("Marquee", "Marquee, cold_start=model, full",
                     "Marquee, cold_start=model, retrieval-only", "popularity"):
            out.append(f"| {name} | {c[name]['ndcg_at_10']:.4f} | "
                       f"{c[name]['recall_at_10']:.4f} |")
        out.append("")
    return "\n".join(out)


def record(text: str) -> None:
    append_to_section(SECTION, text, RESULTS)


def load_movielens(cache: Path) -> Any:
    from recsys.data.fetch import fetch_movielens_100k
    from recsys.data.ingest import ingest

    return ingest(fetch_movielens_100k(cache))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", default="random,temporal")
    parser.add_argument("--cache", type=Path, default=REPO / ".marquee" / "data" / "cache")
    parser.add_argument("--quick", action="store_true", help="tiny grids and epochs (smoke)")
    parser.add_argument("--no-cold", action="store_true")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--json", type=Path, default=REPO / ".marquee" / "bench" /
                        "quality.json")
    args = parser.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)  # BLAS too: one thread per model, as for the libraries' own loops
    started = time.perf_counter()
    load0 = os.getloadavg()[0]

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f}s] {msg}", flush=True)

    data = load_movielens(args.cache)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    all_rows: list[Row] = []
    info: dict[str, Any] = {}
    for split in splits:
        rows, info[split] = run_split(split, data, args.quick, log)
        all_rows += rows
    results: dict[str, Any] = {
        "splits": splits, "quick": args.quick, "rows": [r.__dict__ for r in all_rows],
        "info": info, "date": datetime.now(UTC).strftime("%Y-%m-%d"), "revision": revision(),
        "machine": machine()}
    if not args.no_cold and "temporal" in info:
        results["cold"] = run_cold(data, info["temporal"]["config"], args.quick, log)
    results["load"] = (load0, os.getloadavg()[0])
    results["seconds"] = time.perf_counter() - started
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=float))
    command = "python benchmarks/quality.py " + " ".join(argv if argv is not None else
                                                        sys.argv[1:])
    text = report(results, command.strip())
    print(text)
    if args.record:
        record(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
