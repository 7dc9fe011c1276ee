"""`marquee skew check` on payload rows it cannot recompute (session 21, helper N).

A foreign or hand-made payload log can hold a null ``user_id`` or a request body whose
``history`` holds something that is no item id. Before: "cannot convert float NaN to integer"
(exit 2, naming no column), "invalid literal for int()", or an OverflowError traceback from
recsys/features.py. Now such rows are left out and counted, as the rows without logged
features are, and the summary names the first one; a window of such rows only is no data.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from test_skew_check import _served_logs, _skew_bundle, _skew_cli, world  # noqa: F401

from monitoring.features import CONTRACT_FEATURES
from monitoring.skew.job import OfflineRecompute, SkewConfig, request_history, run_skew

START = 1_740_787_200  # 2025-03-01T00:00:00Z
UNTIL = "2025-03-01T02:00:00Z"


def _spoil(table: pa.Table, rows: list[int], *, user_id: bool = False,
           history: object = None) -> pa.Table:
    """``table`` with a null user_id, or a request body whose history holds ``history``,
    on ``rows``."""
    frame = table.to_pandas()
    if user_id:
        frame["user_id"] = frame["user_id"].astype("float64")
        frame.loc[rows, "user_id"] = np.nan
    if history is not None:
        for r in rows:
            body = json.loads(frame.at[r, "request_json"])
            body["history"] = [5, history]
            frame.at[r, "request_json"] = json.dumps(body)
    return pa.Table.from_pandas(frame, preserve_index=False)


CASES = {
    "null user_id": ({"user_id": True}, "user_id is null"),
    "text history item": ({"history": "abc"}, "history item 'abc' is not an item id"),
    "huge history item": ({"history": 10**30}, f"history item {10**30} is not an item id"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_skew_check_leaves_out_unreadable_rows_and_counts_them(world: dict, tmp_path,  # noqa: F811
                                                               case: str) -> None:
    from marquee.store import LocalStore
    from monitoring.drift.scenarios import write_payload_logs

    pytest.importorskip("recsys.features")
    spoil, reason = CASES[case]
    bundle, fn = _skew_bundle(world, tmp_path)
    logs = _spoil(_served_logs(world, fn, START), [4, 10, 11], **spoil)
    write_payload_logs(LocalStore(tmp_path / "store"), logs)

    out = _skew_cli(tmp_path, bundle, UNTIL, "--pushgateway", "", "--no-publish")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stdout + out.stderr  # the other rows match: no skew
    summary = json.loads(out.stdout)
    assert summary["rows_unreadable"] == 3
    assert summary["joined"] == 2997 and summary["unmatched"] == 0
    assert summary["unreadable_example"] == f"request 1-{START}-4: {reason}"


def test_examples_still_name_their_own_requests_when_rows_are_left_out(
        world: dict) -> None:  # noqa: F811
    from test_skew_check import served_window, skew

    window = _spoil(served_window(world, tz_hours=-5), [0, 1, 2], user_id=True)
    s = skew(world, window)
    assert s.rows_unreadable == 3 and s.joined == 2997 and s.unmatched == 0
    assert s.unreadable_example == "request r0: user_id is null"
    hour = next(f for f in s.features if f.name == "hour_of_day")
    served = window.to_pandas().set_index("request_id")["f_hour_of_day"]
    assert hour.examples and all(served[ex.request_id] == ex.served for ex in hour.examples)
    assert all((ex.offline - ex.served) % 24 == 5 for ex in hour.examples)


def test_a_window_of_unreadable_rows_only_is_no_data(world: dict) -> None:  # noqa: F811
    requests = world["requests"].head(20).copy()
    requests["user_id"] = np.nan
    frame = requests.assign(**{f"f_{n}": 1.0 for n in CONTRACT_FEATURES})
    window = pa.Table.from_pandas(frame, preserve_index=False)
    offline = OfflineRecompute(lambda u, h, ts: {}, world["users"])
    from monitoring.errors import NoDataError

    with pytest.raises(NoDataError, match=r"none of the 20 sampled payload rows .*"
                                          r"e\.g\. request r0: user_id is null"):
        run_skew(window, offline, CONTRACT_FEATURES, SkewConfig(),
                 model_name="movie-recommender", model_version="1")


def test_request_history_names_an_item_that_is_no_id() -> None:
    assert request_history('{"user_id": 1, "history": [3, 4]}') == [3, 4]
    for bad in ('"x"', "1e400", str(2**63), "null", "true"):
        with pytest.raises(ValueError, match="is not an item id"):
            request_history(f'{{"user_id": 1, "history": [3, {bad}]}}')
