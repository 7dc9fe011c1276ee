"""The data layer: schema, MovieLens loaders, fetch, ingest, validation, splits, synthetic data.

Public names are re-exported here; nothing runs at import time.
"""

from recsys.data.errors import DataError, DataFetchError, DataSourceError, DataValidationError
from recsys.data.fetch import fetch_movielens_100k
from recsys.data.files import read_dataset, read_raw_dataset, write_dataset, write_raw_dataset
from recsys.data.findings import Finding
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
from recsys.data.split import Split, per_user_random_split, per_user_temporal_split, temporal_split
from recsys.data.synth import Drift, generate, generate_with_truth
from recsys.data.validate import (
    check_dataset,
    coerce_raw_frame,
    validate_dataset,
    validate_directory,
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
    "Finding",
    "DataError",
    "DataFetchError",
    "DataSourceError",
    "DataValidationError",
    "Split",
    "Drift",
    "check_dataset",
    "coerce_raw_frame",
    "fetch_movielens_100k",
    "generate",
    "generate_with_truth",
    "ingest",
    "load_atomic",
    "load_grouplens",
    "load_movielens_100k",
    "per_user_random_split",
    "per_user_temporal_split",
    "read_dataset",
    "read_raw_dataset",
    "temporal_split",
    "validate_dataset",
    "validate_directory",
    "write_dataset",
    "write_raw_dataset",
]
