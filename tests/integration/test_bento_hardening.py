"""The BentoML runtime answers like KServe (bug bash A, findings 7 to 10).

In process (``TestClient(MovieRecommender.to_asgi())`` beside the KServe app): the
``x-request-id`` header, 4xx bodies identical to KServe's for the same bad request, one log
line per 4xx, GET ``/marquee/model``, ``/metrics`` without raw paths. Through the ``marquee``
script: a bad alias fails before BentoML starts. One real ``marquee serve --runtime bentoml``
checks the same on the server BentoML runs, and the payload-log join on the header.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from conftest import free_port
from starlette.testclient import TestClient

# The serving suite's shared bundle and server helpers live beside its tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from serving_support import V1_PATH, bundle_dir, kserve_app, start_server  # noqa: E402, F401

OK = {"instances": [{"user_id": 1, "k": 3}]}


@pytest.fixture(scope="module")
def bento(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
          ) -> Iterator[TestClient]:
    """The BentoML service in process, loading the shared bundle (payload logs off)."""
    from serving.bento.service import MovieRecommender

    home = tmp_path_factory.mktemp("bento-home")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("MARQUEE_")]:
            mp.delenv(key)
        mp.setenv("MARQUEE_HOME", str(home))
        mp.setenv("MARQUEE_SERVING_BUNDLE_URI", str(bundle_dir))
        mp.setenv("MARQUEE_SERVING_PAYLOAD_LOG_ENABLED", "false")
        with TestClient(MovieRecommender.to_asgi(), raise_server_exceptions=False) as client:
            yield client


@pytest.fixture(scope="module")
def kserve(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
           ) -> Iterator[TestClient]:
    app, _, payload = kserve_app(bundle_dir, tmp_path_factory.mktemp("kserve-home"),
                                 payload_log_enabled=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    assert payload is None


def _post(client: TestClient, body: object = None, *, content: bytes | None = None,
          content_type: str | None = "application/json", **headers: str) -> httpx.Response:
    if content is None:
        content = json.dumps(body).encode()
    if content_type is not None:
        headers["content-type"] = content_type
    return client.post(V1_PATH, content=content, headers=headers)


# Finding 7: the x-request-id header ---------------------------------------------------------
def test_the_request_id_header_is_the_request_id(bento: TestClient) -> None:
    one = _post(bento, OK, **{"x-request-id": "hdr-777"})
    assert one.status_code == 200
    assert [p["request_id"] for p in one.json()["predictions"]] == ["hdr-777"]
    two = _post(bento, {"instances": [{"user_id": 1}, {"user_id": 2}]},
                **{"x-request-id": "hdr-778"})
    assert [p["request_id"] for p in two.json()["predictions"]] == ["hdr-778-0", "hdr-778-1"]
    # without the header (or with an empty one) an id is generated
    for headers in ({}, {"x-request-id": ""}):
        rid = _post(bento, OK, **headers).json()["predictions"][0]["request_id"]
        assert len(rid) == 32 and rid != "hdr-777"


@pytest.mark.parametrize("value", ["a b/<script>", "x" * 129, "ü🎬"])
def test_a_request_id_header_outside_the_request_id_rule_is_a_400(bento: TestClient,
                                                                  value: str) -> None:
    r = bento.post(V1_PATH, json=OK, headers={"x-request-id": value.encode()})
    assert r.status_code == 400
    body = r.json()
    assert body["field"] == "x-request-id" and body["code"] == "bad_request"
    assert body["error"].startswith("x-request-id: String should ")


# Finding 8: error bodies, methods, logging ------------------------------------------------------
# (Not here: a body that is a JSON string, which KServe decodes a second time.)
BAD_REQUESTS: list[tuple[str, dict]] = [
    ("missing user_id", {"body": {"instances": [{"k": 3}]}}),
    ("extra field in instance", {"body": {"instances": [{"user_id": 1, "foo": 1}]}}),
    ("extra top-level field", {"body": {**OK, "foo": 1}}),
    ("missing instances", {"body": {}}),
    ("instances null", {"body": {"instances": None}}),
    ("instances object", {"body": {"instances": {"user_id": 1}}}),
    ("instances empty", {"body": {"instances": []}}),
    ("instance is int", {"body": {"instances": [1]}}),
    ("65 instances", {"body": {"instances": [{"user_id": 1}] * 65}}),
    ("body is list", {"body": [OK]}),
    ("body is null", {"body": None}),
    ("user_id string", {"body": {"instances": [{"user_id": "1"}]}}),
    ("user_id bool", {"body": {"instances": [{"user_id": True}]}}),
    ("user_id 0", {"body": {"instances": [{"user_id": 0}]}}),
    ("user_id 2^63", {"body": {"instances": [{"user_id": 2**63}]}}),
    ("k 501", {"body": {"instances": [{"user_id": 1, "k": 501}]}}),
    ("k float", {"body": {"instances": [{"user_id": 1, "k": 10.0}]}}),
    ("history 0", {"body": {"instances": [{"user_id": 1, "history": [0]}]}}),
    ("history 1001", {"body": {"instances": [{"user_id": 1, "history": [1] * 1001}]}}),
    ("context list", {"body": {"instances": [{"user_id": 1, "context": [1]}]}}),
    ("context ts", {"body": {"instances": [{"user_id": 1, "context": {"ts": "noon"}}]}}),
    ("body request_id", {"body": {"instances": [{"user_id": 1, "request_id": "a b"}]}}),
    ("malformed JSON", {"content": b'{"instances": ['}),
    ("malformed JSON, text/plain", {"content": b"{oops", "content_type": "text/plain"}),
    ("malformed JSON, charset", {"content": b"{oops",
                                 "content_type": "application/json; charset=utf-8"}),
    ("no content type", {"content": b"{oops", "content_type": None}),
    ("empty body", {"content": b""}),
    ("NaN literal", {"content": b'{"instances": [{"user_id": NaN}]}'}),
    ("header pattern", {"body": OK, "x-request-id": "a b"}),
    ("header length", {"body": OK, "x-request-id": "r" * 200}),
]


@pytest.mark.parametrize(("name", "request_"), BAD_REQUESTS, ids=[n for n, _ in BAD_REQUESTS])
def test_a_bad_request_gets_the_same_status_and_body_from_both_runtimes(
        bento: TestClient, kserve: TestClient, name: str, request_: dict) -> None:
    kwargs = dict(request_)
    body = kwargs.pop("body", None)
    b = _post(bento, body, **kwargs)
    k = _post(kserve, body, **kwargs)
    assert b.status_code == k.status_code == 400, (b.text, k.text)
    assert b.json() == k.json()
    got = b.json()
    assert isinstance(got, dict) and set(got) == {"error", "code", "field"}
    assert got["code"] == "bad_request" and got["error"].startswith(f"{got['field']}: ")


def test_a_4xx_is_one_log_line_below_error(bento: TestClient,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        caplog.clear()
        for _, request_ in BAD_REQUESTS[:5]:
            _post(bento, request_["body"])
        bento.get("/no-such-path")
    records = [r for r in caplog.records if r.name == "serving.bento.service"]
    assert len(records) == 6
    assert all(r.levelno in (logging.INFO, logging.WARNING) and r.exc_info is None
               and "\n" not in r.getMessage() for r in records)
    assert "instances.0.user_id: Field required" in records[0].getMessage()
    assert "model_version=1" in records[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_model_info_is_a_get_and_other_methods_and_paths_are_contract_errors(
        bento: TestClient) -> None:
    info = bento.get("/marquee/model")
    assert info.status_code == 200
    assert info.json()["model_version"] == "1" and info.json()["index"]["kind"] == "flat"
    post = bento.post("/marquee/model")
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    assert post.json() == {"error": "method: Method Not Allowed", "code": "bad_request",
                           "field": "method"}
    get = bento.get("/v2/models/movie-recommender/infer")
    assert get.status_code == 405 and get.json()["field"] == "method"
    # a model path naming another model is KServe's model_not_found (test_s20g_*)
    missing = bento.post("/v1/models/nope:predict", json=OK)
    assert missing.status_code == 404
    assert missing.json() == {"error": "model: Model with name nope does not exist.",
                              "code": "model_not_found", "field": "model"}
    assert bento.get("/nope").json()["field"] == "path"


# Finding 9: no raw paths in /metrics ------------------------------------------------------------
def test_metrics_carry_no_raw_paths_and_keep_the_marquee_series(bento: TestClient) -> None:
    assert _post(bento, OK).status_code == 200
    for i in range(5):
        assert bento.get(f"/fuzz-{i}-x").status_code == 404
    text = bento.get("/metrics").text
    assert "fuzz" not in text and "bentoml_service_request" not in text
    assert 'code="404",model_version="1",route="other"' in text
    assert 'marquee_serving_requests_total{code="200",model_version="1",route="v1_predict"' \
        in text
    assert 'marquee_serving_stage_latency_seconds_bucket{le="0.005",model_version="1",' \
        'stage="retrieve"}' in text


# Finding 10: a bad model reference fails before BentoML starts ----------------------------------
def test_an_unknown_alias_is_one_error_line_before_bentoml_starts(tmp_path: Path) -> None:
    from monitoring.loop.procs import stop_group

    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(MARQUEE_HOME=str(tmp_path), BENTOML_DO_NOT_TRACK="true")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "marquee"), "serve", "--runtime", "bentoml",
         "--alias", "nosuchalias", "--host", "127.0.0.1", "--port", str(free_port())],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # a BentoML server it might start is stopped with the group
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        pytest.fail("marquee serve --runtime bentoml kept running with an unknown alias")
    assert proc.returncode == 1
    # (MLflow logs its creation of the empty registry before)
    assert err.strip().splitlines()[-1] == \
        "error: model 'movie-recommender' has no version with alias 'nosuchalias'"
    assert "Traceback" not in err and "BentoServer" not in out + err


# The real server --------------------------------------------------------------------------------
@pytest.mark.integration
def test_bentoml_server_honours_the_header_and_keeps_metrics_bounded(
        bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # An alias in the environment beside a --bundle-uri flag: the flag wins, and the worker
    # must not be handed both (it would refuse its settings and be restarted for ever).
    proc = start_server("bentoml", bundle_dir, home, port, tmp_path / "bento.log",
                        alias="nosuchalias")
    try:
        r = httpx.post(url + V1_PATH, json={"instances": [{"user_id": 3, "k": 2}]},
                       headers={"x-request-id": "hdr-777"}, timeout=30)
        assert r.json()["predictions"][0]["request_id"] == "hdr-777"
        bad = httpx.post(url + V1_PATH, json={**OK, "foo": 1}, timeout=30)
        assert bad.status_code == 400
        assert bad.json() == {"error": "foo: Extra inputs are not permitted (got 1)",
                              "code": "bad_request", "field": "foo"}
        for i in range(5):
            assert httpx.get(f"{url}/fuzz-{i}", timeout=30).status_code == 404
        text = httpx.get(url + "/metrics", timeout=30).text
        assert "fuzz" not in text and "bentoml_service_request" not in text
        assert 'marquee_serving_requests_total{code="200",model_version="1",' \
               'route="v1_predict"' in text
        assert 'marquee_serving_errors_total{code="400",model_version="1",' \
               'route="v1_predict"' in text
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful: the payload log is flushed
        proc.wait(timeout=60)
    log = (tmp_path / "bento.log").read_text()
    assert "Traceback" not in log and "[ERROR]" not in log, log[-3000:]
    files = sorted((home / "store" / "payload-logs").rglob("*.parquet"))
    ids = [r["request_id"] for f in files
           for r in pq.read_table(f, columns=["request_id"]).to_pylist()]
    assert ids == ["hdr-777"]
