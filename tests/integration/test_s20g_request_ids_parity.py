"""Request ids derived from one header, and the two runtimes answering alike off the happy path.

In process (KServe's app beside ``TestClient(MovieRecommender.to_asgi())``), one real KServe
server for its log:

* A batch of V1 instances without their own ``request_id`` under a 128-character
  ``x-request-id`` (or V2 ``id``) was answered with 130-character ids, outside the rule the
  payload log holds ids to. A derived ``<header>-<i>`` equal to another instance's explicit
  ``request_id`` was answered 200 with two predictions under one id.
* BentoML answered 404 ``path: Not Found`` where KServe lists its models (``GET /v1/models``,
  ``/v2/models``), gives its server metadata (``GET /v2``) or says ``model_not_found`` for a
  model it does not hold.
* KServe answered ``GET /v2/models/<name>/versions/<v>`` (and ``…/ready``) with a 501 and a
  traceback at ERROR on every request; BentoML with a 404.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import httpx
import pytest
from conftest import free_port, stop_process
from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from serving_support import (  # noqa: E402, F401
    V1_PATH,
    V2_PATH,
    bundle_dir,
    clients,
    start_server,
)

from serving.fields import REQUEST_ID_MAX_LENGTH, REQUEST_ID_PATTERN  # noqa: E402

JSON = {"content-type": "application/json"}
V2_BODY = {"inputs": [{"name": "user_id", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]}]}


def _ids(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    if "predictions" in body:
        return [p["request_id"] for p in body["predictions"]]
    return next(o["data"] for o in body["outputs"] if o["name"] == "request_id")


# Task 1: derived ids ----------------------------------------------------------------------------
@pytest.mark.parametrize("runtime", ["kserve", "bentoml"])
def test_ids_derived_from_a_long_header_or_v2_id_stay_within_the_rule(
        clients: dict[str, TestClient], runtime: str) -> None:
    client = clients[runtime]
    longest = "h" * REQUEST_ID_MAX_LENGTH
    other = "h" * (REQUEST_ID_MAX_LENGTH - 1) + "i"  # the same first 127 characters
    v1 = {"instances": [{"user_id": u, "k": 2} for u in (1, 2, 3)]}
    ids = []
    for header in (longest, other):
        ids += _ids(client.post(V1_PATH, json=v1, headers={"x-request-id": header}))
    ids += _ids(client.post(V2_PATH, content=json.dumps({**V2_BODY, "id": longest}),
                            headers=JSON))
    assert len(ids) == 9
    for rid in ids:
        assert len(rid) <= REQUEST_ID_MAX_LENGTH and re.fullmatch(REQUEST_ID_PATTERN, rid), \
            (len(rid), rid)
    assert len(set(ids[:6])) == 6  # distinct headers keep distinct ids
    assert ids[6:] == ids[:3]  # the same base gives the same ids, V1 header or V2 id
    # a short header keeps the documented <header>-<i>
    assert _ids(client.post(V1_PATH, json=v1, headers={"x-request-id": "hdr"})) == \
        ["hdr-0", "hdr-1", "hdr-2"]


def test_a_derived_id_equal_to_an_explicit_request_id_is_the_same_400_on_both(
        clients: dict[str, TestClient]) -> None:
    body = {"instances": [{"user_id": 1}, {"user_id": 2, "request_id": "abc-0"}]}
    answers = {}
    for runtime, client in clients.items():
        r = client.post(V1_PATH, json=body, headers={"x-request-id": "abc"})
        answers[runtime] = (r.status_code, r.json())
    status, payload = answers["kserve"]
    assert status == 400, payload
    assert payload["field"] == "instances.1.request_id"
    assert "'abc-0'" in payload["error"] and "instance 0" in payload["error"]
    assert answers["bentoml"] == answers["kserve"]
    # with another header the same body is answered
    ok = clients["bentoml"].post(V1_PATH, json=body, headers={"x-request-id": "abd"})
    assert _ids(ok) == ["abd-0", "abc-0"]


# Tasks 2 and 3: the same answer off the happy path -----------------------------------------------
PARITY = [
    ("GET", "/v2", None),
    ("GET", "/v1/models", None),
    ("GET", "/v2/models", None),
    ("GET", "/v1/models/nope", None),
    ("POST", "/v1/models/nope:predict", {"instances": [{"user_id": 1}]}),
    ("GET", "/v2/models/nope", None),
    ("GET", "/v2/models/nope/ready", None),
    ("POST", "/v2/models/nope/infer", V2_BODY),
    ("POST", "/v2/models/nope/infer", {"instances": [{"user_id": 1}]}),
    ("GET", "/v1/models/movie-recommender:predict", None),
    ("GET", "/v2/models/movie-recommender/infer", None),
    ("GET", "/v2/models/movie-recommender/versions/1", None),
    ("GET", "/v2/models/movie-recommender/versions/1/ready", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PARITY,
                         ids=[f"{m} {p}" + (" v1-body" if b and "instances" in b and "v2" in p
                                             else "") for m, p, b in PARITY])
def test_both_runtimes_answer_alike(clients: dict[str, TestClient], method: str, path: str,
                                    body: dict | None) -> None:
    answers = {}
    for runtime, client in clients.items():
        r = client.request(method, path, headers=JSON,
                           content=None if body is None else json.dumps(body))
        answers[runtime] = (r.status_code, r.json())
    status, payload = answers["kserve"]
    assert status != 501, payload
    if path == "/v2":  # the server's own name and version differ
        for runtime in answers:
            assert set(answers[runtime][1]) == {"name", "version", "extensions"}
            answers[runtime][1].pop("name"), answers[runtime][1].pop("version")
    assert answers["bentoml"] == answers["kserve"]


@pytest.mark.integration
def test_kserve_answers_versioned_metadata_without_a_traceback(
        bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()
    log_path = tmp_path / "kserve.log"
    proc = start_server("kserve", bundle_dir, tmp_path / "home", port, log_path,
                        payload_log_enabled=False)
    try:
        for path in ("/v2/models/movie-recommender/versions/1",
                     "/v2/models/movie-recommender/versions/1/ready"):
            r = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=30)
            assert r.status_code == 404, (path, r.text)
            assert r.json() == {"error": "path: Not Found", "code": "bad_request",
                                "field": "path"}
    finally:
        stop_process(proc)
    log = log_path.read_text()
    assert "Traceback" not in log and "NotImplementedError" not in log, log[-3000:]
