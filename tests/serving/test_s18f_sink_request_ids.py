"""The payload sink holds request ids to the model servers' rule (``serving.fields``: at most
128 characters of letters, digits and ``. _ : -``). Before, ``predictions.N.request_id`` and
V2 ``outputs.request_id`` of any length and any characters went into payload rows (a
100,000-character id was stored), although no model server ever issues one."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient

from marquee.store import open_store
from serving.fields import REQUEST_ID_MAX_LENGTH
from serving.payload.logger import PayloadLogger
from serving.payload.service import build_sink_service
from serving.payload.sink import REQUEST_TYPE, RESPONSE_TYPE, SINK_PATH

HEADERS = {"content-type": "application/json", "Authorization": "Bearer t0k"}


def _ids(store_dir: Path) -> list[str]:
    files = list((store_dir / "payload-logs").rglob("*.parquet"))
    return sorted(x for f in files for x in pq.read_table(f).column("request_id").to_pylist())


def _post_pair(client: TestClient, ce_id: str, request: dict, response: dict):  # noqa: ANN202
    first = client.post(SINK_PATH, json=request,
                        headers={**HEADERS, "Ce-Id": ce_id, "Ce-Type": REQUEST_TYPE})
    assert first.status_code == 202, first.text
    return client.post(SINK_PATH, json=response,
                       headers={**HEADERS, "Ce-Id": ce_id, "Ce-Type": RESPONSE_TYPE})


def _v1(request_id: str) -> tuple[dict, dict]:
    request = {"instances": [{"user_id": 7, "k": 2}, {"user_id": 8, "k": 2}]}
    response = {"predictions": [
        {"items": [1, 2], "scores": [0.5, 0.4], "model_version": "3", "request_id": "fine-1"},
        {"items": [3, 4], "scores": [0.3, 0.2], "model_version": "3",
         "request_id": request_id}]}
    return request, response


def _v2(request_id: str) -> tuple[dict, dict]:
    request = {"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [7]}]}
    response = {"model_version": "3", "outputs": [
        {"name": "items", "shape": [1, 2], "datatype": "INT64", "data": [[1, 2]]},
        {"name": "scores", "shape": [1, 2], "datatype": "FP32", "data": [[0.5, 0.4]]},
        {"name": "request_id", "shape": [1], "datatype": "BYTES", "data": [request_id]}]}
    return request, response


BAD = [("x" * 100_000, "at most 128 characters"),
       ("x" * (REQUEST_ID_MAX_LENGTH + 1), "at most 128 characters"),
       ("id with spaces", "letters, digits"),
       ("evil\nINFO forged log line", "letters, digits")]


@pytest.mark.parametrize(("protocol", "field"), [(_v1, "predictions.1.request_id"),
                                                 (_v2, "outputs.request_id.data.0")],
                         ids=["v1", "v2"])
def test_the_sink_refuses_a_request_id_no_model_server_issues_and_stores_nothing(
        tmp_path: Path, protocol, field: str) -> None:  # noqa: ANN001
    store_dir = tmp_path / "store"
    logger = PayloadLogger(open_store(str(store_dir)))
    app = build_sink_service(logger, token="t0k")
    with TestClient(app) as client:
        for n, (bad, said) in enumerate(BAD):
            r = _post_pair(client, f"bad-{n}", *protocol(bad))
            assert r.status_code == 400, (field, len(bad), r.text[:300])
            body = r.json()
            assert body["field"] == field, body
            assert said in body["error"] and len(body["error"]) < 300, body
        # the longest id a model server issues is still stored, whole
        longest = "a" * REQUEST_ID_MAX_LENGTH
        r = _post_pair(client, "good", *protocol(longest))
        assert r.status_code == 202, r.text[:300]
    # the lifespan closed the logger: everything accepted is flushed
    expected = sorted([longest, "fine-1"] if protocol is _v1 else [longest])
    assert _ids(store_dir) == expected
