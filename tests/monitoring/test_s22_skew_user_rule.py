"""`marquee skew check` applies the model server's whole request rule before recomputing a
row: a user_id below 1 (``serving.fields.UserId``) and a history longer than ``MAX_HISTORY``
were refused by the model server, so such rows are counted unreadable, not recomputed as an
unknown user or a 1,001-item history (session 22)."""

from __future__ import annotations

import json

import pytest
from test_skew_check import _served_logs, _skew_bundle, _skew_cli, world  # noqa: F401

from serving.fields import MAX_HISTORY

START = 1_740_787_200
UNTIL = "2025-03-01T02:00:00Z"


def _user_zero(table, rows):
    frame = table.to_pandas()
    frame.loc[rows, "user_id"] = 0
    import pyarrow as pa
    return pa.Table.from_pandas(frame, preserve_index=False)


def _long_history(table, rows):
    frame = table.to_pandas()
    for r in rows:
        body = json.loads(frame.at[r, "request_json"])
        body["history"] = list(range(1, MAX_HISTORY + 2))
        frame.at[r, "request_json"] = json.dumps(body)
    import pyarrow as pa
    return pa.Table.from_pandas(frame, preserve_index=False)


CASES = {
    "user 0": (_user_zero, "user_id 0 is not a user id (ids start at 1)"),
    "long history": (_long_history,
                     f"history of {MAX_HISTORY + 1} items is longer than the model server's "
                     f"{MAX_HISTORY}"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rows_the_model_server_refused_are_left_out(world: dict, tmp_path,  # noqa: F811
                                                    case: str) -> None:
    from marquee.store import LocalStore
    from monitoring.drift.scenarios import write_payload_logs

    pytest.importorskip("recsys.features")
    spoil, reason = CASES[case]
    bundle, fn = _skew_bundle(world, tmp_path)
    write_payload_logs(LocalStore(tmp_path / "store"),
                       spoil(_served_logs(world, fn, START), [4, 8]))

    out = _skew_cli(tmp_path, bundle, UNTIL, "--pushgateway", "", "--no-publish")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    assert summary["rows_unreadable"] == 2, summary
    assert summary["unreadable_example"] == f"request 1-{START}-4: {reason}"
    assert summary["joined"] == 2998
