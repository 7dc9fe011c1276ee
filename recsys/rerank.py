"""Re-ranking: unavailable items out, duplicates out, genre diversity (MMR), freshness, rules."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys.config import RerankConfig

__all__ = ["BusinessRule", "apply_rules", "isin_small", "rerank"]

# A business rule takes (candidate item rows, scores) and returns both, filtered or re-scored.
BusinessRule = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def rerank(cand: np.ndarray, scores: np.ndarray, k: int, cfg: RerankConfig,
           genres: np.ndarray, years: np.ndarray, blocked: np.ndarray | None = None,
           rules: list[BusinessRule] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Final top-k item rows and scores from ranked candidates.

    ``blocked`` item rows (seen or unavailable) are removed; with ``cfg.diversity`` > 0 the
    list is built greedily by maximal marginal relevance over genre overlap. The scores
    returned are the ones the list is ordered by, so they never increase along it.

    ``rules`` only filter or re-score: whatever a rule returns is checked (as many finite
    scores as items, only items it was given) and deduplicated again, so no rule can bring
    back a blocked item or a duplicate.
    """
    cand = np.asarray(cand, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    cand, scores = _unique(cand, scores, blocked)
    cand, scores = apply_rules(cand, scores, rules)
    if cfg.freshness > 0 and cand.size:
        y = years[cand].astype(np.float32)
        known = y[y > 0]
        # Known years scaled to [0, 1] over their own range (unknown years, 0, get no boost).
        lo, span = (float(known.min()), float(np.ptp(known))) if known.size else (0.0, 0.0)
        recent = np.where(y > 0, (y - lo) / max(span, 1.0), 0)
        scores = scores + cfg.freshness * recent.astype(np.float32) * (np.std(scores) + 1e-6)
    order = np.argsort(-scores, kind="stable")
    cand, scores = cand[order], scores[order]
    if cfg.diversity <= 0 or cand.size == 0:  # with k or fewer candidates MMR still orders them
        return cand[:k], scores[:k]
    return _mmr(cand, scores, k, cfg.diversity, genres)


def apply_rules(cand: np.ndarray, scores: np.ndarray, rules: list[BusinessRule] | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """``rules`` applied in turn to distinct candidates and their scores, each rule's output
    checked as ``rerank`` documents (as many finite scores as items, only items it was
    given)."""
    for rule in rules or ():
        cand, scores = _apply_rule(rule, cand, scores)
    return cand, scores


def _unique(cand: np.ndarray, scores: np.ndarray, blocked: np.ndarray | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Candidates without duplicates (the first occurrence kept) and without ``blocked``."""
    _, first = np.unique(cand, return_index=True)
    keep = np.zeros(cand.size, dtype=bool)
    keep[first] = True
    if blocked is not None and len(blocked):
        keep &= ~isin_small(cand, np.asarray(blocked))
    return cand[keep], scores[keep]


def _apply_rule(rule: BusinessRule, cand: np.ndarray, scores: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    name = getattr(rule, "__name__", repr(rule))
    result = rule(cand.copy(), scores.copy())
    try:  # a rule that forgot its ``return`` failed here, naming no rule
        out_cand, out_scores = result
    except (TypeError, ValueError):
        raise ValueError(f"business rule {name}: expected (item rows, scores) back, got "
                         f"{type(result).__name__}") from None
    out_cand = np.asarray(out_cand, dtype=np.int64).reshape(-1)
    out_scores = np.asarray(out_scores, dtype=np.float32).reshape(-1)
    if out_cand.size != out_scores.size:
        raise ValueError(f"business rule {name}: returned {out_cand.size} items but "
                         f"{out_scores.size} scores")
    # A NaN or infinite score made every score of the list NaN once freshness (the scores'
    # spread) or diversity (their range) used it, and is no number in a JSON answer either.
    bad = ~np.isfinite(out_scores)
    if bad.any():
        raise ValueError(f"business rule {name}: returned {int(bad.sum())} score(s) that are "
                         f"not finite numbers (e.g. {out_scores[bad][0]} for item row "
                         f"{int(out_cand[bad][0])}); to drop an item, leave it out")
    foreign = ~isin_small(out_cand, cand)
    if foreign.any():
        raise ValueError(f"business rule {name}: returned items that were not among its "
                         f"candidates (item rows {out_cand[foreign][:5].tolist()}); a rule "
                         "may only filter or re-score")
    return _unique(out_cand, out_scores, None)


def isin_small(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """``np.isin(values, members)`` for the few hundred ids of one request, by a sort and a
    binary search (5× cheaper than ``np.isin`` at these sizes)."""
    if members.size == 0:
        return np.zeros(values.shape, dtype=bool)
    s = np.sort(members)
    return s[np.minimum(np.searchsorted(s, values), s.size - 1)] == values


def _mmr(cand: np.ndarray, scores: np.ndarray, k: int, weight: float,
         genres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = genres[cand].astype(np.float32)
    g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6)
    rel = (scores - scores.min()) / max(float(np.ptp(scores)), 1e-6)
    chosen: list[int] = []
    value: list[float] = []
    max_sim = np.zeros(cand.size, dtype=np.float32)
    available = np.ones(cand.size, dtype=bool)
    for _ in range(min(k, cand.size)):
        mmr = (1 - weight) * rel - weight * max_sim
        mmr[~available] = -np.inf
        j = int(np.argmax(mmr))
        chosen.append(j)
        value.append(float(mmr[j]))
        available[j] = False
        max_sim = np.maximum(max_sim, g @ g[j])
    idx = np.asarray(chosen, dtype=np.int64)
    # Scores that follow the list: the first pick keeps its score, each later one is lower
    # by the MMR value it has less, on the scale of ``scores`` (weight 0: the scores
    # themselves). Similarities only grow, so a pick's value is at most any earlier one's.
    value_arr = np.asarray(value, dtype=np.float64)
    span = max(float(np.ptp(scores)), 1e-6)
    out = float(scores[idx[0]]) + span * (value_arr - value_arr[0]) if idx.size else value_arr
    return cand[idx], np.asarray(out, dtype=np.float32)
