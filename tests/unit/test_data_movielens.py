"""MovieLens-100k loaders (GroupLens and RecBole atomic layouts) and the fetch cache."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data import (
    DataFetchError,
    DataSourceError,
    RawDataset,
    fetch_movielens_100k,
    ingest,
    load_atomic,
    load_grouplens,
    load_movielens_100k,
)
from recsys.data.fetch import PipWheelDownloader
from recsys.data.movielens import detect_layout, split_title
from recsys.data.schema import GENRES
from recsys.data.validate import check_dataset

# A few real-looking u.item lines, including the awkward ones of the real file: the "unknown"
# item without a date, a "(V)" video marker, latin-1 accents and a non-year parenthesis.
U_ITEM = [
    "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|"
    "0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "11|Seven (Se7en) (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|1|0|0",
    "267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "543|Misérables, Les (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|0|0|1|0|0|0|1|0|0|0|0|0|0",
    "1412|Land Before Time III: The Time of the Great Giving (1995) (V)|01-Jan-1995||"
    "http://x|0|0|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
]
U_USER = ["1|24|M|technician|85711", "2|53|F|other|94043", "3|23|M|writer|T8H1N"]
U_DATA = ["1\t1\t5\t874965758", "1\t11\t3\t876893171", "2\t267\t4\t888550871",
          "3\t543\t1\t888551000", "3\t1412\t2\t888552000", "2\t1\t4\t888550871"]


def _write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


@pytest.fixture()
def small_grouplens_zip(tmp_path: Path) -> Path:
    return _write_zip(tmp_path / "ml-100k.zip", {
        "ml-100k/u.data": "\n".join(U_DATA).encode() + b"\n",
        "ml-100k/u.user": "\n".join(U_USER).encode() + b"\n",
        "ml-100k/u.item": "\n".join(U_ITEM).encode("latin-1") + b"\n",
        "ml-100k/README": b"MovieLens",
    })


def _atomic_files(raw: RawDataset, directory: Path) -> Path:
    """Write ``raw`` the way RecBole ships it (typed headers, year column, spaced genres)."""
    directory.mkdir(parents=True, exist_ok=True)
    inter = raw.interactions
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{int(r)}\t{t}" for u, i, r, t in inter.itertuples(index=False)]
    (directory / "ml-100k.inter").write_text("\n".join(lines) + "\n")
    lines = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    lines += ["\t".join(map(str, row)) for row in raw.users.itertuples(index=False)]
    (directory / "ml-100k.user").write_text("\n".join(lines) + "\n")
    lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    lines += [f"{i}\t{t}\t{y or 'unkonwn'}\t{g.replace('|', ' ')}"
              for i, t, y, g in raw.items.itertuples(index=False)]
    (directory / "ml-100k.item").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def _grouplens_zip(raw: RawDataset, path: Path) -> Path:
    """Write ``raw`` in the GroupLens layout (latin-1 u.item with 19 genre flags)."""
    data = "\n".join(f"{u}\t{i}\t{int(r)}\t{t}" for u, i, r, t in
                     raw.interactions.itertuples(index=False))
    user = "\n".join("|".join(map(str, row)) for row in raw.users.itertuples(index=False))
    items = []
    for item_id, title, year, genres in raw.items.itertuples(index=False):
        flags = "|".join("1" if g in genres.split("|") else "0" for g in GENRES)
        full = f"{title} ({year})" if year else title
        date = f"01-Jan-{year}" if year else ""
        items.append(f"{item_id}|{full}|{date}||http://example.invalid|{flags}")
    return _write_zip(path, {"ml-100k/u.data": data.encode() + b"\n",
                             "ml-100k/u.user": user.encode() + b"\n",
                             "ml-100k/u.item": "\n".join(items).encode("latin-1") + b"\n"})


def _assert_same(a: RawDataset, b: RawDataset) -> None:
    for name in ("interactions", "users", "items"):
        pd.testing.assert_frame_equal(a.tables()[name], b.tables()[name], check_exact=True)
    assert a.fingerprint() == b.fingerprint()


def test_grouplens_zip_is_parsed_into_canonical_raw_tables(small_grouplens_zip: Path) -> None:
    raw = load_movielens_100k(small_grouplens_zip)
    assert detect_layout(small_grouplens_zip) == "grouplens"
    assert raw.counts() == {"interactions": 6, "users": 3, "items": 5}
    items = raw.items.set_index("item_id")
    assert items.loc[1, "title"] == "Toy Story" and items.loc[1, "year"] == 1995
    assert items.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert items.loc[11, "title"] == "Seven (Se7en)"
    assert items.loc[267, "title"] == "unknown" and items.loc[267, "year"] == 0
    assert items.loc[267, "genres"] == "unknown"
    assert items.loc[543, "title"] == "Misérables, Les"  # latin-1 decoded
    assert items.loc[1412, "title"] == "Land Before Time III: The Time of the Great Giving"
    assert items.loc[1412, "year"] == 1995
    users = raw.users.set_index("user_id")
    assert users.loc[3, "zip_code"] == "T8H1N" and users.loc[2, "age"] == 53
    assert str(raw.interactions["rating"].dtype) == "float32"
    # canonical order: by user, then time, then item
    keys = list(raw.interactions[["user_id", "timestamp", "item_id"]].itertuples(index=False))
    assert keys == sorted(keys)


def test_directory_and_zip_and_atomic_layouts_give_identical_data(
        small_grouplens_zip: Path, tmp_path: Path) -> None:
    from_zip = load_grouplens(small_grouplens_zip)
    extracted = tmp_path / "extracted"
    with zipfile.ZipFile(small_grouplens_zip) as archive:
        archive.extractall(extracted)
    _assert_same(from_zip, load_movielens_100k(extracted))
    atomic_dir = _atomic_files(from_zip, tmp_path / "atomic" / "ml-100k")
    assert detect_layout(tmp_path / "atomic") == "atomic"
    _assert_same(from_zip, load_atomic(tmp_path / "atomic"))


def test_unknown_layout_and_missing_source_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DataSourceError, match="u.data.*GroupLens.*ml-100k.inter"):
        load_movielens_100k(tmp_path)
    with pytest.raises(DataSourceError, match="does not exist"):
        load_movielens_100k(tmp_path / "missing.zip")
    with pytest.raises(DataSourceError, match="not RecBole atomic files"):
        _write_zip(tmp_path / "g.zip", {"u.data": b"1\t1\t1\t1\n", "u.user": b"", "u.item": b""})
        load_atomic(tmp_path / "g.zip")


def test_cache_is_reused_only_for_the_same_source(small_grouplens_zip: Path,
                                                   tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = fetch_movielens_100k(cache, source=small_grouplens_zip)
    fewer = RawDataset(first.interactions.iloc[:4], first.users, first.items)
    other = _atomic_files(fewer, tmp_path / "other")
    assert len(fetch_movielens_100k(cache, source=other).interactions) == 4
    shutil.rmtree(other)  # the same source again is served from the cache
    assert len(fetch_movielens_100k(cache, source=other).interactions) == 4
    assert len(fetch_movielens_100k(cache, source=small_grouplens_zip).interactions) == 6


@pytest.mark.parametrize(("title", "hint", "expected"), [
    ("Toy Story (1995)", "01-Jan-1995", ("Toy Story", 1995)),
    ("GoldenEye", "1995", ("GoldenEye", 1995)),
    ("Land Before Time III: The Time of the Great Giving (1995)", "V",
     ("Land Before Time III: The Time of the Great Giving", 1995)),
    ("unkonwn", "unkonwn", ("unknown", 0)),
    ("Seven (Se7en)", "", ("Seven (Se7en)", 0)),
])
def test_split_title(title: str, hint: str, expected: tuple[str, int]) -> None:
    assert split_title(title, hint) == expected


# --- the real data, fetched once per session from the recbole wheel on PyPI -------------------


class CopyWheel:
    """A downloader that hands out an already downloaded wheel and counts its calls."""

    def __init__(self, wheel: Path) -> None:
        self.wheel = wheel
        self.calls = 0

    def __call__(self, dest: Path) -> Path:
        self.calls += 1
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(self.wheel, dest))


@pytest.fixture(scope="session")
def recbole_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real ``recbole==1.2.1`` wheel, downloaded once per session with pip."""
    return PipWheelDownloader()(tmp_path_factory.mktemp("recbole-wheel"))


@pytest.fixture(scope="session")
def ml100k(tmp_path_factory: pytest.TempPathFactory, recbole_wheel: Path
           ) -> tuple[RawDataset, Path]:
    cache = tmp_path_factory.mktemp("ml100k-cache")
    return fetch_movielens_100k(cache, downloader=CopyWheel(recbole_wheel)), cache


def test_real_fetch_has_movielens_counts_and_passes_the_contract(
        ml100k: tuple[RawDataset, Path]) -> None:
    raw, cache = ml100k
    assert raw.counts() == {"interactions": 100_000, "users": 943, "items": 1_682}
    assert set(raw.interactions["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert raw.interactions["user_id"].nunique() == 943
    assert sorted((cache / "movielens-100k").glob("*.parquet")) == [
        cache / "movielens-100k" / f"{n}.parquet" for n in ("interactions", "items", "users")]
    ds = ingest(raw)
    assert check_dataset(ds) == []
    assert (ds.users["region"] == "non-US").sum() == 18  # the Canadian postal codes
    toy = ds.items.set_index("item_id").loc[1]
    assert (toy["title"], toy["year"], toy["genres"]) == (
        "Toy Story", 1995, "Animation|Children's|Comedy")


def test_second_fetch_reads_the_cache_without_downloading(
        ml100k: tuple[RawDataset, Path], recbole_wheel: Path) -> None:
    raw, cache = ml100k
    downloader = CopyWheel(recbole_wheel)
    again = fetch_movielens_100k(cache, downloader=downloader)
    assert downloader.calls == 0
    _assert_same(raw, again)
    refreshed = fetch_movielens_100k(cache, downloader=downloader, refresh=True)
    assert downloader.calls == 1
    _assert_same(raw, refreshed)


def test_both_layouts_of_the_real_data_are_identical(
        ml100k: tuple[RawDataset, Path], recbole_wheel: Path, tmp_path: Path) -> None:
    raw, _ = ml100k
    from_wheel = fetch_movielens_100k(tmp_path / "c1", source=recbole_wheel)
    _assert_same(raw, from_wheel)
    grouplens = _grouplens_zip(raw, tmp_path / "ml-100k.zip")
    from_grouplens = fetch_movielens_100k(tmp_path / "c2", source=grouplens)
    _assert_same(raw, from_grouplens)
    assert np.array_equal(from_grouplens.items["year"], raw.items["year"])


def test_failed_pip_download_is_a_clear_error(tmp_path: Path) -> None:
    offline = PipWheelDownloader(extra_args=("--no-index",))
    with pytest.raises(DataFetchError, match=r"pip download of recbole==1\.2\.1 failed.*--source"):
        fetch_movielens_100k(tmp_path, downloader=offline)
    assert not (tmp_path / "movielens-100k" / "fetch.json").exists()
