"""`marquee skew check`: history items the model server refuses, and constant features
(session 22, helper B).

* A history item 0 or -4 passed the skew check's own copy of the item-id rule, which checked
  only for an int64, so the row was recomputed as if the model server had served it (it
  refuses it: ``serving.fields.ItemId`` is >= 1). Such a row is now left out and counted like
  any row that cannot be recomputed.
* A numeric feature whose offline values are constant in the window (one hour of day in a
  window within an hour) had its distance normed by Evidently's floor of 0.001: an hour of
  day off by one hour read 1000.0, off by five 5000.0, in the report, the alert's text and on
  the dashboard. It is now normed by the spread of both sides (``wasserstein_pooled``): 0 for
  the same constant, 2 for another constant on every request.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import TypeAdapter, ValidationError
from test_s21n_skew_bad_rows import _spoil
from test_skew_check import _served_logs, _skew_bundle, _skew_cli, world  # noqa: F401

from monitoring.drift.stats import wasserstein_norm
from monitoring.skew.job import SkewConfig, request_history, run_skew
from serving.fields import ItemId

START = 1_740_787_200  # 2025-03-01T00:00:00Z, a Saturday; 3,000 requests one a second
UNTIL = "2025-03-01T02:00:00Z"


def _refused_by_model_server(item: object) -> bool:
    try:
        TypeAdapter(ItemId).validate_python(item)
    except ValidationError:
        return True
    return False


@pytest.mark.parametrize("item", [0, -4, -(2**63), 1, 7, 2**63 - 1])
def test_request_history_applies_the_model_servers_item_id_rule(item: int) -> None:
    body = json.dumps({"user_id": 1, "history": [3, item]})
    if _refused_by_model_server(item):
        with pytest.raises(ValueError, match=f"history item {item} is not an item id"):
            request_history(body)
    else:
        assert request_history(body) == [3, item]


@pytest.mark.parametrize("item", [0, -4])
def test_skew_check_leaves_out_rows_whose_history_the_model_server_refuses(
        world: dict, tmp_path, item: int) -> None:  # noqa: F811
    from marquee.store import LocalStore
    from monitoring.drift.scenarios import write_payload_logs

    pytest.importorskip("recsys.features")
    bundle, fn = _skew_bundle(world, tmp_path)
    logs = _spoil(_served_logs(world, fn, START), [6, 9], history=item)
    write_payload_logs(LocalStore(tmp_path / "store"), logs)

    out = _skew_cli(tmp_path, bundle, UNTIL, "--pushgateway", "", "--no-publish")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    assert summary["rows_unreadable"] == 2, summary["unreadable_example"]
    assert summary["unreadable_example"] == \
        f"request 1-{START}-6: history item {item} is not an item id"
    assert summary["joined"] == 2998 and summary["unmatched"] == 0


def _distances(summary: dict) -> dict[str, tuple[float, str]]:
    return {f["name"]: (f["distance"], f["distance_method"]) for f in summary["features"]}


def test_a_constant_feature_answered_wrong_has_a_distance_on_the_scale(
        world: dict, tmp_path) -> None:  # noqa: F811
    """A window within one hour (hour of day and weekday constant offline), served with the
    clock one hour behind: hour 23 of Friday for hour 0 of Saturday on every request."""
    from marquee.store import LocalStore
    from monitoring.drift.scenarios import write_payload_logs

    pytest.importorskip("recsys.features")
    bundle, fn = _skew_bundle(world, tmp_path)
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, _served_logs(world, fn, START))
    write_payload_logs(store, _served_logs(world, fn, START + 86400, shift=-3600))

    clean = _skew_cli(tmp_path, bundle, UNTIL, "--pushgateway", "", "--no-publish")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    dist = _distances(json.loads(clean.stdout))
    assert dist["hour_of_day"][0] == 0.0  # the same constant on both sides

    buggy = _skew_cli(tmp_path, bundle, "2025-03-02T02:00:00Z", "--pushgateway", "",
                      "--no-publish")
    assert buggy.returncode == 3, buggy.stdout + buggy.stderr
    summary = json.loads(buggy.stdout)
    assert set(summary["skewed_features"]) == {"hour_of_day", "day_of_week"}
    dist = _distances(summary)
    # before: 23 hours / 0.001 = 23000.0, one day / 0.001 = 1000.0
    assert dist["hour_of_day"] == (2.0, "wasserstein_pooled")
    assert dist["day_of_week"] == (2.0, "wasserstein_pooled")
    numeric = [d for d, m in dist.values() if m.startswith("wasserstein")]
    assert all(d is not None and 0.0 <= d <= 2.0 for d in numeric), dist


def _window(served: dict[str, list[float]], n: int) -> pa.Table:
    frame = pd.DataFrame({"request_id": [f"q{i}" for i in range(n)], "user_id": 1,
                          "ts": START + np.arange(n, dtype=np.float64),  # row i at START + i
                          **{f"f_{k}": v for k, v in served.items()}})
    return pa.Table.from_pandas(frame, preserve_index=False)


def test_distance_stays_the_drift_checks_when_the_offline_side_has_spread() -> None:
    """Offline values with a spread: the number is the drift check's normed Wasserstein, as
    before. Offline constant, served spread around it: finite and within 0..2."""
    rng = np.random.default_rng(2)
    n = 400
    offline = {"spread": rng.normal(10, 3, n), "flat": np.full(n, 5.0)}
    served = {"spread": offline["spread"] + 1.5, "flat": 5.0 + rng.normal(0, 2, n)}

    def recompute(req: pd.DataFrame) -> pd.DataFrame:
        idx = (req["ts"].to_numpy() - START).astype(int)
        return pd.DataFrame({"request_id": req["request_id"],
                             **{k: v[idx] for k, v in offline.items()}})

    s = run_skew(_window(served, n), recompute, {"spread": "numeric", "flat": "numeric"},
                 SkewConfig(), model_name="m", model_version="1")
    got = {f.name: f for f in s.features}
    drift = wasserstein_norm(offline["spread"], served["spread"], 1.0, sample_rows=10**9,
                             exact_margin=0, rng=np.random.default_rng(0)).score
    assert got["spread"].distance_method == "wasserstein"
    assert got["spread"].distance == pytest.approx(drift) and drift > 0.4
    assert 0.5 < got["flat"].distance <= 2.0  # before: about 1,600
    assert got["flat"].distance_method == "wasserstein_pooled"
