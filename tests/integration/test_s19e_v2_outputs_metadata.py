"""What a V2 (Open Inference) client and a V1 client saw differ from the protocol, on both
runtimes in process (KServe's app and ``TestClient(MovieRecommender.to_asgi())``).

* A V2 request's ``outputs`` (the protocol's selection of output tensors by name) was ignored:
  every response held all five outputs, and a name the model has not was answered 200.
* ``GET /v2/models/movie-recommender`` (the protocol's model metadata, how a client discovers
  the tensors) said ``inputs: [], outputs: []`` on KServe and was a 404 on BentoML.
* KServe's ``GET /v2`` advertised ``model_repository_extension``, whose routes this server
  refuses (404).
* A V1 body that is a JSON string was decoded a second time by KServe: a string holding a V1
  body was answered 200 (BentoML: 400), and any other JSON string got "malformed JSON".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from serving_support import V1_PATH, V2_PATH, bundle_dir, clients  # noqa: E402, F401

OUTPUTS = ["items", "scores", "cold_start", "fallback", "request_id"]


def _v2(client: TestClient, outputs: list[dict] | None, k: int = 3):
    body: dict = {"id": "s19e", "inputs": [
        {"name": "user_id", "shape": [2], "datatype": "INT64", "data": [1, 2]},
        {"name": "k", "shape": [1], "datatype": "INT64", "data": [k]}]}
    if outputs is not None:
        body["outputs"] = outputs
    return client.post(V2_PATH, content=json.dumps(body),
                       headers={"content-type": "application/json"})


@pytest.mark.parametrize("runtime", ["kserve", "bentoml"])
def test_v2_outputs_selects_the_named_outputs_in_order(clients: dict[str, TestClient],
                                                       runtime: str) -> None:
    client = clients[runtime]
    full = _v2(client, None)
    assert full.status_code == 200, full.text
    assert [o["name"] for o in full.json()["outputs"]] == OUTPUTS
    some = _v2(client, [{"name": "scores"}, {"name": "items"}])
    assert some.status_code == 200, some.text
    got = some.json()["outputs"]
    assert [o["name"] for o in got] == ["scores", "items"]
    by_name = {o["name"]: o for o in full.json()["outputs"]}
    assert got[1]["data"] == by_name["items"]["data"] and got[1]["shape"] == [2, 3]


@pytest.mark.parametrize("runtime", ["kserve", "bentoml"])
@pytest.mark.parametrize(("outputs", "field"), [
    ([{"name": "item"}], "outputs.item"),
    ([{"name": "items"}, {"name": "items"}], "outputs.items"),
], ids=["unknown", "twice"])
def test_a_bad_v2_output_name_is_a_400_naming_it(clients: dict[str, TestClient], runtime: str,
                                                 outputs: list[dict], field: str) -> None:
    r = _v2(clients[runtime], outputs)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
    assert r.json()["error"].startswith(field)


def test_v2_model_metadata_names_the_tensors_on_both_runtimes(
        clients: dict[str, TestClient]) -> None:
    answers = {}
    for runtime, client in clients.items():
        r = client.get("/v2/models/movie-recommender")
        assert r.status_code == 200, (runtime, r.text)
        answers[runtime] = r.json()
    meta = answers["kserve"]
    assert [t["name"] for t in meta["inputs"]] == ["user_id", "k"]
    assert [t["name"] for t in meta["outputs"]] == OUTPUTS
    assert {t["name"]: t["datatype"] for t in meta["outputs"]}["scores"] == "FP64"
    assert answers["bentoml"] == meta


def test_kserve_server_metadata_does_not_offer_the_refused_repository_extension(
        clients: dict[str, TestClient]) -> None:
    client = clients["kserve"]
    r = client.get("/v2")
    assert r.status_code == 200
    assert "model_repository_extension" not in r.json()["extensions"]
    # ... whose routes are indeed refused
    assert client.post("/v2/repository/models/movie-recommender/unload").status_code == 404


@pytest.mark.parametrize("body", [
    json.dumps(json.dumps({"instances": [{"user_id": 1, "k": 3}]})),
    '"s"',
], ids=["string-holding-a-v1-body", "plain-string"])
def test_a_v1_body_that_is_a_json_string_is_the_same_400_on_both(
        clients: dict[str, TestClient], body: str) -> None:
    answers = {}
    for runtime, client in clients.items():
        r = client.post(V1_PATH, content=body, headers={"content-type": "application/json"})
        answers[runtime] = (r.status_code, r.json())
    status, payload = answers["kserve"]
    assert status == 400, payload
    assert payload["field"] == "body"
    assert "expected a JSON object" in payload["error"]
    assert answers["bentoml"] == answers["kserve"]


def test_two_instances_under_one_request_id_are_refused_on_both(
        clients: dict[str, TestClient]) -> None:
    """Payload and feedback logs join on the request id: a V1 batch whose instances shared one
    ``request_id`` was answered 200 with two predictions (and two payload rows) under that id,
    so a click on it could not be told apart. Distinct ids are still answered."""
    dup = {"instances": [{"user_id": 1, "request_id": "s19e-a"},
                         {"user_id": 2, "request_id": "s19e-b"},
                         {"user_id": 3, "request_id": "s19e-a"}]}
    distinct = {"instances": [{"user_id": 1, "request_id": "s19e-a"},
                              {"user_id": 2, "request_id": "s19e-b"}, {"user_id": 3}]}
    answers = {}
    for runtime, client in clients.items():
        r = client.post(V1_PATH, content=json.dumps(dup),
                        headers={"content-type": "application/json"})
        answers[runtime] = (r.status_code, r.json())
        ok = client.post(V1_PATH, content=json.dumps(distinct),
                         headers={"content-type": "application/json"})
        assert ok.status_code == 200, ok.text
        assert [p["request_id"] for p in ok.json()["predictions"]][:2] == ["s19e-a", "s19e-b"]
    status, payload = answers["kserve"]
    assert status == 400, payload
    assert payload["field"] == "instances.2.request_id"
    assert "instance 0" in payload["error"]
    assert answers["bentoml"] == answers["kserve"]
