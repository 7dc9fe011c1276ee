"""Agreement between two ranked lists, and the shape of what a model recommends.

Used per mirrored request in shadow mode (baseline list vs candidate list) and per window
(coverage and popularity concentration of each side).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["topk_overlap", "rank_biased_overlap", "kendall_tau_shared", "coverage",
           "exposure_gini"]


def topk_overlap(a: Sequence[int], b: Sequence[int], k: int | None = None) -> float:
    """|top-k(a) ∩ top-k(b)| / k, with k the longer list's length when not given."""
    k = k if k is not None else max(len(a), len(b))
    if k <= 0:
        return 1.0
    return len(set(a[:k]) & set(b[:k])) / k


def rank_biased_overlap(a: Sequence[int], b: Sequence[int], p: float = 0.9) -> float:
    """Extrapolated rank-biased overlap RBO_ext (Webber, Moffat & Zobel 2010, eq. 32).

    1.0 for identical lists, 0.0 for disjoint ones; the weight of depth d is proportional
    to p^(d-1), so the top of the lists matters most. Lists may differ in length (each
    must be free of duplicates).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    s, l = len(short), len(long_)
    seen_s: set[int] = set()
    seen_l: set[int] = set()
    overlap = 0
    x = [0] * (l + 1)  # x[d] = |short[:d] ∩ long[:d]| (short stops growing after s)
    for d in range(1, l + 1):
        item_l = long_[d - 1]
        if d <= s:
            item_s = short[d - 1]
            if item_s == item_l:
                overlap += 1
            else:
                overlap += (item_s in seen_l) + (item_l in seen_s)
            seen_s.add(item_s)
        else:
            overlap += item_l in seen_s
        seen_l.add(item_l)
        x[d] = overlap
    x_s, x_l = x[s], x[l]
    total = sum(x[d] / d * p**d for d in range(1, l + 1))
    total += sum(x_s * (d - s) / (s * d) * p**d for d in range(s + 1, l + 1))
    return (1 - p) / p * total + ((x_l - x_s) / l + x_s / s) * p**l


def kendall_tau_shared(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Kendall's tau between the positions of the items both lists contain.

    None when fewer than two items are shared (the rank correlation is undefined). Lists
    have no duplicates, so there are no ties and tau-a equals tau-b.
    """
    pos_b = {item: i for i, item in enumerate(b)}
    ranks = [pos_b[item] for item in a if item in pos_b]  # b-positions in a-order
    n = len(ranks)
    if n < 2:
        return None
    concordant = discordant = 0
    for i in range(n):
        ri = ranks[i]
        for j in range(i + 1, n):
            if ranks[j] > ri:
                concordant += 1
            else:
                discordant += 1
    return (concordant - discordant) / (n * (n - 1) / 2)


def coverage(lists: Iterable[Sequence[int]], catalog_size: int | None = None) -> float:
    """Distinct recommended items over the catalogue size (or over all slots when unknown)."""
    distinct: set[int] = set()
    slots = 0
    for items in lists:
        distinct.update(items)
        slots += len(items)
    denom = catalog_size if catalog_size else slots
    return len(distinct) / denom if denom else 0.0


def exposure_gini(counts: Counter[int] | Sequence[int] | Iterable[int]) -> float:
    """Gini coefficient of how often each recommended item was shown (popularity bias).

    0 when every recommended item is shown equally often, towards 1 when a few items take
    all the exposure. Takes a Counter of item → exposures or a sequence of counts.
    """
    values = sorted(counts.values() if isinstance(counts, Counter) else counts)
    n = len(values)
    total = math.fsum(values)
    if n == 0 or total == 0:
        return 0.0
    weighted = math.fsum((i + 1) * v for i, v in enumerate(values))
    return (2 * weighted) / (n * total) - (n + 1) / n
