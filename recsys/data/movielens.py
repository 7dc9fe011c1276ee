"""MovieLens-100k loaders for its two common layouts.

* **GroupLens** (``ml-100k.zip`` as published): ``u.data`` (tab-separated
  ``user item rating timestamp``), ``u.user`` (``id|age|gender|occupation|zip``) and ``u.item``
  (``id|title|release date|video release|url|19 genre flags``, latin-1).
* **RecBole atomic files** (shipped inside the ``recbole`` wheel under
  ``recbole/dataset_example/ml-100k/``): ``ml-100k.inter`` / ``.user`` / ``.item``, tab-separated
  with typed headers such as ``user_id:token``; titles carry no year (``release_year`` holds it)
  and genres are space-separated.

Both produce the same canonical :class:`RawDataset`: titles without the trailing ``(1995)``,
``year`` from the title (falling back to the release date, 0 when unknown), genres
pipe-separated in MovieLens order. A source is a directory or a zip file (a wheel is a zip) that
holds one of the layouts anywhere inside it.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import pandas as pd

from recsys.data.errors import DataSourceError
from recsys.data.schema import GENRES, RawDataset

__all__ = [
    "GROUPLENS_FILES",
    "ATOMIC_FILES",
    "Layout",
    "detect_layout",
    "load_movielens_100k",
    "load_grouplens",
    "load_atomic",
    "split_title",
]

Layout = Literal["grouplens", "atomic"]
GROUPLENS_FILES: tuple[str, str, str] = ("u.data", "u.user", "u.item")
ATOMIC_FILES: tuple[str, str, str] = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")
_TRAILING = re.compile(r"\s*\((\d{4}|V)\)\s*$")
_UNKNOWN_TITLES = {"unknown", "unkonwn"}  # RecBole's copy misspells item 267


@dataclass(frozen=True)
class _Files:
    """The three files of one layout inside a directory or a zip, read as bytes."""

    layout: Layout
    read: Callable[[str], bytes]
    names: tuple[str, str, str]


def _find(names: list[str], wanted: tuple[str, str, str]) -> tuple[str, str, str] | None:
    """Paths of ``wanted`` that sit in the same folder, shallowest folder first."""
    by_dir: dict[str, set[str]] = {}
    for name in names:
        path = PurePosixPath(name)
        by_dir.setdefault(str(path.parent), set()).add(path.name)
    for folder in sorted(by_dir, key=lambda d: (d.count("/"), d)):
        if all(w in by_dir[folder] for w in wanted):
            prefix = "" if folder == "." else folder + "/"
            return (prefix + wanted[0], prefix + wanted[1], prefix + wanted[2])
    return None


def _locate(source: Path) -> _Files:
    source = Path(source)
    if not source.exists():
        raise DataSourceError(f"MovieLens source {source} does not exist")
    if source.is_dir():
        names = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]

        def read(name: str) -> bytes:
            return (source / name).read_bytes()
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]

        def read(name: str) -> bytes:
            with zipfile.ZipFile(source) as archive:
                return archive.read(name)
    else:
        raise DataSourceError(f"MovieLens source {source} is neither a directory nor a zip file")
    for layout, wanted in (("grouplens", GROUPLENS_FILES), ("atomic", ATOMIC_FILES)):
        found = _find(names, wanted)
        if found is not None:
            return _Files(layout=layout, read=read, names=found)  # type: ignore[arg-type]
    raise DataSourceError(
        f"no MovieLens-100k files in {source}: expected {', '.join(GROUPLENS_FILES)} (GroupLens) "
        f"or {', '.join(ATOMIC_FILES)} (RecBole atomic files) side by side"
    )


def detect_layout(source: Path) -> Layout:
    """``"grouplens"`` or ``"atomic"``; raises :class:`DataSourceError` when neither is found."""
    return _locate(source).layout


def split_title(title: str, year_hint: str | None = None) -> tuple[str, int]:
    """``("Toy Story", 1995)`` from ``"Toy Story (1995)"``; ``(V)`` video markers are dropped.

    The year in the title wins; otherwise a 4-digit prefix/suffix of ``year_hint`` (a release
    date such as ``01-Jan-1995`` or RecBole's ``release_year``), otherwise 0.
    """
    text = " ".join(str(title).split())
    if text.lower() in _UNKNOWN_TITLES:
        return "unknown", 0
    year: int | None = None
    while (match := _TRAILING.search(text)) is not None:
        if match.group(1).isdigit() and year is None:
            year = int(match.group(1))
        text = text[: match.start()]
    if year is None and year_hint:
        digits = re.search(r"(\d{4})\s*$", year_hint.strip()) or re.match(r"^\s*(\d{4})",
                                                                           year_hint)
        year = int(digits.group(1)) if digits else None
    return text, year or 0


def _read_table(data: bytes, sep: str, encoding: str, header: bool, what: str) -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.BytesIO(data), sep=sep, header=0 if header else None, dtype=str,
            encoding=encoding, keep_default_na=False, quoting=csv.QUOTE_NONE, engine="c",
        )
    except pd.errors.EmptyDataError as exc:
        raise DataSourceError(f"{what} is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataSourceError(f"{what} is not readable as {encoding} text with {sep!r} "
                              f"between fields: {exc}".strip()) from exc


def _int(column: pd.Series, what: str) -> np.ndarray:
    values = pd.to_numeric(column.str.strip(), errors="coerce")
    bad = values.isna() | (values % 1 != 0)  # 1.5 would become id 1, another user's
    if bad.any():
        raise DataSourceError(f"{what}: values that are not whole numbers "
                              f"{column[bad].head(5).tolist()}")
    return values.to_numpy(dtype="int64")


def _float(column: pd.Series, what: str) -> np.ndarray:
    values = pd.to_numeric(column.str.strip(), errors="coerce")
    if values.isna().any():
        bad = column[values.isna()].head(5).tolist()
        raise DataSourceError(f"{what}: non-numeric values {bad}")
    return values.to_numpy(dtype="float32")


def _interactions(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": _int(frame["user_id"], "ratings user_id"),
        "item_id": _int(frame["item_id"], "ratings item_id"),
        "rating": _float(frame["rating"], "ratings rating"),
        "timestamp": _int(frame["timestamp"].str.split(".").str[0], "ratings timestamp"),
    })


def _users(frame: pd.DataFrame) -> pd.DataFrame:
    age = pd.to_numeric(frame["age"].str.strip(), errors="coerce").fillna(0)
    return pd.DataFrame({
        "user_id": _int(frame["user_id"], "users user_id"),
        "age": age.to_numpy(dtype="int64"),
        "gender": frame["gender"].str.strip().astype("string"),
        "occupation": frame["occupation"].str.strip().astype("string"),
        "zip_code": frame["zip_code"].str.strip().astype("string"),
    })


def _items(ids: pd.Series, titles: pd.Series, hints: pd.Series,
           genres: list[list[str]]) -> pd.DataFrame:
    split = [split_title(t, h) for t, h in zip(titles, hints, strict=True)]
    order = {g: i for i, g in enumerate(GENRES)}
    for names in genres:
        unknown = [g for g in names if g not in order]
        if unknown:
            raise DataSourceError(f"items: unknown genre(s) {unknown}; expected names from GENRES")
    return pd.DataFrame({
        "item_id": _int(ids, "items item_id"),
        "title": pd.array([t for t, _ in split], dtype="string"),
        "year": np.array([y for _, y in split], dtype="int64"),
        "genres": pd.array(["|".join(sorted(set(g), key=order.__getitem__)) for g in genres],
                           dtype="string"),
    })


def _load_grouplens(files: _Files) -> RawDataset:
    data, user, item = (files.read(n) for n in files.names)
    ratings = _read_table(data, "\t", "latin-1", header=False, what=files.names[0])
    if ratings.shape[1] != 4:
        raise DataSourceError(f"u.data: expected 4 tab-separated columns, got {ratings.shape[1]}")
    ratings.columns = ["user_id", "item_id", "rating", "timestamp"]
    users = _read_table(user, "|", "latin-1", header=False, what=files.names[1])
    if users.shape[1] != 5:
        raise DataSourceError(f"u.user: expected 5 |-separated columns, got {users.shape[1]}")
    users.columns = ["user_id", "age", "gender", "occupation", "zip_code"]
    items = _read_table(item, "|", "latin-1", header=False, what=files.names[2])
    if items.shape[1] != 5 + len(GENRES):
        raise DataSourceError(
            f"u.item: expected {5 + len(GENRES)} |-separated columns, got {items.shape[1]}")
    flags = items.iloc[:, 5:].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
    genres = [[g for g, on in zip(GENRES, row, strict=True) if on] for row in flags]
    return RawDataset(
        interactions=_interactions(ratings),
        users=_users(users),
        items=_items(items.iloc[:, 0], items.iloc[:, 1], items.iloc[:, 2], genres),
    ).canonical()


def _atomic_table(data: bytes, what: str, required: tuple[str, ...]) -> pd.DataFrame:
    frame = _read_table(data, "\t", "utf-8", header=True, what=what)
    frame.columns = [str(c).split(":", 1)[0] for c in frame.columns]  # user_id:token -> user_id
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataSourceError(f"{what}: missing field(s) {missing}; found {list(frame.columns)}")
    return frame


def _load_atomic(files: _Files) -> RawDataset:
    inter, user, item = (files.read(n) for n in files.names)
    ratings = _atomic_table(inter, "ml-100k.inter", ("user_id", "item_id", "rating", "timestamp"))
    users = _atomic_table(user, "ml-100k.user",
                          ("user_id", "age", "gender", "occupation", "zip_code"))
    items = _atomic_table(item, "ml-100k.item", ("item_id", "movie_title", "release_year", "class"))
    genres = [s.split() for s in items["class"]]
    return RawDataset(
        interactions=_interactions(ratings),
        users=_users(users),
        items=_items(items["item_id"], items["movie_title"], items["release_year"], genres),
    ).canonical()


def load_grouplens(source: Path) -> RawDataset:
    """Load the GroupLens layout from a directory or zip; fails if it holds another layout."""
    files = _locate(source)
    if files.layout != "grouplens":
        raise DataSourceError(f"{source} holds RecBole atomic files, not the GroupLens layout")
    return _load_grouplens(files)


def load_atomic(source: Path) -> RawDataset:
    """Load RecBole's ``ml-100k`` atomic files from a directory, zip or the recbole wheel."""
    files = _locate(source)
    if files.layout != "atomic":
        raise DataSourceError(f"{source} holds the GroupLens layout, not RecBole atomic files")
    return _load_atomic(files)


def load_movielens_100k(source: Path) -> RawDataset:
    """Load MovieLens-100k from whichever layout ``source`` (directory or zip) holds."""
    files = _locate(source)
    return _load_grouplens(files) if files.layout == "grouplens" else _load_atomic(files)
