"""The data contract: vocabularies, column specs and the ``Dataset`` / ``RawDataset`` records.

See ``docs/CONTRACTS.md`` § Data. Three tables travel down the pipeline:

* ``interactions(user_id, item_id, rating, timestamp, event)``
* ``users(user_id, age_bucket, gender, occupation, region)``
* ``items(item_id, title, year, genres)``

Before ingest, users carry raw ``age`` (int) and ``zip_code`` (str) and interactions have no
``event`` column; that is a :class:`RawDataset`. ``recsys.data.ingest`` turns it into a
:class:`Dataset`, whose personal data is coarsened.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from recsys.data.fingerprint import update_digest

__all__ = [
    "GENRES",
    "AGE_BUCKETS",
    "GENDERS",
    "EVENTS",
    "REGIONS",
    "MIN_TIMESTAMP",
    "ColumnSpec",
    "TableSpec",
    "INTERACTIONS",
    "USERS",
    "ITEMS",
    "RAW_INTERACTIONS",
    "RAW_USERS",
    "TABLES",
    "RAW_TABLES",
    "conform",
    "Dataset",
    "RawDataset",
]

#: MovieLens' 19 genres, in MovieLens order (the column order of ``u.item``).
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
#: Age buckets (the MovieLens-1M grouping) plus ``unknown``.
AGE_BUCKETS: tuple[str, ...] = (
    "<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+", "unknown",
)
GENDERS: tuple[str, ...] = ("M", "F", "U")
EVENTS: tuple[str, ...] = ("rating", "watch", "click")
REGIONS: tuple[str, ...] = tuple(f"US-{d}" for d in range(10)) + ("non-US", "unknown")
#: 1990-01-01T00:00:00Z: no event in the data may be older.
MIN_TIMESTAMP: int = 631_152_000

DType = Literal["int64", "float32", "string"]


@dataclass(frozen=True)
class ColumnSpec:
    """One column: its name, pandas dtype and the rule its values follow."""

    name: str
    dtype: DType
    rule: str = ""


@dataclass(frozen=True)
class TableSpec:
    """One table: its columns in order, its unique key and its canonical sort keys."""

    name: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...]
    sort_keys: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def dtypes(self) -> dict[str, str]:
        return {c.name: c.dtype for c in self.columns}

    def column(self, name: str) -> ColumnSpec:
        for spec in self.columns:
            if spec.name == name:
                return spec
        raise KeyError(name)


INTERACTIONS = TableSpec(
    name="interactions",
    columns=(
        ColumnSpec("user_id", "int64", "> 0"),
        ColumnSpec("item_id", "int64", "> 0"),
        ColumnSpec("rating", "float32", "0 <= rating <= 5 (0 = implicit event)"),
        ColumnSpec("timestamp", "int64", "unix seconds, 1990-01-01 <= t <= now + 1 day"),
        ColumnSpec("event", "string", "one of " + ", ".join(EVENTS)),
    ),
    key=("user_id", "item_id", "timestamp", "event"),
    sort_keys=("user_id", "timestamp", "item_id", "event", "rating"),
)
USERS = TableSpec(
    name="users",
    columns=(
        ColumnSpec("user_id", "int64", "> 0, unique"),
        ColumnSpec("age_bucket", "string", "one of " + ", ".join(AGE_BUCKETS)),
        ColumnSpec("gender", "string", "one of M, F, U"),
        ColumnSpec("occupation", "string", "lower case, 'unknown' when missing"),
        ColumnSpec("region", "string", "US-0 … US-9, non-US, unknown"),
    ),
    key=("user_id",),
    sort_keys=("user_id",),
)
ITEMS = TableSpec(
    name="items",
    columns=(
        ColumnSpec("item_id", "int64", "> 0, unique"),
        ColumnSpec("title", "string", ""),
        ColumnSpec("year", "int64", "release year, 0 when unknown"),
        ColumnSpec("genres", "string", "pipe-separated names from GENRES"),
    ),
    key=("item_id",),
    sort_keys=("item_id",),
)
RAW_INTERACTIONS = TableSpec(
    name="interactions",
    columns=INTERACTIONS.columns[:4],
    key=("user_id", "item_id", "timestamp"),
    sort_keys=("user_id", "timestamp", "item_id", "rating"),
)
RAW_USERS = TableSpec(
    name="users",
    columns=(
        ColumnSpec("user_id", "int64", "> 0, unique"),
        ColumnSpec("age", "int64", "years, 0 when unknown"),
        ColumnSpec("gender", "string", ""),
        ColumnSpec("occupation", "string", ""),
        ColumnSpec("zip_code", "string", ""),
    ),
    key=("user_id",),
    sort_keys=("user_id",),
)
TABLES: dict[str, TableSpec] = {t.name: t for t in (INTERACTIONS, USERS, ITEMS)}
RAW_TABLES: dict[str, TableSpec] = {t.name: t for t in (RAW_INTERACTIONS, RAW_USERS, ITEMS)}


def conform(frame: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """``frame`` with exactly the spec's columns, in order, cast to the spec's dtypes.

    For trusted data (our own Parquet, our own loaders): a missing column raises ``KeyError``
    and a value that cannot be cast raises the usual pandas error. Untrusted files go through
    :func:`recsys.data.validate.coerce_raw_frame`, which reports instead.
    """
    out = frame.loc[:, spec.names]
    casts = {c.name: c.dtype for c in spec.columns if str(out[c.name].dtype) != c.dtype
             and not (c.dtype == "string" and out[c.name].dtype == "string")}
    if casts:
        out = out.astype(casts)
    return out.reset_index(drop=True)


def _digest(tables: list[tuple[TableSpec, pd.DataFrame]]) -> str:
    digest = hashlib.sha256(b"marquee-dataset-v1\n")
    for spec, frame in tables:
        update_digest(digest, spec.name, frame, spec.names, spec.sort_keys)
    return digest.hexdigest()


class _Tables:
    """What both datasets share: the three tables by name, their fingerprint and sizes."""

    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    SPECS: tuple[TableSpec, ...]

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"interactions": self.interactions, "users": self.users, "items": self.items}

    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical bytes of all three tables; see ``fingerprint.py``."""
        return _digest([(spec, self.tables()[spec.name]) for spec in self.SPECS])

    def counts(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in self.tables().items()}


@dataclass(frozen=True, eq=False)
class Dataset(_Tables):
    """The three contract tables. Immutable by convention: build a new one to change data.

    Compare datasets with :meth:`fingerprint`, not ``==``."""

    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame

    SPECS = (INTERACTIONS, USERS, ITEMS)

    def conformed(self) -> Dataset:
        """A copy whose tables have exactly the contract columns and dtypes."""
        return Dataset(**{s.name: conform(self.tables()[s.name], s) for s in self.SPECS})


@dataclass(frozen=True, eq=False)
class RawDataset(_Tables):
    """Pre-ingest data: users still carry raw ``age`` and ``zip_code``; no ``event`` column."""

    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame

    SPECS = (RAW_INTERACTIONS, RAW_USERS, ITEMS)

    def canonical(self) -> RawDataset:
        """Contract dtypes and canonical row order (by user/time/item, users and items by id)."""
        out = {}
        for spec in self.SPECS:
            frame = conform(self.tables()[spec.name], spec)
            frame = frame.sort_values(list(spec.sort_keys), kind="stable", ignore_index=True)
            out[spec.name] = frame
        return RawDataset(**out)
