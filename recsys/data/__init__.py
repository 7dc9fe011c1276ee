"""The data layer: schema, MovieLens loaders, fetch, ingest, validation, splits, synthetic data.

Public names are re-exported here; heavy work happens only when a function is called.
"""

from recsys.data.errors import DataError, DataFetchError, DataSourceError, DataValidationError
from recsys.data.fetch import fetch_movielens_100k
from recsys.data.files import read_dataset, read_raw_dataset, write_dataset, write_raw_dataset
from recsys.data.ingest import ingest
from recsys.data.movielens import load_atomic, load_grouplens, load_movielens_100k
from recsys.data.schema import (
    AGE_BUCKETS,
    EVENTS,
    GENDERS,
    GENRES,
    INTERACTIONS,
    ITEMS,
    REGIONS,
    USERS,
    Dataset,
    RawDataset,
)

__all__ = [
    "AGE_BUCKETS",
    "EVENTS",
    "GENDERS",
    "GENRES",
    "INTERACTIONS",
    "ITEMS",
    "REGIONS",
    "USERS",
    "Dataset",
    "RawDataset",
    "DataError",
    "DataFetchError",
    "DataSourceError",
    "DataValidationError",
    "fetch_movielens_100k",
    "ingest",
    "load_atomic",
    "load_grouplens",
    "load_movielens_100k",
    "read_dataset",
    "read_raw_dataset",
    "write_dataset",
    "write_raw_dataset",
]
