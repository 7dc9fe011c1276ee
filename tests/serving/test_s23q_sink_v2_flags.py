"""The payload sink's V2 rows carry the answer's ``cold_start`` and ``fallback``.

Both model servers add the outputs ``cold_start`` and ``fallback`` to every V2 response
(docs/CONTRACTS.md), and the sink's V1 rows keep them; its V2 rows wrote null for both, so a
popularity fallback answered over V2 was logged as if nothing were known about it. A value
of the wrong type or count is a 400 naming the output, as for ``items``."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient

from marquee.store import open_store
from serving.payload.logger import PayloadLogger
from serving.payload.service import build_sink_service
from serving.payload.sink import REQUEST_TYPE, RESPONSE_TYPE, SINK_PATH

HEADERS = {"content-type": "application/json"}


def _rows(store_dir: Path) -> list[dict]:
    files = list((store_dir / "payload-logs").rglob("*.parquet"))
    return sorted((r for f in files for r in pq.read_table(f).to_pylist()),
                  key=lambda r: r["request_id"])


def _post_pair(client: TestClient, ce_id: str, request: dict, response: dict):  # noqa: ANN202
    first = client.post(SINK_PATH, json=request,
                        headers={**HEADERS, "Ce-Id": ce_id, "Ce-Type": REQUEST_TYPE})
    assert first.status_code == 202, first.text
    return client.post(SINK_PATH, json=response,
                       headers={**HEADERS, "Ce-Id": ce_id, "Ce-Type": RESPONSE_TYPE})


def _v2_pair(cold_start: list, fallback: list) -> tuple[dict, dict]:
    """A V2 request for two users and the response a model server gives it
    (``serving.kserve.model.V2_OUTPUTS``)."""
    request = {"inputs": [
        {"name": "user_id", "shape": [2], "datatype": "INT64", "data": [7, 8]},
        {"name": "k", "shape": [2], "datatype": "INT64", "data": [2, 2]}]}
    response = {"model_name": "movie-recommender", "model_version": "20261124T000000Z-abc",
                "id": "v2-req", "outputs": [
                    {"name": "items", "shape": [2, 2], "datatype": "INT64",
                     "data": [1, 2, 3, 4]},
                    {"name": "scores", "shape": [2, 2], "datatype": "FP64",
                     "data": [0.5, 0.4, 9.0, 8.0]},
                    {"name": "cold_start", "shape": [2], "datatype": "BOOL",
                     "data": cold_start},
                    {"name": "fallback", "shape": [2], "datatype": "BOOL", "data": fallback},
                    {"name": "request_id", "shape": [2], "datatype": "BYTES",
                     "data": ["r-model", "r-fallback"]}]}
    return request, response


def test_v2_rows_keep_the_cold_start_and_fallback_the_model_server_answered(
        tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    logger = PayloadLogger(open_store(str(store_dir)), flush_seconds=60).start()
    with TestClient(build_sink_service(logger)) as client:
        r = _post_pair(client, "ce-1", *_v2_pair([False, True], [False, True]))
        assert r.status_code == 202 and r.json() == {"rows": 2}, r.text
    rows = _rows(store_dir)
    assert [(r["request_id"], r["cold_start"], r["fallback"]) for r in rows] == [
        ("r-fallback", True, True), ("r-model", False, False)]
    assert [r["items"] for r in rows] == [[3, 4], [1, 2]]


def test_v2_rows_without_those_outputs_stay_unknown(tmp_path: Path) -> None:
    """A request may select outputs (``outputs``): flags it did not ask for stay null."""
    store_dir = tmp_path / "store"
    logger = PayloadLogger(open_store(str(store_dir)), flush_seconds=60).start()
    request, response = _v2_pair([False, False], [False, False])
    response["outputs"] = [o for o in response["outputs"] if o["name"] in ("items", "scores")]
    with TestClient(build_sink_service(logger)) as client:
        assert _post_pair(client, "ce-2", request, response).status_code == 202
    rows = _rows(store_dir)
    assert [(r["cold_start"], r["fallback"]) for r in rows] == [(None, None), (None, None)]


@pytest.mark.parametrize(("flags", "field", "text"), [
    (([False, "true"], [False, False]), "outputs.cold_start.data", "'true'"),
    (([False, False], [1, 0]), "outputs.fallback.data", "1"),
    (([False, False], [True]), "outputs.fallback.data", "expected 2 values (got 1)"),
], ids=["string", "int", "count"])
def test_v2_flags_of_the_wrong_type_or_count_are_refused_naming_the_output(
        tmp_path: Path, flags: tuple[list, list], field: str, text: str) -> None:
    store_dir = tmp_path / "store"
    logger = PayloadLogger(open_store(str(store_dir)), flush_seconds=60).start()
    with TestClient(build_sink_service(logger)) as client:
        r = _post_pair(client, "ce-3", *_v2_pair(*flags))
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field and text in r.json()["error"], r.json()
    assert _rows(store_dir) == []
