"""Bad or unusual requests the earlier hardening missed (a second bug hunt): each was a 5xx, a
server left unable to serve, or a 2xx that accepted what it should have refused.

- JSON nested ~1,000 deep parses, but echoing the refused value overflowed ``repr``: a 500
  from the router and the model server instead of the 4xx naming the field.
- A routing whose upstream URL is not an http(s) URL was applied, and the raw upstream client
  then failed every request with a bare 500 (an https URL too, which it cannot call).
- A body just under the router's limit grew past the model server's limit when forwarded:
  a 502 counted against the variant for what is the client's oversized request.
- ``POST /v2/repository/models/<name>/unload`` (KServe's repository extension) unloaded the
  one model for good, unauthenticated; :explain and versioned V2 inference were 501s.
- V2 inputs with the same name twice: the last one was served, the others ignored.

The payload sink's cases of the same hunt (a pair nested too deep to store, a prediction count
unlike the instance count) are in tests/unit/test_payload_sink_hardening.py's BAD_PAIRS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_support import V1_PATH, V2_PATH, bundle_dir, kserve_app  # noqa: F401
from starlette.testclient import TestClient

from serving.router.app import create_app
from serving.router.settings import RouterSettings
from tests.rollout.test_router_app import client_for
from tests.rollout.test_router_hardening import RecordingServers

DEEP = b"[" * 1000 + b"1" + b"]" * 1000  # within orjson's 1,024 levels, beyond repr's


@pytest.fixture(scope="module")
def model_server(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    app, _model, payload = kserve_app(bundle_dir, tmp_path_factory.mktemp("home"))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield app, c
    payload.close()


def _fresh_model_server(bundle_dir: Path, home: Path):  # noqa: F811
    app, _model, payload = kserve_app(bundle_dir, home)
    return app, payload


# Deep nesting -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "body", "field"), [
    ("/recommend", b'{"user_id": ' + DEEP + b"}", "user_id"),
    ("/recommend", b'{"user_id": 1, "pad": ' + DEEP + b"}", "pad"),
    ("/feedback", b'{"request_id": "r", "item_id": ' + DEEP + b', "event": "click"}',
     "item_id"),
])
def test_deeply_nested_json_is_a_4xx_from_the_router(path: str, body: bytes,
                                                     field: str) -> None:
    servers = RecordingServers()
    with client_for(servers) as c:
        r = c.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field and "nested too deeply" in r.json()["error"]
        assert not servers.calls


@pytest.mark.parametrize(("body", "field"), [
    (b'{"instances": [{"user_id": ' + DEEP + b"}]}", "instances.0.user_id"),
    (b'{"instances": ' + DEEP + b"}", "instances.0"),
])
def test_deeply_nested_json_is_a_400_from_the_model_server(model_server, body: bytes,
                                                          field: str) -> None:
    _, c = model_server
    r = c.post(V1_PATH, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field


# Routing URLs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1:9", "127.0.0.1:9"])
def test_a_routing_upstream_url_must_be_an_http_url(url: str) -> None:
    with client_for(RecordingServers()) as c:
        before = c.get("/admin/routing").json()
        r = c.put("/admin/routing", json={"baseline": {"version": "1", "url": url}})
        assert r.status_code == 422 and r.json()["field"] == "baseline.url", r.text
        assert c.get("/admin/routing").json() == before  # the routing in force is kept


def test_an_https_model_server_not_reachable_is_a_502_naming_the_variant() -> None:
    """https:// passes ``PUT /admin/upstreams``; the raw client hands it to aiohttp (session
    23: before, it refused every https URL as unusable). Port 9 of 127.0.0.1 refuses the
    connection, so nothing leaves this machine; the error names the scheme."""
    settings = RouterSettings(upstreams={"1": "https://127.0.0.1:9"}, baseline_version="1",
                              upstream_client="raw")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        r = c.post("/recommend", json={"user_id": 1})
        assert r.status_code == 502, r.text
        assert r.json()["variant"] == "baseline" and "https" in r.json()["error"]


# Body sizes across the hop ----------------------------------------------------------------------
def _body_of_size(size: int) -> bytes:
    """A valid product request of exactly ``size`` bytes (one long context string)."""
    empty = len(json.dumps({"user_id": 1, "context": {"note": ""}}, separators=(",", ":")))
    body = json.dumps({"user_id": 1, "context": {"note": "x" * (size - empty)}},
                      separators=(",", ":")).encode()
    assert len(body) == size
    return body


def test_a_body_the_router_accepts_is_one_the_model_server_accepts(model_server) -> None:
    """Before: 65,530 bytes passed the router's 64 KiB and, wrapped in ``{"instances": [..]}``,
    not the model server's: a 502 counted against the variant."""
    app, _ = model_server
    settings = RouterSettings(upstreams={"1": "http://model.test"}, baseline_version="1")
    router = create_app(settings, transport=httpx.ASGITransport(app=app))
    with TestClient(router) as c:
        r = c.post("/recommend", content=_body_of_size(65_530),
                   headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["field"] == "body", r.text
        from serving.router.app import MAX_BODY_BYTES

        r = c.post("/recommend", content=_body_of_size(MAX_BODY_BYTES),
                   headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text


# KServe routes the server does not serve --------------------------------------------------------
def test_the_model_cannot_be_unloaded_over_http(bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    app, payload = _fresh_model_server(bundle_dir, tmp_path)
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            for action in ("unload", "load"):
                r = c.post(f"/v2/repository/models/movie-recommender/{action}")
                assert r.status_code == 404 and r.json()["field"] == "path", r.text
            r = c.post(V1_PATH, json={"instances": [{"user_id": 1, "k": 3}]})
            assert r.status_code == 200, r.text
            assert c.get("/v1/models/movie-recommender").status_code == 200
    finally:
        payload.close()


@pytest.mark.parametrize("path", ["/v1/models/movie-recommender:explain",
                                  "/v2/models/movie-recommender/versions/1/infer"])
def test_unsupported_kserve_routes_are_a_404_not_a_501(model_server, path: str) -> None:
    _, c = model_server
    body: dict[str, Any] = ({"instances": [{"user_id": 1}]} if "v1" in path else
                            {"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64",
                                         "data": [1]}]})
    r = c.post(path, json=body)
    assert r.status_code == 404 and r.json()["field"] == "path", r.text


# V2 inputs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["user_id", "k"])
def test_a_v2_input_given_twice_is_refused(model_server, name: str) -> None:
    _, c = model_server
    one = {"name": name, "shape": [1], "datatype": "INT64", "data": [1]}
    inputs = [one, {**one, "data": [2]}]
    if name == "k":
        inputs.insert(0, {**one, "name": "user_id"})
    r = c.post(V2_PATH, json={"inputs": inputs})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == f"inputs.{name}" and "more than once" in r.json()["error"]
