"""Sample-ratio mismatch: is the observed split of units the split that was declared?

A chi-square goodness-of-fit test of the units (users) each variant received against the
declared weights. A tiny p-value (the usual bar is 0.001) means assignment is broken — a
bug, a redirect, bots — and no comparison of the variants can be trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["SRMResult", "srm_check"]


@dataclass(frozen=True)
class SRMResult:
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    mismatch: bool
    threshold: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def srm_check(observed: Sequence[int], weights: Sequence[float],
              p_threshold: float = 0.001) -> SRMResult:
    """Chi-square test of ``observed`` unit counts against the declared ``weights``.

    Weights are relative (50/50, 0.95/0.05 …). Variants with zero declared weight must have
    no units; if they have some, that is a mismatch by definition.
    """
    if len(observed) != len(weights) or len(observed) < 2:
        raise ValueError("need one weight per variant and at least two variants")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be >= 0 and not all 0, got {list(weights)}")
    total = sum(observed)
    wsum = float(sum(weights))
    expected = tuple(total * w / wsum for w in weights)
    if total == 0:
        return SRMResult(tuple(observed), expected, 0.0, 1.0, False, p_threshold)
    if any(e == 0 and o > 0 for o, e in zip(observed, expected)):
        return SRMResult(tuple(observed), expected, float("inf"), 0.0, True, p_threshold)
    obs = [o for o, e in zip(observed, expected) if e > 0]
    exp = [e for e in expected if e > 0]
    if len(obs) < 2:
        return SRMResult(tuple(observed), expected, 0.0, 1.0, False, p_threshold)
    from scipy import stats  # imported when used: the router never needs scipy

    chi2, p = stats.chisquare(obs, exp)
    return SRMResult(tuple(observed), expected, float(chi2), float(p), bool(p < p_threshold),
                     p_threshold)
