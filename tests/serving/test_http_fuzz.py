"""The model server's HTTP API under generated input: no 5xx, 4xx bodies name the field.

Property-based (hypothesis) against the real KServe app in process: V1 JSON bodies, raw
bytes with assorted content types, V2 (Open Inference) bodies, oversized bodies. At least
1,000 requests per run; a fixed seed keeps CI reproducible.
"""

from __future__ import annotations

from pathlib import Path

import json
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_support import V1_PATH, V2_PATH, bundle_dir, kserve_app  # noqa: F401
from starlette.testclient import TestClient

N_REQUESTS = 1_200


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()  # stdlib: also integers beyond 64 bits


@pytest.fixture(scope="module")
def client(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    app, model, payload = kserve_app(bundle_dir, tmp_path_factory.mktemp("home"),
                                     max_body_bytes=8192)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    payload.close()


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
)
json_values = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=12)
ints = st.one_of(st.integers(min_value=-5, max_value=2_000),
                 st.integers(min_value=-(2**65), max_value=2**65))
instance = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.one_of(ints, json_values),
        "k": st.one_of(st.integers(-3, 600), json_values),
        "history": st.one_of(st.lists(ints, max_size=8), json_values),
        "context": st.one_of(st.dictionaries(st.sampled_from(["ts", "hour", "device", "x"]),
                                             st.one_of(scalars, ints), max_size=3),
                             json_values),
        "request_id": st.one_of(st.from_regex(r"[A-Za-z0-9\-]{1,20}", fullmatch=True),
                                st.text(max_size=140)),
        "extra": json_values,
    },
)
v1_body = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(instance, min_size=0, max_size=4)}),
    st.fixed_dictionaries({"instances": json_values}),
    json_values,
)
tensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["user_id", "k", "other"]),
     "shape": st.one_of(st.lists(st.integers(-2, 4), max_size=3), json_values),
     "datatype": st.sampled_from(["INT64", "INT32", "FP32", "BOOL", "BYTES", "FP16", "junk"]),
     "data": st.one_of(st.lists(ints, max_size=5),
                       st.lists(st.lists(ints, max_size=3), max_size=3), json_values)},
    optional={"parameters": json_values},
)
v2_body = st.one_of(
    st.fixed_dictionaries({"inputs": st.lists(tensor, max_size=3)},
                          optional={"id": st.one_of(st.text(max_size=10), json_values),
                                    "outputs": json_values}),
    json_values,
)
raw = st.one_of(st.binary(max_size=64), st.text(max_size=64).map(str.encode),
                st.builds(lambda n: b"{" * n, st.integers(1, 9000)),
                st.builds(lambda n: b'{"instances": [' + b"1," * n + b"1]}",
                          st.integers(1, 5000)))
content_types = st.sampled_from([None, "application/json", "text/plain",
                                 "application/octet-stream", "application/cloudevents+json"])

request = st.one_of(
    st.tuples(st.just(V1_PATH), v1_body.map(_dumps), st.just("application/json")),
    st.tuples(st.just(V1_PATH), raw, content_types),
    st.tuples(st.just(V2_PATH), v2_body.map(_dumps), st.just("application/json")),
    st.tuples(st.just(V2_PATH), raw, content_types),
)


def _check(path: str, body: bytes, ctype: str | None, r) -> None:
    assert r.status_code < 500, (path, body[:300], ctype, r.status_code, r.text[:300])
    data = r.json()
    if r.status_code == 200:
        if path == V1_PATH:
            preds = data["predictions"]
            assert preds and all(len(p["items"]) == len(p["scores"]) for p in preds)
        else:
            names = {o["name"] for o in data["outputs"]}
            assert {"items", "scores"} <= names and data["id"]
    else:
        assert 400 <= r.status_code < 500
        assert data.get("error") and data.get("field"), (path, body[:200], ctype, r.status_code, data)


def test_no_5xx_for_generated_requests(client: TestClient) -> None:
    sent: list[int] = []

    @settings(max_examples=N_REQUESTS, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(request)
    def one(req: tuple[str, bytes, str | None]) -> None:
        path, body, ctype = req
        headers = {"content-type": ctype} if ctype else {}
        r = client.post(path, content=body, headers=headers)
        sent.append(r.status_code)
        _check(path, body, ctype, r)

    one()
    assert len(sent) >= 1_000
    assert any(code == 200 for code in sent) and any(400 <= c < 500 for c in sent)


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"instances": [{"k": 3}]}, 400, "instances.0.user_id"),
    ({"instances": [{"user_id": 1, "k": 0}]}, 400, "instances.0.k"),
    ({"instances": [{"user_id": 1, "k": 501}]}, 400, "instances.0.k"),
    ({"instances": [{"user_id": "42"}]}, 400, "instances.0.user_id"),
    ({"instances": [{"user_id": 4.0}]}, 400, "instances.0.user_id"),
    ({"instances": [{"user_id": True}]}, 400, "instances.0.user_id"),
    ({"instances": [{"user_id": 1, "history": ["a"]}]}, 400, "instances.0.history.0"),
    ({"instances": [{"user_id": 1, "context": {"ts": -1}}]}, 400, "instances.0.context"),
    ({"instances": []}, 400, "instances"),
    ({"instances": [{"user_id": 1}] * 65}, 400, "instances"),
    ([1, 2], 400, "body"),
])
def test_bad_v1_fields_are_named(client: TestClient, body: object, status: int,
                                 field: str) -> None:
    r = client.post(V1_PATH, json=body)
    assert r.status_code == status and r.json()["field"] == field, r.text
    assert field in r.json()["error"]


def test_malformed_and_oversized_bodies(client: TestClient) -> None:
    r = client.post(V1_PATH, content=b'{"instances": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = client.post(V1_PATH, content=b"x" * 9000, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body"

    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    r = client.post(V1_PATH, content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_bad_v2_fields_are_named(client: TestClient) -> None:
    def v2(*inputs: dict) -> dict:
        return {"inputs": list(inputs)}

    cases = [
        (v2({"name": "k", "shape": [1], "datatype": "INT64", "data": [3]}), "inputs.user_id"),
        (v2({"name": "user_id", "shape": [1], "datatype": "FP32", "data": [1.0]}),
         "inputs.user_id.datatype"),
        (v2({"name": "user_id", "shape": [3], "datatype": "INT64", "data": [1]}),
         "inputs.user_id.shape"),
        (v2({"name": "user_id", "shape": [1], "datatype": "INT64", "data": [0]}),
         "inputs.user_id"),
        (v2({"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]},
            {"name": "k", "shape": [1], "datatype": "INT64", "data": [900]}), "inputs.k"),
    ]
    for body, field in cases:
        r = client.post(V2_PATH, json=body)
        assert r.status_code == 400 and r.json()["field"] == field, r.text


@pytest.mark.parametrize(("body", "where"), [
    (b'{"inputs": [', "line 1, column 13 (character 12)"),
    (b'not json', "line 1, column 1 (character 0)"),
    (b'{"inputs": [\n  {"name": "user_id",}\n]}', "line 2, column 22 (character 34)"),
])
def test_malformed_v2_json_is_a_400_that_says_so_and_where(client: TestClient, body: bytes,
                                                           where: str) -> None:
    r = client.post(V2_PATH, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    data = r.json()
    assert data["field"] == "body", data  # not the character offset as if it were a field
    assert data["error"].startswith("body: not valid JSON") and where in data["error"], data


def _v2_user(datatype: str, value: object, k: dict | None = None) -> dict:
    inputs = [{"name": "user_id", "shape": [1], "datatype": datatype, "data": [value]}]
    return {"inputs": inputs + ([k] if k else [])}


@pytest.mark.parametrize(("body", "field", "shown"), [
    (_v2_user("UINT8", 300), "inputs.user_id.data", "300"),
    (_v2_user("UINT8", -1), "inputs.user_id.data", "-1"),
    (_v2_user("INT8", 200), "inputs.user_id.data", "200"),
    (_v2_user("UINT16", 70_000), "inputs.user_id.data", "70000"),
    (_v2_user("INT32", 2**31), "inputs.user_id.data", str(2**31)),
    (_v2_user("UINT32", 2**32), "inputs.user_id.data", str(2**32)),
    (_v2_user("UINT64", -5), "inputs.user_id.data", "-5"),
    (_v2_user("INT64", 2**63), "inputs.user_id.data", str(2**63)),
    (_v2_user("INT64", 1, {"name": "k", "shape": [1], "datatype": "UINT8", "data": [300]}),
     "inputs.k.data", "300"),
    (_v2_user("INT64", 1, {"name": "k", "shape": [1], "datatype": "INT8", "data": [-129]}),
     "inputs.k.data", "-129"),
])
def test_v2_values_must_fit_their_declared_datatype(client: TestClient, body: dict, field: str,
                                                    shown: str) -> None:
    r = client.post(V2_PATH, content=_dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    data = r.json()
    assert data["field"] == field and shown in data["error"], data
    assert body["inputs"][-1]["datatype"] in data["error"], data


# FP16 over JSON is refused by KServe itself before the model sees it (400, field "body").
@pytest.mark.parametrize("datatype", ["FP32", "FP64", "BOOL", "BYTES"])
def test_v2_non_integer_datatypes_are_refused_for_ids(client: TestClient, datatype: str) -> None:
    value = {"BOOL": True, "BYTES": "1"}.get(datatype, 1.0)
    r = client.post(V2_PATH, json=_v2_user(datatype, value))
    assert r.status_code == 400 and r.json()["field"] == "inputs.user_id.datatype", r.text
    assert datatype in r.json()["error"]


@pytest.mark.parametrize(("datatype", "value"), [("UINT8", 255), ("INT8", 127), ("UINT16", 7),
                                                 ("INT32", 42), ("UINT64", 42)])
def test_v2_values_within_their_datatype_are_served(client: TestClient, datatype: str,
                                                    value: int) -> None:
    k = {"name": "k", "shape": [1], "datatype": datatype, "data": [5]}
    r = client.post(V2_PATH, json=_v2_user(datatype, value, k))
    assert r.status_code == 200, r.text
    assert next(o for o in r.json()["outputs"] if o["name"] == "items")["shape"] == [1, 5]
