"""`marquee skew check`: a constant feature served as a huge number keeps a distance on the scale.

The distance of a numeric feature whose offline values are constant in the window is W1
normed by the spread of both sides (``wasserstein_pooled``, session 22): 2 when serving
answers another constant on every request. That spread was computed from the raw values, whose
squares overflow past about 1e154: a feature served as 1e160 on every request (an overflowing
computation, an uninitialised buffer: the serving bugs the check is there for) against an
offline 0 had a spread of inf and a distance of 0.0, as if both sides agreed (so did
-1.7e308). Both sides are now divided by their largest magnitude first, which leaves the
distance unchanged and the arithmetic finite: 2.0, another constant on every request.

Real here: ``marquee skew check`` as a subprocess on payload logs in a local store and a
bundle's feature tables (the fixtures of test_skew_check.py).
"""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest
from test_s22b_skew_item_ids_and_distance import START, UNTIL
from test_skew_check import _served_logs, _skew_bundle, _skew_cli, world  # noqa: F401


def _served_as(table: pa.Table, feature: str, value: float) -> pa.Table:
    """``table`` with the logged ``f_<feature>`` equal to ``value`` on every request."""
    frame = table.to_pandas()
    frame[f"f_{feature}"] = value
    return pa.Table.from_pandas(frame, preserve_index=False)


@pytest.mark.parametrize("served", [1e160, -1.7e308])
def test_a_constant_feature_served_as_a_huge_number_has_distance_two(
        world: dict, tmp_path, served: float) -> None:  # noqa: F811
    from marquee.store import LocalStore
    from monitoring.drift.scenarios import write_payload_logs

    pytest.importorskip("recsys.features")
    bundle, fn = _skew_bundle(world, tmp_path)
    # 3,000 requests within 50 minutes of midnight: hour_of_day is 0 on every one offline
    write_payload_logs(LocalStore(tmp_path / "store"),
                       _served_as(_served_logs(world, fn, START), "hour_of_day", served))
    done = _skew_cli(tmp_path, bundle, UNTIL, "--pushgateway", "", "--no-publish")
    assert done.returncode == 3, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    hour = next(f for f in summary["features"] if f["name"] == "hour_of_day")
    assert hour["skewed"] and hour["mismatch_rate"] == 1.0, hour
    assert hour["distance_method"] == "wasserstein_pooled", hour
    assert hour["distance"] is not None and math.isfinite(hour["distance"]), hour
    assert hour["distance"] == pytest.approx(2.0), hour  # before: 0.0
    others = [f["distance"] for f in summary["features"]
              if f["name"] != "hour_of_day" and f["distance_method"].startswith("wasserstein")]
    assert all(d is not None and 0.0 <= d <= 2.0 for d in others), summary["features"]
