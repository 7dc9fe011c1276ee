"""Request ids from the ``x-request-id`` header and the V2 ``id`` follow the rule of the body
field ``request_id``: the real KServe app in process, a bad id is a 400 naming where it came
from, and nothing reaches the payload log."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient

# the serving suites' helpers (a real tiny bundle, the in-process KServe app), importable the
# way pytest makes them importable for tests/serving
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from serving_support import V1_PATH, V2_PATH, bundle_dir, kserve_app  # noqa: E402, F401

V1_BODY = {"instances": [{"user_id": 1, "k": 3}]}


def _v2_body(request_id: str | None) -> dict:
    body: dict = {"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]},
                             {"name": "k", "shape": [1], "datatype": "INT64", "data": [3]}]}
    if request_id is not None:
        body["id"] = request_id
    return body


@pytest.fixture(scope="module")
def client(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    asgi, _, payload = kserve_app(bundle_dir, tmp_path_factory.mktemp("home"))
    with TestClient(asgi, raise_server_exceptions=False) as c:
        yield c
    payload.close()


BAD_IDS = {"markup": "a b/<script>", "129-chars": "x" * 129, "8000-chars": "x" * 8000,
           "unicode": "ü🎬", "tabs": "id\twith\ttabs", "semicolon": "semi;colon"}


@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_header_is_a_400_naming_x_request_id(client: TestClient, bad: str) -> None:
    r = client.post(V1_PATH, json=V1_BODY, headers={"x-request-id": bad.encode()})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "bad_request" and body["field"] == "x-request-id"
    assert body["error"].startswith("x-request-id: ")
    assert len(r.content) < 400  # the value is cut short, never echoed whole


@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_v2_id_is_a_400_naming_id(client: TestClient, bad: str) -> None:
    r = client.post(V2_PATH, json=_v2_body(bad))
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "bad_request" and body["field"] == "id"
    assert body["error"].startswith("id: ")
    assert len(r.content) < 400


def test_bad_header_on_v2_is_named_too(client: TestClient) -> None:
    r = client.post(V2_PATH, json=_v2_body("req-7"), headers={"x-request-id": "a b"})
    assert r.status_code == 400 and r.json()["field"] == "x-request-id"


def test_valid_ids_are_used_as_before(client: TestClient) -> None:
    r = client.post(V1_PATH, json=V1_BODY, headers={"x-request-id": "hdr-777:a.b_c"})
    assert r.status_code == 200 and r.json()["predictions"][0]["request_id"] == "hdr-777:a.b_c"
    r = client.post(V1_PATH, json=V1_BODY, headers={"x-request-id": "x" * 128})
    assert r.status_code == 200 and r.json()["predictions"][0]["request_id"] == "x" * 128
    r = client.post(V2_PATH, json=_v2_body("req-7"))
    assert r.status_code == 200
    out = {o["name"]: o["data"] for o in r.json()["outputs"]}
    assert r.json()["id"] == "req-7" and out["request_id"] == ["req-7"]
    r = client.post(V1_PATH, json=V1_BODY, headers={"x-request-id": ""})  # empty: absent
    assert r.status_code == 200 and r.json()["predictions"][0]["request_id"]
    r = client.post(V2_PATH, json=_v2_body(None))
    assert r.status_code == 200


def test_rejected_ids_write_no_payload_rows(bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    asgi, _, payload = kserve_app(bundle_dir, tmp_path / "home")
    with TestClient(asgi, raise_server_exceptions=False) as c:
        assert c.post(V1_PATH, json=V1_BODY, headers={"x-request-id": "a b"}).status_code == 400
        assert c.post(V2_PATH, json=_v2_body("x" * 200)).status_code == 400
        assert c.post(V1_PATH, json=V1_BODY, headers={"x-request-id": "ok-1"}).status_code == 200
    payload.close()
    files = list((tmp_path / "home").rglob("payload-logs/**/*.parquet"))
    rows = [r for f in files if ".marquee-store" not in f.parts
            for r in pq.read_table(f).to_pylist()]
    assert [r["request_id"] for r in rows] == ["ok-1"]


def test_an_unknown_model_is_a_404_in_one_log_line(client: TestClient,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """KServe's own handler logged each such request at ERROR with a 19-line traceback."""
    caplog.clear()
    for path, body in (("/v1/models/nope:predict", V1_BODY),
                       ("/v2/models/nope/infer", _v2_body(None))):
        r = client.post(path, json=body)
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "model_not_found" and r.json()["field"] == "model"
    assert not [rec for rec in caplog.records if rec.levelno >= 40 or rec.exc_info]
