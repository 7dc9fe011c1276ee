"""``Recommender.fit`` on the DataFrames a pandas user has (session 23, helper A): event times
as datetimes (numpy or Arrow, naive or tz-aware, any unit) fit as the unix seconds the
pipeline's ingest reads from them; contract columns in the index (``set_index("user_id")``,
also with ``drop=False``) fit as columns; and times or ids that cannot be read (NaT, text,
infinite seconds, far-future placeholders, unsigned ids past int64) are one ValueError naming
the column, never pandas' own error nor a silently different value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pyarrow as pa
import pytest

from recsys import Recommender
from recsys.data.coerce import coerce_raw_frame
from tests.unit.small_recsys import SMALL, data  # noqa: F401 - fixture

FAST = {**SMALL, "ranker": {"enabled": False}}  # fits in well under a second


def _fit(data, inter=None, users=None, items=None, config=FAST) -> Recommender:  # noqa: F811
    return Recommender(config).fit(data.interactions if inter is None else inter,
                                   data.users if users is None else users,
                                   data.items if items is None else items, progress=False)


def _users(data) -> list[int]:  # noqa: F811
    return data.users["user_id"].tolist()[:40]


@pytest.fixture(scope="module")
def plain(data):  # noqa: F811
    """The model of the tables as generated (unix seconds) and its recommendations."""
    rec = _fit(data)
    return rec, rec.recommend(_users(data), k=10)


def _datetimes(data, how: str) -> pd.Series:  # noqa: F811
    """``interactions.timestamp`` as the same instants in another datetime dtype."""
    naive = pd.to_datetime(data.interactions["timestamp"], unit="s")
    utc = naive.dt.tz_localize("UTC")
    return {"ns": naive, "ms": naive.astype("datetime64[ms]"),
            "us": naive.astype("datetime64[us]"), "s": naive.astype("datetime64[s]"),
            "utc": utc, "tokyo": utc.dt.tz_convert("Asia/Tokyo"),
            "new-york-ms": utc.dt.tz_convert("America/New_York").astype(
                "datetime64[ms, America/New_York]"),
            "fraction": naive + pd.Timedelta("0.999s"),  # floored to the whole second
            "arrow-us": naive.astype("timestamp[us][pyarrow]"),
            "arrow-ms-utc": naive.astype(pd.ArrowDtype(pa.timestamp("ms", tz="UTC"))),
            "arrow-ns-paris": utc.astype(pd.ArrowDtype(pa.timestamp("ns", tz="Europe/Paris")))
            }[how]


@pytest.mark.parametrize("how", ["ns", "ms", "us", "s", "utc", "tokyo", "new-york-ms",
                                 "fraction", "arrow-us", "arrow-ms-utc", "arrow-ns-paris"])
def test_datetime_event_times_fit_as_their_unix_seconds(data, plain, how) -> None:  # noqa: F811
    """Refused before ("expected unix seconds (integers), got dtype datetime64[ns]")."""
    inter = data.interactions.assign(timestamp=_datetimes(data, how))
    rec = _fit(data, inter)
    np.testing.assert_array_equal(rec.history.last_ts, plain[0].history.last_ts)
    np.testing.assert_array_equal(rec.history.flat, plain[0].history.flat)  # in time order
    pdt.assert_frame_equal(rec.recommend(_users(data), k=10), plain[1])


def test_datetime_event_times_of_a_filtered_frame_with_repeated_labels(
        data, plain) -> None:  # noqa: F811
    """A frame cut out of a larger one (index labels kept) and put together again with
    ``pd.concat`` (labels repeated) fits as the plain one."""
    inter = data.interactions.assign(timestamp=_datetimes(data, "utc"))
    half = len(inter) // 2
    inter = pd.concat([inter.iloc[:half], inter.iloc[half:].set_axis(np.arange(len(inter)
                                                                               - half))])
    assert not inter.index.is_unique
    pdt.assert_frame_equal(_fit(data, inter).recommend(_users(data), k=10), plain[1])


def test_datetime_event_times_are_the_seconds_the_pipeline_reads(data) -> None:  # noqa: F811
    """The API and the pipeline's ingest (``coerce_raw_frame``) read one datetime column as
    the same seconds: one conversion, not two."""
    inter = data.interactions.assign(timestamp=_datetimes(data, "tokyo")
                                     + pd.Timedelta("0.5s"))
    pipeline = coerce_raw_frame(inter, "interactions")
    a, b = _fit(data, inter), _fit(data, pipeline)
    np.testing.assert_array_equal(a.history.last_ts, b.history.last_ts)
    np.testing.assert_array_equal(a.history.last_ts[:3], (data.interactions.groupby(
        "user_id")["timestamp"].max().to_numpy()[:3]))


def test_arrow_tables_with_timestamps_fit_with_the_ranker(data) -> None:  # noqa: F811
    """What ``pd.read_parquet(..., dtype_backend="pyarrow")`` of a file with a timestamp
    column gives, through every stage (the ranker reads event times too)."""
    arrow = [f.convert_dtypes(dtype_backend="pyarrow")
             for f in (data.interactions, data.users, data.items)]
    arrow[0] = arrow[0].assign(timestamp=_datetimes(data, "arrow-us"))
    want = _fit(data, config=SMALL).recommend(_users(data), k=10)
    got = _fit(data, *arrow, config=SMALL).recommend(_users(data), k=10)
    pdt.assert_frame_equal(got, want)


@pytest.mark.parametrize("dtype", ["datetime64[ns]", "datetime64[ms, UTC]",
                                   "timestamp[us][pyarrow]"])
def test_missing_datetimes_are_refused_with_their_count(data, dtype) -> None:  # noqa: F811
    stamps = pd.to_datetime(data.interactions["timestamp"], unit="s", utc="UTC" in dtype)
    stamps.iloc[[3, 8]] = None
    stamps = stamps.astype(dtype)
    rec = Recommender(FAST)
    with pytest.raises(ValueError, match=r"^interactions\.timestamp: 2 missing value\(s\) "
                                         r"\(NaT, e\.g\. at row 3\); every event needs a time"):
        rec.fit(data.interactions.assign(timestamp=stamps), data.users, data.items,
                progress=False)
    assert getattr(rec, "history", None) is None  # nothing half fitted


@pytest.mark.parametrize("dtype", ["object", "string[pyarrow]"])
def test_text_event_times_are_refused_saying_how_to_convert_them(data, dtype) -> None:  # noqa: F811
    text = pd.to_datetime(data.interactions["timestamp"], unit="s").dt.strftime(
        "%Y-%m-%dT%H:%M:%S").astype(dtype)
    with pytest.raises(ValueError, match=r"^interactions\.timestamp: expected unix seconds "
                                         rf"\(integers\) or datetimes, got dtype {text.dtype}; "
                                         r"convert it first, e\.g\. with pd\.to_datetime"):
        _fit(data, data.interactions.assign(timestamp=text))


@pytest.mark.parametrize("dtype", ["datetime64[us]", "timestamp[us][pyarrow]"])
def test_a_far_future_placeholder_time_is_refused_naming_the_column(
        data, dtype) -> None:  # noqa: F811
    """9999-12-31, a database's "no end" placeholder: past 2100 as the numbers are (Arrow's
    timestamp was pandas' OutOfBoundsDatetime, which named no column)."""
    stamps = pd.to_datetime(data.interactions["timestamp"], unit="s").astype("datetime64[us]")
    stamps.iloc[5] = pd.Timestamp("9999-12-31").as_unit("us")
    with pytest.raises(ValueError, match=r"^interactions\.timestamp: .*9999-12-31.*2100-01-01"):
        _fit(data, data.interactions.assign(timestamp=stamps.astype(dtype)))


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_seconds_are_refused(data, bad) -> None:  # noqa: F811
    """+inf was Python's "cannot convert float infinity to integer"; -inf became the most
    negative int64, a time 292 billion years ago, fitted in silence."""
    ts = data.interactions["timestamp"].astype("float64")
    ts.iloc[6] = bad
    with pytest.raises(ValueError, match=rf"^interactions\.timestamp: 1 infinite value\(s\) "
                                         rf"\(e\.g\. {bad} at row 6\); expected unix seconds"):
        _fit(data, data.interactions.assign(timestamp=ts))


def _big_ids(data, dtype: str):  # noqa: F811
    """The tables with user 1 renamed to 2**63 + 5 (a hashed 64-bit id), in ``dtype``."""
    big = 2**63 + 5

    def renamed(frame: pd.DataFrame) -> pd.DataFrame:
        ids = frame["user_id"].astype("uint64")
        ids[ids == 1] = big
        return frame.assign(user_id=ids.astype(str) if dtype == "text" else ids.astype(dtype))

    return renamed(data.interactions), renamed(data.users)


@pytest.mark.parametrize("dtype", ["uint64", "UInt64", "uint64[pyarrow]", "text"])
def test_unsigned_ids_past_int64_are_refused_not_wrapped(data, dtype) -> None:  # noqa: F811
    """They were cast to negative ids in silence: the user 2**63 + 5 was fitted as
    -9223372036854775803, and ``recommend([2**63 + 5])`` was refused as outside int64."""
    inter, users = _big_ids(data, dtype)
    with pytest.raises(ValueError, match=r"^interactions\.user_id: id 9223372036854775813 is "
                                         r"outside the int64 range"):
        _fit(data, inter, users)
    with pytest.raises(ValueError, match=r"^users\.user_id: id 9223372036854775813 is "
                                         r"outside the int64 range"):
        _fit(data, users=users)


def test_float_ids_past_int64_are_refused(data) -> None:  # noqa: F811
    """A float id of 1e19 became numpy's "invalid value encountered in cast" and an arbitrary
    id."""
    items = data.items.assign(item_id=data.items["item_id"].astype("float64"))
    items.loc[items.index[2], "item_id"] = 1e19
    with pytest.raises(ValueError, match=r"^items\.item_id: id .*1e\+19.* is outside the int64 "
                                         r"range"):
        _fit(data, items=items)


def _indexed(data, how: str):  # noqa: F811
    """(interactions, users, items) with contract columns moved into (or copied to) the
    index, as pandas users do to look rows up."""
    inter, users, items = data.interactions, data.users, data.items
    if how == "users by id":
        return inter, users.set_index("user_id"), items
    if how == "items by id":
        return inter, users, items.set_index("item_id")
    if how == "events by user and item":
        return inter.set_index(["user_id", "item_id"]), users, items
    if how == "events by time":
        return inter.assign(timestamp=_datetimes(data, "utc")).set_index("timestamp"), users, \
            items
    if how == "ids kept as columns too":
        return (inter.set_index(["user_id", "item_id"], drop=False),
                users.set_index("user_id", drop=False), items.set_index("item_id", drop=False))
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["users by id", "items by id", "events by user and item",
                                 "events by time", "ids kept as columns too"])
def test_contract_columns_in_the_index_fit_as_columns(data, plain, how) -> None:  # noqa: F811
    """Before: "users: missing column(s) ['user_id']" for an index named user_id, and pandas'
    "'user_id' is both an index level and a column label, which is ambiguous" with
    ``drop=False``."""
    tables = _indexed(data, how)
    kept = [t.copy() for t in tables]
    rec = _fit(data, *tables)
    pdt.assert_frame_equal(rec.recommend(_users(data), k=10), plain[1])
    pdt.assert_frame_equal(rec.users, plain[0].users)
    pdt.assert_frame_equal(rec.items, plain[0].items)
    for table, before in zip(tables, kept, strict=True):  # the caller's frames are left alone
        pdt.assert_frame_equal(table, before)


def test_an_index_level_is_not_read_when_the_column_is_there(data, plain) -> None:  # noqa: F811
    """The contract reads columns: an index that happens to be named user_id (a Series'
    name carried over by ``set_axis``) but holds other values is not looked at."""
    users = data.users.set_axis(pd.Index(data.users["user_id"] * 1000, name="user_id"))
    rec = _fit(data, users=users)
    pdt.assert_frame_equal(rec.recommend(_users(data), k=10), plain[1])
