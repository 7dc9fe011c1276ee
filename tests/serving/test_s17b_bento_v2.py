"""The Open Inference (V2) protocol on both model-server runtimes, real processes on 127.0.0.1.

The contract's model server speaks V1 and V2 and `marquee serve --runtime kserve|bentoml`
serves "it"; the BentoML runtime answered every V2 request with a 404, so a V2 client broke
when a deployment switched runtimes. Both now take the same V2 request to the same answer
and refuse the same bad ones with the same status and body.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from conftest import free_port, stop_process
from serving_support import V2_PATH, bundle_dir, start_server  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def both(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """A KServe and a BentoML server on the same bundle; cold users get segment popularity
    (deterministic: no request-time features), so the two answers can be compared exactly."""
    home = tmp_path_factory.mktemp("s17b-v2")
    procs = []
    try:
        urls = []
        for runtime in ("kserve", "bentoml"):
            port = free_port()
            procs.append(start_server(runtime, bundle_dir, home / runtime, port,
                                      home / f"{runtime}.log", cold_start_strategy="popular"))
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        for proc in procs:
            stop_process(proc)


def _infer(url: str, body: object, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else None
    return httpx.post(url + V2_PATH, content=content,
                      json=None if content is not None else body,
                      headers={"content-type": "application/json", **headers}, timeout=30)


def test_v2_infer_is_answered_alike_by_both_runtimes(both: list[str]) -> None:
    kserve, bento = both
    users = [10**9, 10**9 + 1, 1, 2]  # two unknown (cold) users, two known ones
    body = {"id": "s17b-v2", "inputs": [
        {"name": "user_id", "shape": [len(users)], "datatype": "INT64", "data": users},
        {"name": "k", "shape": [1], "datatype": "INT32", "data": [7]}]}
    a, b = _infer(kserve, body), _infer(bento, body)
    assert a.status_code == 200, a.text
    assert b.status_code == 200, b.text  # was 404 on BentoML
    ja, jb = a.json(), b.json()
    assert jb["id"] == ja["id"] == "s17b-v2"
    assert jb["model_name"] == ja["model_name"] and jb["model_version"] == ja["model_version"]
    oa = {o["name"]: o for o in ja["outputs"]}
    ob = {o["name"]: o for o in jb["outputs"]}
    assert list(ob) == list(oa) == ["items", "scores", "cold_start", "fallback", "request_id"]
    for name in oa:
        assert (ob[name]["shape"], ob[name]["datatype"]) == (oa[name]["shape"],
                                                             oa[name]["datatype"])
    assert oa["items"]["shape"] == [4, 7]
    for name in ("cold_start", "fallback", "request_id"):
        assert ob[name]["data"] == oa[name]["data"]
    assert oa["cold_start"]["data"][:2] == [True, True]
    # the cold users' lists (segment popularity) are the same items and scores
    assert ob["items"]["data"][:14] == oa["items"]["data"][:14]
    assert ob["scores"]["data"][:14] == oa["scores"]["data"][:14]
    assert -1 not in ob["items"]["data"]

    # the x-request-id header names the request, as on KServe
    got = _infer(bento, body, **{"x-request-id": "from-header"}).json()
    ids = next(o for o in got["outputs"] if o["name"] == "request_id")["data"]
    assert ids == [f"from-header-{i}" for i in range(len(users))]


@pytest.mark.parametrize("body", [
    {"inputs": [{"name": "user_id", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
    {"inputs": [{"name": "user_id", "shape": [2], "datatype": "UINT8", "data": [1, 300]}]},
    {"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [0]}]},
    {"inputs": [{"name": "user", "shape": [1], "datatype": "INT64", "data": [1]}]},
    {"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]},
                {"name": "k", "shape": [1], "datatype": "INT64", "data": [501]}]},
    {"inputs": [{"name": "user_id", "shape": [1], "data": [1]}]},
    {"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]}],
     "id": "not an id"},
    {},
    b'{"inputs": [',
], ids=["fp32", "uint8-overflow", "user-0", "unknown-input", "k-501", "no-datatype", "bad-id",
        "no-inputs", "not-json"])
def test_bad_v2_requests_get_the_same_4xx_from_both_runtimes(both: list[str],
                                                             body: object) -> None:
    kserve, bento = both
    a, b = _infer(kserve, body), _infer(bento, body)
    assert 400 <= a.status_code < 500, a.text
    assert (b.status_code, b.json()) == (a.status_code, a.json())
    assert b.json()["field"] != "path"


def test_kserve_health_and_readiness_paths_answer_alike(both: list[str]) -> None:
    """A V1/V2 client's (or a probe's) readiness check was a 404 on the BentoML runtime."""
    kserve, bento = both
    for path in ("/v2/health/live", "/v2/health/ready", "/v1/models/movie-recommender",
                 "/v2/models/movie-recommender/ready"):
        a, b = httpx.get(kserve + path, timeout=10), httpx.get(bento + path, timeout=10)
        assert a.status_code == 200, (path, a.text)
        assert (b.status_code, b.json()) == (a.status_code, a.json()), path
