"""Second stage: a LightGBM ranker over the retrieval stage's candidates.

Training data without leakage: each user's held-out tail of the training interactions
(``label_mode="temporal"``: the last ``label_frac`` of events; ``"random"``: a random share)
becomes the labels; a retrieval model and the feature tables are fitted on the rest, and
its top ``n_candidates`` per user (hard negatives: items the model itself ranks high) are
the rows. The ranker then serves on top of the retrieval model refitted on everything.

``objective`` picks pointwise (``binary``), LambdaMART (``lambdarank``, pairwise gradients
weighted by the NDCG change) or listwise (``rank_xendcg``); benchmarks/RESULTS.md says which
wins and why. The model is stored as LightGBM's text format (no pickle).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pandas as pd

from recsys.config import RankerConfig
from recsys.models.forest import CompiledForest
from recsys.models.rank_features import FEATURES

if TYPE_CHECKING:
    from recsys.recommender import Recommender, UserState

__all__ = ["RankExamples", "Ranker", "holdout"]

log = logging.getLogger(__name__)
MODEL_FILE, META_FILE = "ranker.txt", "ranker.json"


def holdout(inter: pd.DataFrame, frac: float, mode: str, seed: int, fold: int = 0,
            min_events: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split each user's interactions into (rest, held-out labels).

    ``temporal``: the last ``frac`` of each user's events are the labels; fold ``f`` first
    drops the last ``f × frac`` (a rolling origin, so every fold predicts forward in time).
    ``random``: a random ``frac`` (fold ``f`` reseeds). Users whose rest would have fewer
    than ``min_events - 1`` events give no labels."""
    if mode == "temporal":
        key = inter["timestamp"].to_numpy(np.float64)
    else:
        key = np.random.default_rng(seed + 7919 * fold).random(len(inter))
        fold = 0
    user = inter["user_id"].to_numpy()
    order = np.lexsort((inter["item_id"].to_numpy(), key, user))
    u = user[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if u.size else np.zeros(0, int)
    sizes = np.diff(np.r_[starts, u.size])
    n = np.repeat(sizes, sizes)
    pos = np.arange(u.size) - np.repeat(starts, sizes)
    n_held = np.maximum(1, np.round(n * frac)).astype(np.int64)
    n_drop = np.round(n * frac * fold).astype(np.int64)
    n_rest = n - n_drop - n_held
    ok = (n >= min_events) & (n_rest >= min_events - 1)
    n_rest = np.where(ok, n_rest, n - n_drop)
    part = np.where(pos < n_rest, 0, np.where(ok & (pos < n_rest + n_held), 1, 2))
    label = np.empty(u.size, dtype=np.int64)
    label[order] = part
    return inter[label == 0], inter[label == 1]


@dataclass
class RankExamples:
    """Ranker training rows: features, 0/1 labels, list sizes, and candidate recall counts."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    found: int = 0  # held-out items among the candidates
    total: int = 0  # held-out items

    @property
    def recall(self) -> float:
        return self.found / max(self.total, 1)

    @classmethod
    def concat(cls, parts: list[RankExamples]) -> RankExamples:
        if not parts:
            return cls(np.zeros((0, len(FEATURES)), np.float32), np.zeros(0, np.float32),
                       np.zeros(0, np.int64))
        return cls(np.vstack([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                   np.concatenate([p.groups for p in parts]), sum(p.found for p in parts),
                   sum(p.total for p in parts))

    def with_positives(self) -> RankExamples:
        """Only the lists with at least one positive (the others carry no ranking signal)."""
        if self.groups.size == 0:
            return self
        has = np.add.reduceat(self.y, np.r_[0, np.cumsum(self.groups)[:-1]]) > 0
        rows = np.repeat(has, self.groups)
        return RankExamples(self.x[rows], self.y[rows], self.groups[has], self.found,
                            self.total)


class Ranker:
    """LightGBM over :data:`recsys.models.rank_features.FEATURES`."""

    def __init__(self, cfg: RankerConfig, booster: lgb.Booster | None = None):
        self.cfg = cfg
        self.booster = booster
        self.report: dict[str, float] = {}
        self._forest: CompiledForest | None = None  # the booster's trees, compiled
        self._forest_of: lgb.Booster | None = None  # the booster it was built from

    # ------------------------------------------------------------------ training
    def fit(self, rec: Recommender, inter: pd.DataFrame, progress: bool = False,
            distributed: bool = False) -> Ranker:
        """Fit on ``rec``'s training interactions (``inter``: the indexed training frame)."""
        return self.fit_examples(self.examples(rec, inter, progress, distributed))

    def examples(self, rec: Recommender, inter: pd.DataFrame, progress: bool = False,
                 distributed: bool = False) -> RankExamples:
        """Candidate lists with features and labels from ``cfg.folds`` held-out label sets."""
        cfg = self.cfg
        cols = ["user_id", "item_id", "rating", "timestamp", "event"]
        parts: list[RankExamples] = []
        for fold in range(cfg.folds):
            rest, held = holdout(inter[cols], cfg.label_frac, cfg.label_mode, rec.config.seed,
                                 fold)
            if held.empty:
                break
            rest, held = self._coldify(rest, held, rec.config.cold_start_events,
                                       rec.config.seed + fold)
            sub_cfg = rec.config.model_copy(deep=True)
            sub_cfg.ranker.enabled = False
            sub = type(rec)(sub_cfg).fit(rest, rec.users, rec.items, progress=progress,
                                         distributed=distributed)
            sub.rank_ctx = sub.build_rank_context(sub.indexed(rest))
            users = np.sort(held["user_id"].unique())
            per_fold = max(cfg.max_users // cfg.folds, 2)
            if users.size > per_fold:
                users = np.sort(np.random.default_rng(rec.config.seed + fold).choice(
                    users, per_fold, replace=False))
            parts.append(self._examples(sub, users, held))
        return RankExamples.concat(parts)

    def _coldify(self, rest: pd.DataFrame, held: pd.DataFrame, cold_events: int, seed: int
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Cut a ``cold_frac`` share of the labelled users down to their first 0…cold_events-1
        events, so the ranker also learns lists of cold users (few events, no id vector);
        what they watched afterwards joins their labels."""
        if self.cfg.cold_frac <= 0 or cold_events <= 0:
            return rest, held
        rng = np.random.default_rng(seed)
        users = held["user_id"].unique()
        n = int(round(users.size * self.cfg.cold_frac))
        if n == 0:
            return rest, held
        chosen = rng.choice(users, n, replace=False)
        keep_n = pd.Series(rng.integers(0, cold_events, n), index=chosen)
        ordered = rest.sort_values(["user_id", "timestamp"], kind="stable")
        pos = ordered.groupby("user_id").cumcount().to_numpy()
        limit = ordered["user_id"].map(keep_n).to_numpy()
        dropped = ~np.isnan(limit) & (pos >= np.nan_to_num(limit))
        return ordered[~dropped], pd.concat([held, ordered[dropped]], ignore_index=True)

    def fit_examples(self, ex: RankExamples) -> Ranker:
        ex = ex.with_positives()
        if ex.groups.size < 2:
            raise ValueError("ranker: too few users with a held-out item among their "
                             "candidates; disable the ranker or give it more data")
        self.booster = self._train(ex.x, ex.y, ex.groups)
        self.report = {"ranker_lists": float(ex.groups.size), "ranker_rows": float(ex.y.size),
                       "ranker_positives": float(ex.y.sum()),
                       "ranker_candidate_recall": ex.recall,
                       "ranker_rounds": float(self.booster.current_iteration())}
        log.info("ranker: %s", self.report)
        return self

    def _examples(self, sub: Recommender, users: np.ndarray, held: pd.DataFrame
                  ) -> RankExamples:
        rows, cand, sc = sub.candidates(users, self.cfg.n_candidates, exclude_seen=True)
        held_rows = sub.item_index.lookup(held["item_id"].to_numpy())
        truth = {int(u): grp.to_numpy() for u, grp in pd.Series(held_rows).groupby(
            held["user_id"].to_numpy())}
        xs, ys, found, total = [], [], 0, 0
        for j, u in enumerate(users):
            xs.append(sub.rank_ctx.features(sub.user_view(int(rows[j])), cand[j], sc[j]))
            pos = truth[int(u)]
            hit = np.isin(cand[j], pos)
            ys.append(hit.astype(np.float32))
            found += int(hit.sum())
            total += int(np.unique(pos).size)
        return RankExamples(np.vstack(xs), np.concatenate(ys),
                            np.full(len(users), cand.shape[1], dtype=np.int64), found, total)

    def _params(self) -> dict:
        cfg = self.cfg
        params = {
            "objective": cfg.objective, "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves, "min_child_samples": cfg.min_child_samples,
            "feature_fraction": cfg.feature_fraction, "bagging_fraction": 0.8,
            "bagging_freq": 1, "lambda_l2": 1.0, "seed": 0, "deterministic": True,
            "num_threads": cfg.num_threads, "verbose": -1, "metric": "ndcg", "eval_at": [10],
        }
        if cfg.objective == "lambdarank":
            params["lambdarank_truncation_level"] = 20
        return params

    def _train(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> lgb.Booster:
        cfg = self.cfg
        n_val = int(round(groups.size * cfg.valid_frac)) if cfg.early_stopping_rounds else 0
        rng = np.random.default_rng(0)
        val_users = np.zeros(groups.size, dtype=bool)
        if n_val >= 1:
            val_users[rng.choice(groups.size, n_val, replace=False)] = True
        row_val = np.repeat(val_users, groups)
        train = lgb.Dataset(x[~row_val], y[~row_val], group=groups[~val_users],
                            feature_name=list(FEATURES), free_raw_data=True)
        callbacks = []
        valid_sets = []
        if n_val >= 1:
            valid_sets = [lgb.Dataset(x[row_val], y[row_val], group=groups[val_users],
                                      reference=train)]
            callbacks.append(lgb.early_stopping(cfg.early_stopping_rounds, verbose=False))
        booster = lgb.train(self._params(), train, num_boost_round=cfg.n_estimators,
                            valid_sets=valid_sets, callbacks=callbacks)
        if n_val >= 1 and booster.best_iteration > 0:
            # Refit on all users for the chosen number of rounds.
            full = lgb.Dataset(x, y, group=groups, feature_name=list(FEATURES))
            booster = lgb.train(self._params(), full, num_boost_round=booster.best_iteration)
        return booster

    # ------------------------------------------------------------------ scoring
    def score_batch(self, rec: Recommender, rows: np.ndarray, user_ids: np.ndarray,
                    cand: np.ndarray, retrieval_scores: np.ndarray) -> np.ndarray:
        """Scores [n_users, n_cand] for the candidates of stored users (offline)."""
        x = np.vstack([rec.rank_ctx.features(rec.user_view(int(r)), cand[j],
                                             retrieval_scores[j])
                       for j, r in enumerate(rows)])
        return self._predict(x, threads=self.cfg.num_threads).reshape(cand.shape)

    def score_one(self, rec: Recommender, state: UserState, cand_idx: np.ndarray,
                  retrieval_scores: np.ndarray) -> np.ndarray:
        """Scores of one request's candidates (online)."""
        x = rec.rank_ctx.features(rec.state_view(state), cand_idx, retrieval_scores)
        return self._predict(x, threads=1)

    def _predict(self, x: np.ndarray, threads: int) -> np.ndarray:
        """Scores of feature rows. One thread (a request's candidates): the compiled forest,
        which gives ``Booster.predict``'s exact scores (checked when it is built) in about
        half the time; otherwise, or without numba, ``Booster.predict``."""
        if self.booster is None:
            raise RuntimeError("ranker is not fitted")
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        if threads == 1:
            forest = self.compiled()
            if forest is not None:
                return forest.predict(x).astype(np.float32)
        return self.booster.predict(x, num_threads=threads).astype(np.float32)

    def compiled(self) -> CompiledForest | None:
        """The compiled evaluator of the current booster (built on first use), or None."""
        if self._forest_of is not self.booster:
            self._forest = CompiledForest.build(self.booster)
            self._forest_of = self.booster
        return self._forest

    def feature_importance(self) -> dict[str, float]:
        gain = self.booster.feature_importance("gain") if self.booster else []
        total = float(np.sum(gain)) or 1.0
        return {name: float(g) / total for name, g in zip(FEATURES, gain, strict=False)}

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        out = Path(directory)
        (out / MODEL_FILE).write_text(self.booster.model_to_string())
        (out / META_FILE).write_text(json.dumps(
            {"features": list(FEATURES), "report": self.report}, indent=2))

    @classmethod
    def load(cls, directory: str | Path, cfg: RankerConfig) -> Ranker:
        src = Path(directory)
        meta = json.loads((src / META_FILE).read_text())
        if meta["features"] != list(FEATURES):
            raise ValueError(f"{src / META_FILE}: the stored ranker was trained on other "
                             "features than this code computes; retrain the model")
        ranker = cls(cfg, lgb.Booster(model_str=(src / MODEL_FILE).read_text()))
        ranker.report = meta.get("report", {})
        return ranker
