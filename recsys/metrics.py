"""Offline ranking metrics, overall and per user segment.

``evaluate(recs, truth, train, k_values)`` takes top-k lists (user_id, item_id, rank), the
held-out interactions and the training interactions (for segments, coverage and novelty), and
returns a flat dict such as ``ndcg_at_10``, ``recall_at_50``, ``mrr``, ``coverage_at_10``,
``ndcg_at_10.cold``. Users without held-out items are not scored.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = ["SEGMENTS", "evaluate", "segment_of", "per_user_metrics"]

SEGMENTS = ("cold", "warm", "heavy")
COLD_MAX, HEAVY_MIN = 5, 100  # fewer than 5 training events: cold; 100 or more: heavy


def segment_of(train_counts: pd.Series, user_ids: Iterable[int]) -> pd.Series:
    n = train_counts.reindex(list(user_ids)).fillna(0).to_numpy()
    seg = np.where(n < COLD_MAX, "cold", np.where(n >= HEAVY_MIN, "heavy", "warm"))
    return pd.Series(seg, index=list(user_ids))


def per_user_metrics(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per user with held-out items: precision, recall, ndcg, map, mrr, hit at k.

    An item repeated in a user's list counts once, at its best rank (a list given twice,
    e.g. for a user id repeated in ``recommend``, is no second hit)."""
    top = recs[recs["rank"] <= k][["user_id", "item_id", "rank"]]
    top = top.sort_values("rank", kind="stable").drop_duplicates(["user_id", "item_id"])
    rel = truth[["user_id", "item_id"]].drop_duplicates()
    n_rel = rel.groupby("user_id").size().rename("n_rel")
    hits = top.merge(rel.assign(hit=1), on=["user_id", "item_id"], how="left")
    hits["hit"] = hits["hit"].fillna(0).astype(np.float64)
    hits = hits.sort_values(["user_id", "rank"])
    hits["gain"] = hits["hit"] / np.log2(hits["rank"] + 1.0)
    hits["cum_hits"] = hits.groupby("user_id")["hit"].cumsum()
    hits["prec_at_rank"] = hits["cum_hits"] / hits["rank"] * hits["hit"]
    hits["rr"] = np.where(hits["hit"] > 0, 1.0 / hits["rank"], 0.0)
    g = hits.groupby("user_id")
    out = pd.DataFrame({"hits": g["hit"].sum(), "dcg": g["gain"].sum(),
                        "ap_sum": g["prec_at_rank"].sum(), "rr": g["rr"].max()})
    out = n_rel.to_frame().join(out, how="left").fillna(0.0)
    ideal = np.array([np.sum(1.0 / np.log2(np.arange(2, min(int(n), k) + 2)))
                      for n in out["n_rel"]])
    return pd.DataFrame({
        "precision": out["hits"] / k,
        "recall": out["hits"] / out["n_rel"],
        "ndcg": out["dcg"] / ideal,
        "map": out["ap_sum"] / np.minimum(out["n_rel"], k),
        "mrr": out["rr"],
        "hit": (out["hits"] > 0).astype(np.float64),
    }, index=out.index)


def evaluate(recs: pd.DataFrame, truth: pd.DataFrame, train: pd.DataFrame,
             k_values: Iterable[int] = (10, 50), n_items: int | None = None) -> dict[str, float]:
    """Overall and per-segment metrics; coverage and novelty of the top-k lists.

    Coverage is the share of ``n_items`` (by default the distinct items of ``train`` and
    ``recs`` together, so it never exceeds 1) that the evaluated users' top-k lists hold."""
    result: dict[str, float] = {}
    train_counts = train.groupby("user_id").size()
    users = truth["user_id"].unique()
    segments = segment_of(train_counts, users)
    n_items = n_items or int(pd.unique(np.concatenate(
        [train["item_id"].to_numpy(np.int64), recs["item_id"].to_numpy(np.int64)])).size)
    pop = train["item_id"].value_counts()
    n_train_users = max(int(train["user_id"].nunique()), 1)
    for k in k_values:
        m = per_user_metrics(recs, truth, k)
        for name in ("precision", "recall", "ndcg", "map", "hit"):
            result[f"{name}_at_{k}"] = float(m[name].mean()) if len(m) else 0.0
            for seg in SEGMENTS:
                part = m[name][segments.reindex(m.index) == seg]
                if len(part):
                    result[f"{name}_at_{k}.{seg}"] = float(part.mean())
        if k == min(k_values):
            result["mrr"] = float(m["mrr"].mean()) if len(m) else 0.0
        top = recs[(recs["rank"] <= k) & recs["user_id"].isin(users)]
        result[f"coverage_at_{k}"] = float(top["item_id"].nunique() / max(n_items, 1))
        p = pop.reindex(top["item_id"]).fillna(0).to_numpy() / n_train_users
        result[f"novelty_at_{k}"] = float(np.mean(-np.log2(np.clip(p, 1e-9, 1)))) if p.size else 0.0
        result[f"popularity_at_{k}"] = float(np.mean(p)) if p.size else 0.0
    result["users_evaluated"] = float(len(users))
    for seg in SEGMENTS:
        result[f"users.{seg}"] = float((segments == seg).sum())
    return result
