"""Anytime-valid comparison of two click-through rates: the mixture SPRT (mSPRT).

Johari, Pekelis & Walsh, "Always valid inference" (2017). The difference of the two
observed rates, θ̂ = p̂_B − p̂_A, is approximately normal with variance
σ² = p̂_A(1−p̂_A)/n_A + p̂_B(1−p̂_B)/n_B. Mixing the likelihood ratio of θ against θ₀ = 0 over a
normal prior θ ~ N(0, τ²) gives

    Λ = sqrt(σ² / (σ² + τ²)) · exp(τ² θ̂² / (2 σ² (σ² + τ²)))

which is (asymptotically) a non-negative martingale under H₀. Ville's inequality bounds the
chance that it *ever* crosses 1/α by α, so the test can be looked at after every batch of
traffic without inflating the type-I error. Inverting the same boundary gives a confidence
sequence for θ: every θ₀ with Λ(θ₀) < 1/α.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["MSPRTResult", "msprt_two_proportions", "clustered_rate_variance", "DEFAULT_MIXTURE_SD"]

#: Default prior standard deviation τ of the effect (absolute CTR difference). mSPRT keeps its
#: type-I guarantee for any τ; τ near the effects one cares about gives the most power.
DEFAULT_MIXTURE_SD = 0.05


@dataclass(frozen=True)
class MSPRTResult:
    n_a: int
    n_b: int
    rate_a: float
    rate_b: float
    difference: float       # rate_b − rate_a
    log_likelihood_ratio: float
    p_value: float          # min(1, 1/Λ): an always-valid p-value at this look
    ci_low: float           # (1−α) confidence sequence for the difference
    ci_high: float
    reject: bool            # Λ ≥ 1/α: the rates differ
    alpha: float

    @property
    def winner(self) -> str | None:
        """'b' or 'a' when the test rejects, else None."""
        if not self.reject:
            return None
        return "b" if self.difference > 0 else "a"

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def _rate_variance(successes: int, n: int) -> float:
    # A little smoothing keeps the variance positive at 0 or n successes.
    p = (successes + 0.5) / (n + 1.0)
    return p * (1.0 - p) / n


def clustered_rate_variance(successes: int, n: int, sum_n2: float, sum_s2: float,
                            sum_ns: float, clusters: int) -> float:
    """Variance of the rate successes/n when the n trials come in independent clusters.

    A user who comes back sees several lists, and their clicks are correlated (some users
    click far more than others), so counting lists as independent trials understates the
    variance. With n_u lists and s_u clicked ones per user u, R = Σs/Σn, the delta method
    (a ratio metric, users as the unit) gives

        Var(R) ≈ K/(K−1) · Σ_u (s_u − R n_u)² / (Σn)²
               = K/(K−1) · (Σs² − 2R Σns + R² Σn²) / n²

    for K users. With one list per user it is the binomial R(1−R)/n (times K/(K−1)); the
    result is never below the binomial variance of :func:`msprt_two_proportions`.
    """
    binomial = _rate_variance(successes, n)
    if n <= 0 or clusters < 2:
        return binomial
    r = successes / n
    spread = max(0.0, sum_s2 - 2 * r * sum_ns + r * r * sum_n2)
    return max(binomial, clusters / (clusters - 1) * spread / (n * n))


def msprt_two_proportions(
    successes_a: int, n_a: int, successes_b: int, n_b: int, *, alpha: float = 0.05,
    mixture_sd: float = DEFAULT_MIXTURE_SD, variance_a: float | None = None,
    variance_b: float | None = None,
) -> MSPRTResult:
    """Two-sided mSPRT of H₀: rate_a = rate_b on Bernoulli counts seen so far.

    ``variance_a`` / ``variance_b`` replace the binomial variance of a rate, for trials that
    are not independent (users who come back: :func:`clustered_rate_variance`)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if mixture_sd <= 0:
        raise ValueError(f"mixture_sd must be > 0, got {mixture_sd}")
    for name, s, n in (("a", successes_a, n_a), ("b", successes_b, n_b)):
        if n < 0 or s < 0 or s > n:
            raise ValueError(f"variant {name}: need 0 <= successes <= n, got {s}/{n}")
    if n_a == 0 or n_b == 0:
        rate_a = successes_a / n_a if n_a else 0.0
        rate_b = successes_b / n_b if n_b else 0.0
        return MSPRTResult(n_a, n_b, rate_a, rate_b, rate_b - rate_a, 0.0, 1.0, -1.0, 1.0,
                           False, alpha)
    rate_a, rate_b = successes_a / n_a, successes_b / n_b
    diff = rate_b - rate_a
    var = ((variance_a if variance_a is not None else _rate_variance(successes_a, n_a))
           + (variance_b if variance_b is not None else _rate_variance(successes_b, n_b)))
    tau2 = mixture_sd**2
    log_lr = 0.5 * math.log(var / (var + tau2)) + tau2 * diff**2 / (2 * var * (var + tau2))
    threshold = math.log(1.0 / alpha)
    p_value = min(1.0, math.exp(-log_lr))
    half_width = math.sqrt(var * (var + tau2) / tau2
                           * (2 * threshold + math.log((var + tau2) / var)))
    return MSPRTResult(
        n_a=n_a, n_b=n_b, rate_a=rate_a, rate_b=rate_b, difference=diff,
        log_likelihood_ratio=log_lr, p_value=p_value,
        ci_low=diff - half_width, ci_high=diff + half_width,
        reject=log_lr >= threshold, alpha=alpha,
    )
