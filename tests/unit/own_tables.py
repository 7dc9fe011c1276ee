"""The smallest valid set of a user's own tables (DESIGN.md's schema), shared by the tests of
``marquee data`` and the pipeline's ingest: three users, ``n_items`` items (ids 10, 11, …; the
last one with an unknown year and genre), six rating events."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

_TITLES = ["A, the movie", "Amélie", "B", "C", "D", "E", "F", "G"]
_YEARS = [1995, 2001, 1990, 1999, 1986, 1977, 2010]
_GENRES = ["Action|Comedy", "Romance", "Comedy", "Drama", "Drama", "Horror", "Sci-Fi"]


def tables(n_items: int = 3) -> dict[str, pd.DataFrame]:
    """``{"interactions", "users", "items"}``; the last event is on the last item."""
    if not 3 <= n_items <= len(_TITLES):
        raise ValueError(f"n_items must be 3..{len(_TITLES)}, got {n_items}")
    ids = list(range(10, 10 + n_items))
    inter = pd.DataFrame({
        "user_id": [1, 1, 2, 2, 3, 3], "item_id": [10, 11, 10, 12, 11, ids[-1]],
        "rating": [4.0, 5.0, 3.0, 2.0, 1.0, 0.0],
        "timestamp": [1_000_000_000 + 1000 * i for i in range(6)], "event": ["rating"] * 6})
    users = pd.DataFrame({
        "user_id": [1, 2, 3], "age_bucket": ["18-24", "25-34", "unknown"],
        "gender": ["M", "F", "U"], "occupation": ["student", "writer", "unknown"],
        "region": ["US-1", "non-US", "unknown"]})
    items = pd.DataFrame({
        "item_id": ids, "title": _TITLES[:n_items],
        "year": [*_YEARS[:n_items - 1], 0], "genres": [*_GENRES[:n_items - 1], "unknown"]})
    return {"interactions": inter, "users": users, "items": items}


def write_csv(directory: Path, frames: dict[str, pd.DataFrame]) -> Path:
    """Each frame as ``<name>.csv`` in a new ``directory``."""
    directory.mkdir(parents=True)
    for name, frame in frames.items():
        frame.to_csv(directory / f"{name}.csv", index=False)
    return directory
