"""V2 requests the two runtimes answered differently. Both are real ``marquee serve``
processes on 127.0.0.1.

A deeply nested V2 body is a 400 on the BentoML runtime, as on KServe, not a 500. The BentoML runtime decodes a V2 body with the standard library's JSON parser, which raises
RecursionError (not JSONDecodeError) past ~1,000 levels; the handler's catch-all turned that
into a 500 ``internal error`` and logged a traceback for every such request, so any client
could fill the log. KServe answers the same bytes with a 400 naming the body.

A V2 body of JSON sent without a JSON content type (``curl -d`` sends
``application/x-www-form-urlencoded``; some clients send none) was answered by BentoML (and by
both runtimes' V1) but refused by KServe's V2 with a 400 about a binary-extension header the
client never used. KServe now reads it as the JSON it is, with the same answer and the same
4xx as BentoML.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import json

import httpx
import pytest
from conftest import free_port, stop_process
from serving_support import V2_PATH, bundle_dir, start_server  # noqa: F401

pytestmark = pytest.mark.integration

_DEEP = 5_000  # far past the parser's recursion limit (1,000), well within the body limit


@pytest.fixture(scope="module")
def servers(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
            ) -> Iterator[dict[str, tuple[str, Path]]]:
    home = tmp_path_factory.mktemp("s18b-nested")
    procs, out = [], {}
    try:
        for runtime in ("kserve", "bentoml"):
            port, log = free_port(), home / f"{runtime}.log"
            procs.append(start_server(runtime, bundle_dir, home / runtime, port, log,
                                      payload_log_enabled=False))
            out[runtime] = (f"http://127.0.0.1:{port}", log)
        yield out
    finally:
        for proc in procs:
            stop_process(proc)


@pytest.mark.parametrize("body", [
    b"[" * _DEEP + b"]" * _DEEP,
    (b'{"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": '
     + b"[" * _DEEP + b"1" + b"]" * _DEEP + b"}]}"),
], ids=["nested-array", "nested-data"])
def test_a_deeply_nested_v2_body_is_the_same_400_on_both_runtimes(
        servers: dict[str, tuple[str, Path]], body: bytes) -> None:
    answers = {}
    for runtime, (url, _) in servers.items():
        r = httpx.post(url + V2_PATH, content=body, timeout=30,
                       headers={"content-type": "application/json"})
        answers[runtime] = (r.status_code, r.json())
    status, payload = answers["bentoml"]
    assert status == 400, payload
    assert payload["field"] == "body"
    assert answers["bentoml"] == answers["kserve"]
    bento_log = servers["bentoml"][1].read_text(errors="replace")
    assert "RecursionError" not in bento_log
    assert "internal error" not in bento_log


_V2_OK = {"id": "s18b-no-ctype", "inputs": [
    {"name": "user_id", "shape": [2], "datatype": "INT64", "data": [1, 10**9]},
    {"name": "k", "shape": [1], "datatype": "INT64", "data": [5]}]}


@pytest.mark.parametrize("content_type", [None, "text/plain",
                                          "application/x-www-form-urlencoded"])
def test_v2_json_without_a_json_content_type_is_answered_alike(
        servers: dict[str, tuple[str, Path]], content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    answers = {}
    for runtime, (url, _) in servers.items():
        r = httpx.post(url + V2_PATH, content=json.dumps(_V2_OK).encode(), headers=headers,
                       timeout=30)
        assert r.status_code == 200, (runtime, r.text)
        answers[runtime] = r.json()
    a, b = answers["kserve"], answers["bentoml"]
    assert a["id"] == b["id"] == "s18b-no-ctype"
    oa = {o["name"]: o for o in a["outputs"]}
    ob = {o["name"]: o for o in b["outputs"]}
    assert oa["items"]["shape"] == ob["items"]["shape"] == [2, 5]
    assert oa["request_id"]["data"] == ob["request_id"]["data"]
    assert oa["cold_start"]["data"] == ob["cold_start"]["data"] == [False, True]


@pytest.mark.parametrize("body", [
    b'{"inputs": [',
    b"\xff\xfe{}",
    json.dumps({"inputs": [{"name": "user_id", "shape": [1], "data": [1]}]}).encode(),
    json.dumps({"inputs": [{"name": "user", "shape": [1], "datatype": "INT64",
                            "data": [1]}]}).encode(),
], ids=["not-json", "not-utf8", "no-datatype", "unknown-input"])
def test_bad_v2_bodies_without_a_content_type_get_the_same_4xx(
        servers: dict[str, tuple[str, Path]], body: bytes) -> None:
    answers = {}
    for runtime, (url, _) in servers.items():
        r = httpx.post(url + V2_PATH, content=body, headers={"content-type": "text/plain"},
                       timeout=30)
        answers[runtime] = (r.status_code, r.json())
    status, payload = answers["kserve"]
    assert 400 <= status < 500, payload
    assert "inference-header-content-length" not in payload["error"]
    assert answers["kserve"] == answers["bentoml"]
