"""Tables in pandas' nullable, string, Arrow-backed and ``category`` dtypes (what a harness's
``read_csv(..., dtype_backend="pyarrow")`` or ``convert_dtypes()`` hands over) fit and
recommend through the public API as the plain numpy tables do, and a column whose values
cannot be used is one ValueError naming its table and column, never pandas' or pyarrow's own
error (session 22, helper D)."""

from __future__ import annotations

import datetime

import pandas as pd
import pandas.testing as pdt
import pyarrow as pa
import pytest

from recsys import Recommender
from tests.unit.small_recsys import SMALL, data  # noqa: F401 - fixture

TEXT_COLUMNS = ("title", "genres", "age_bucket", "gender", "occupation", "region", "event")
BLANK, MISSING = 4, 9  # item rows whose year is blank and missing in the text-year tests


def _fit(data, inter=None, users=None, items=None) -> Recommender:  # noqa: F811
    return Recommender(SMALL).fit(data.interactions if inter is None else inter,
                                  data.users if users is None else users,
                                  data.items if items is None else items, progress=False)


def _some_users(data) -> list[int]:  # noqa: F811
    return data.users["user_id"].tolist()[:40]


def _numpy(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with numpy dtypes only: its text columns (``string`` in the synthetic data)
    as ``object``."""
    return frame.astype({c: object for c in TEXT_COLUMNS if c in frame})


@pytest.fixture(scope="module")
def plain(data):  # noqa: F811
    """The model of the plain numpy tables and its recommendations."""
    rec = _fit(data, *(_numpy(f) for f in (data.interactions, data.users, data.items)))
    return rec, rec.recommend(_some_users(data), k=10)


def _converted(frame: pd.DataFrame, how: str) -> pd.DataFrame:
    if how == "nullable":
        return frame.convert_dtypes()
    if how == "arrow":
        return frame.convert_dtypes(dtype_backend="pyarrow")
    return frame.astype({c: "category" for c in TEXT_COLUMNS if c in frame})


@pytest.mark.parametrize("how", ["nullable", "arrow", "category"])
def test_converted_tables_recommend_as_the_plain_ones(data, plain, how) -> None:  # noqa: F811
    inter, users, items = (_converted(f, how) for f in (data.interactions, data.users,
                                                        data.items))
    rec = _fit(data, inter, users, items)
    pdt.assert_frame_equal(rec.recommend(_some_users(data), k=10), plain[1])


@pytest.mark.parametrize("dtype", ["string[python]", "string[pyarrow]", "object", "category"])
def test_a_year_as_text_is_that_year_and_a_blank_one_unknown(
        data, dtype, tmp_path) -> None:  # noqa: F811
    year = data.items["year"].astype(str).astype(object)
    year.iloc[BLANK], year.iloc[MISSING] = " ", None
    zero = data.items["year"].copy()
    zero.iloc[[BLANK, MISSING]] = 0  # the contract's unknown year
    rec = _fit(data, items=data.items.assign(year=year.astype(dtype)))
    want = _fit(data, items=data.items.assign(year=zero)).recommend(_some_users(data), k=10)
    got = rec.recommend(_some_users(data), k=10)
    pdt.assert_frame_equal(got, want)
    rec.save(tmp_path / "model")  # and the model saved with the parsed years answers alike
    pdt.assert_frame_equal(Recommender.load(tmp_path / "model").recommend(
        _some_users(data), k=10), want)


def test_a_rating_as_text_is_that_rating(data, plain) -> None:  # noqa: F811
    rating = data.interactions["rating"].astype(str).astype("string[pyarrow]")
    rec = _fit(data, inter=data.interactions.assign(rating=rating))
    pdt.assert_frame_equal(rec.recommend(_some_users(data), k=10), plain[1])


def _unusable_years(data) -> dict[str, pd.Series]:  # noqa: F811
    """Year columns a model cannot use, by what is wrong with them."""
    year = data.items["year"]
    text = year.astype(str).astype(object)
    junk = text.copy()
    junk.iloc[3] = "abc"
    dates = pd.to_datetime(text, format="%Y")
    mixed = text.copy()
    mixed.iloc[5] = datetime.date(1995, 1, 1)
    flag = text.copy()
    flag.iloc[2] = True
    return {"text-string": junk.astype("string"), "text-arrow": junk.astype("string[pyarrow]"),
            "text-object": junk, "text-category": junk.astype("category"),
            "bool": year > 1990, "bool-arrow": (year > 1990).astype("bool[pyarrow]"),
            "datetime": dates, "timestamp-arrow": dates.astype("timestamp[ns][pyarrow]"),
            "date-arrow": dates.astype(pd.ArrowDtype(pa.date32())),
            "timedelta": pd.to_timedelta(year, unit="D"),
            "object-date": mixed, "object-bool": flag}


@pytest.mark.parametrize("case", ["text-string", "text-arrow", "text-object", "text-category",
                                  "bool", "bool-arrow", "datetime", "timestamp-arrow",
                                  "date-arrow", "timedelta", "object-date", "object-bool"])
def test_a_year_that_is_not_a_number_is_refused_naming_items_year(data, case) -> None:  # noqa: F811
    items = data.items.assign(year=_unusable_years(data)[case])
    rec = Recommender(SMALL)
    with pytest.raises(ValueError, match=r"^items\.year: expected release years") as err:
        rec.fit(data.interactions, data.users, items, progress=False)
    if case.startswith("text"):
        assert "'abc' at row 3" in str(err.value)
    assert getattr(rec, "history", None) is None  # nothing half fitted


@pytest.mark.parametrize("rating", [["5", "five"], [True, False]], ids=["text", "bool"])
def test_a_rating_that_is_not_a_number_is_refused_naming_interactions_rating(
        data, rating) -> None:  # noqa: F811
    col = data.interactions["rating"].astype(object)
    col.iloc[:2] = rating
    col = col.astype("string[pyarrow]") if isinstance(rating[0], str) else col.astype(bool)
    with pytest.raises(ValueError, match=r"^interactions\.rating: expected ratings"):
        _fit(data, inter=data.interactions.assign(rating=col))


@pytest.mark.parametrize("dtype", ["Int64", "int64[pyarrow]", "uint32[pyarrow]",
                                   "string[pyarrow]", "category"])
def test_user_ids_as_a_nullable_or_arrow_series_answer_as_a_list(
        data, plain, dtype) -> None:  # noqa: F811
    ids = pd.Series(_some_users(data)).astype(dtype)
    pdt.assert_frame_equal(plain[0].recommend(ids, k=10), plain[1])


@pytest.mark.parametrize("dtype", ["Int64", "int64[pyarrow]"])
def test_a_missing_user_id_in_a_nullable_series_is_refused(plain, dtype) -> None:
    ids = pd.Series([1, None, 3], dtype=dtype)
    with pytest.raises(ValueError, match=r"^user_ids: 1 missing id\(s\), e\.g\. at position 1"):
        plain[0].recommend(ids, k=10)


@pytest.mark.parametrize("how", ["arrow list", "python lists", "tuples"])
def test_genres_as_lists_are_those_genres(data, plain, how) -> None:  # noqa: F811
    """Genres as a list of names per item (an Arrow ``list<string>`` column): they were read
    as one unknown genre name each, so every item had no genres, in silence."""
    items = _numpy(data.items)
    names = [g.split("|") if g else [] for g in items["genres"]]
    if how == "arrow list":
        genres = pd.Series(names, dtype=pd.ArrowDtype(pa.list_(pa.string())))
    else:
        genres = pd.Series([list(n) if how == "python lists" else tuple(n) for n in names],
                           dtype=object)
    rec = _fit(data, _numpy(data.interactions), _numpy(data.users),
               items.assign(genres=genres))
    pdt.assert_frame_equal(rec.recommend(_some_users(data), k=10), plain[1])


def test_unsigned_timestamps_past_int64_are_refused_not_wrapped(data) -> None:  # noqa: F811
    """A uint64 timestamp above int64's maximum wrapped to a negative time in silence."""
    inter = data.interactions.astype({"timestamp": "uint64"})
    inter.loc[inter.index[3], "timestamp"] = 2**63 + 5
    with pytest.raises(ValueError, match=r"interactions.timestamp: expected unix seconds, "
                                         rf"but values go up to {2**63 + 5} "):
        _fit(data, inter)
