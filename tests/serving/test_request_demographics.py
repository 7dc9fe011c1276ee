"""A user the model has no record of, described by demographics in the request (issue #3's
cold start "new users with demographics only"), through real model servers on 127.0.0.1
(KServe and BentoML) and the router in front of KServe.

Before, neither the V1 instance nor the router's /recommend had a field for them (an extra
field is refused), so every user who signed up after training got the global popularity list
whatever their segment.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import free_port, stop_process
from serving_support import V1_PATH, bundle_dir, start_server  # noqa: F401

from tests.rollout.rollout_support import start_router

pytestmark = pytest.mark.integration

TS = {"ts": 1_700_000_000}


@pytest.fixture(scope="module")
def served(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """KServe and BentoML model servers of one bundle, and the router in front of KServe."""
    home = tmp_path_factory.mktemp("demographics")
    port, bento_port = free_port(), free_port()
    server = start_server("kserve", bundle_dir, home, port, home / "server.log")
    bento = router = None
    try:
        bento = start_server("bentoml", bundle_dir, home / "bento", bento_port,
                             home / "bento.log")
        router = start_router({"1": f"http://127.0.0.1:{port}"}, "1", home, home)
        yield {"kserve": f"http://127.0.0.1:{port}", "bentoml": f"http://127.0.0.1:{bento_port}",
               "router": router.url}
    finally:
        if router is not None:
            router.stop()
        if bento is not None:
            stop_process(bento)
        stop_process(server)


def _segment(rec) -> tuple[dict[str, str], list[int]]:
    """Demographics of a stored user whose segment's top 10 differ from the global top 10,
    and that top 10 as item ids."""
    from recsys.models.popularity import SegmentPopularity

    for row in range(len(rec.users)):
        demo = {c: str(rec.users[c].iat[row])
                for c in ("age_bucket", "gender", "occupation", "region")}
        ranked = rec.popularity.segments.get(
            SegmentPopularity.key(demo["age_bucket"], demo["gender"]))
        if ranked is not None and not np.array_equal(ranked[:10], rec.popularity.global_rank[:10]):
            return demo, rec.item_ids[ranked[:10]].tolist()
    pytest.skip("no segment with its own top 10 in the tiny data")


def _v1(url: str, instance: dict) -> httpx.Response:
    return httpx.post(url + V1_PATH, json={"instances": [instance]}, timeout=30)


def test_a_new_users_demographics_pick_their_segment_on_every_path(
        served: dict[str, str], bundle_dir: Path) -> None:  # noqa: F811
    from recsys import Recommender

    rec = Recommender.load(bundle_dir)
    demo, segment_top = _segment(rec)
    new_user = int(rec.users["user_id"].max()) + 1000
    global_top = rec.item_ids[rec.popularity.global_rank[:10]].tolist()
    assert segment_top != global_top
    for runtime in ("kserve", "bentoml"):
        got = _v1(served[runtime], {"user_id": new_user, "k": 10, "context": TS,
                                    "demographics": demo})
        assert got.status_code == 200, got.text
        pred = got.json()["predictions"][0]
        assert pred["cold_start"] is True and pred["items"] == segment_top, runtime
        plain = _v1(served[runtime], {"user_id": new_user, "k": 10, "context": TS})
        assert plain.json()["predictions"][0]["items"] == global_top, runtime
    routed = httpx.post(served["router"] + "/recommend", timeout=30, json={
        "user_id": new_user, "k": 10, "context": TS, "demographics": demo})
    assert routed.status_code == 200, routed.text
    assert routed.json()["items"] == segment_top and routed.json()["cold_start"] is True


def test_a_misspelt_demographics_field_is_refused_naming_it(
        served: dict[str, str]) -> None:
    bad = {"user_id": 7, "k": 5, "demographics": {"age": "25-34"}}
    for runtime in ("kserve", "bentoml"):
        r = _v1(served[runtime], bad)
        assert r.status_code == 400, (runtime, r.text)
        assert r.json()["field"].startswith("instances.0.demographics.age"), (runtime, r.text)
        assert "'age_bucket', 'gender', 'occupation' or 'region'" in r.json()["error"]
    r = httpx.post(served["router"] + "/recommend", json=bad, timeout=30)
    assert 400 <= r.status_code < 500 and r.json()["field"].startswith("demographics.age"), r.text
    too_long = {"user_id": 7, "demographics": {"gender": "x" * 65}}
    r = httpx.post(served["router"] + "/recommend", json=too_long, timeout=30)
    assert 400 <= r.status_code < 500 and r.json()["field"] == "demographics.gender", r.text
