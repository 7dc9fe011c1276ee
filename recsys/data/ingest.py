"""Raw → contract: coarsen personal data and add the event column.

``age`` becomes an :data:`AGE_BUCKETS` label and ``zip_code`` a region (``US-<first digit>`` for
numeric US zip codes, ``non-US`` for anything else such as Canadian postal codes, ``unknown``
when empty). Neither raw column survives: the output tables have exactly the contract columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.schema import (
    AGE_BUCKETS,
    GENDERS,
    INTERACTIONS,
    ITEMS,
    USERS,
    Dataset,
    RawDataset,
    conform,
)

__all__ = ["AGE_EDGES", "age_bucket", "zip_region", "normalise_gender", "ingest"]

#: Lower edges of the age buckets ``<18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+``.
AGE_EDGES: tuple[int, ...] = (0, 18, 25, 35, 45, 50, 56)


def age_bucket(ages: pd.Series) -> pd.Series:
    """Bucket label per age; missing, non-numeric or non-positive ages become ``unknown``."""
    values = pd.to_numeric(ages, errors="coerce").to_numpy(dtype="float64")
    idx = np.searchsorted(np.asarray(AGE_EDGES[1:], dtype="float64"), values, side="right")
    idx = np.where(np.isnan(values) | (values <= 0) | (values > 130), len(AGE_BUCKETS) - 1, idx)
    labels = np.asarray(AGE_BUCKETS, dtype=object)[idx]
    return pd.Series(pd.array(labels, dtype="string"), index=ages.index, name="age_bucket")


def zip_region(zips: pd.Series) -> pd.Series:
    """``US-<first digit>`` for numeric zip codes (ZIP+4 allowed), ``non-US`` otherwise,
    ``unknown`` for missing or empty ones."""
    text = zips.astype("string").str.strip().fillna("")
    us = text.str.fullmatch(r"\d{3,5}(-\d{4})?").fillna(False).astype(bool)
    empty = (text == "") | text.str.lower().isin(["unknown", "none", "nan", "n/a"])
    region = pd.Series("non-US", index=zips.index, dtype="string")
    region[us] = "US-" + text[us].str[0]
    region[empty] = "unknown"
    return region.rename("region")


def normalise_gender(genders: pd.Series) -> pd.Series:
    """``M``/``F`` (any case, or ``male``/``female``), anything else ``U``."""
    text = genders.astype("string").str.strip().str.upper().fillna("")
    text = text.replace({"MALE": "M", "FEMALE": "F"})
    return text.where(text.isin(GENDERS[:2]), "U").astype("string").rename("gender")


def _occupation(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip().str.lower().fillna("")
    return text.where(text != "", "unknown").astype("string")


def ingest(raw: RawDataset) -> Dataset:
    """The contract :class:`Dataset` for ``raw``: no raw age or zip code reaches the output."""
    users = raw.users
    ingested_users = pd.DataFrame({
        "user_id": users["user_id"].to_numpy(dtype="int64"),
        "age_bucket": age_bucket(users["age"]).to_numpy(),
        "gender": normalise_gender(users["gender"]).to_numpy(),
        "occupation": _occupation(users["occupation"]).to_numpy(),
        "region": zip_region(users["zip_code"]).to_numpy(),
    })
    inter = raw.interactions
    interactions = pd.DataFrame({
        "user_id": inter["user_id"].to_numpy(dtype="int64"),
        "item_id": inter["item_id"].to_numpy(dtype="int64"),
        "rating": inter["rating"].to_numpy(dtype="float32"),
        "timestamp": inter["timestamp"].to_numpy(dtype="int64"),
        "event": pd.array(np.full(len(inter), "rating", dtype=object), dtype="string"),
    })
    return Dataset(
        interactions=conform(interactions, INTERACTIONS),
        users=conform(ingested_users, USERS),
        items=conform(raw.items, ITEMS),
    )
