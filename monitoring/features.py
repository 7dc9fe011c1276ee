"""FEATURE_SPEC as the monitoring jobs need it: feature name → kind.

The single source is ``recsys.features.FEATURE_SPEC``; until that lands (and as a guard
against drift between the two), the table of docs/CONTRACTS.md is kept here and a test checks
that both agree.
"""

from __future__ import annotations

__all__ = ["CONTRACT_FEATURES", "feature_kinds"]

CONTRACT_FEATURES: dict[str, str] = {
    **{c: "categorical" for c in ("age_bucket", "gender", "occupation", "region", "top_genre")},
    **{n: "numeric" for n in ("history_length", "hour_of_day", "day_of_week",
                              "history_mean_year", "history_mean_popularity")},
    **{f"genre_share_{g}": "numeric" for g in ("Drama", "Comedy", "Action", "Thriller",
                                              "Romance", "Adventure", "Sci-Fi", "Crime",
                                              "Horror", "Children's")},
}


def feature_kinds() -> dict[str, str]:
    """``recsys.features.FEATURE_SPEC`` when importable, else the contract's table."""
    try:
        from recsys.features import FEATURE_SPEC
    except ImportError:
        return dict(CONTRACT_FEATURES)
    return dict(FEATURE_SPEC)
