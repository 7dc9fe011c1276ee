"""The payload sink's fallback row id ``<Ce-Id>-<i>`` (a pair whose bodies carry no request id)
follows the request-id rule of the model servers (``serving.fields``: at most 128 characters of
letters, digits and ``. _ : -``). Before, a ``Ce-Id`` of any length or characters went into
the stored rows (a 128-character ``Ce-Id`` gave 130-character ids; one with spaces or ``/``
was stored as is)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient

from marquee.store import open_store
from serving.fields import REQUEST_ID_MAX_LENGTH, REQUEST_ID_PATTERN
from serving.payload.logger import PayloadLogger
from serving.payload.service import build_sink_service
from serving.payload.sink import REQUEST_TYPE, RESPONSE_TYPE, SINK_PATH

HEADERS = {"content-type": "application/json", "Authorization": "Bearer t0k"}
REQUEST = {"instances": [{"user_id": u, "k": 2} for u in range(1, 13)]}
RESPONSE = {"predictions": [{"items": [1, 2], "scores": [0.5, 0.4], "model_version": "3"}
                            for _ in range(12)]}


def _ids(store_dir: Path) -> list[str]:
    files = list((store_dir / "payload-logs").rglob("*.parquet"))
    return [x for f in files for x in pq.read_table(f).column("request_id").to_pylist()]


def _post_pair(client: TestClient, ce_id: str):  # noqa: ANN202
    first = client.post(SINK_PATH, json=REQUEST,
                        headers={**HEADERS, "Ce-Id": ce_id, "Ce-Type": REQUEST_TYPE})
    if first.status_code != 202:
        return first
    return client.post(SINK_PATH, json=RESPONSE,
                       headers={**HEADERS, "Ce-Id": ce_id, "Ce-Type": RESPONSE_TYPE})


def test_fallback_ids_of_a_long_ce_id_stay_within_the_rule(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    longest = "e" * REQUEST_ID_MAX_LENGTH
    other = "e" * (REQUEST_ID_MAX_LENGTH - 1) + "f"  # same first 127 characters
    app = build_sink_service(PayloadLogger(open_store(str(store_dir))), token="t0k")
    with TestClient(app) as client:
        for ce_id in (longest, other, "5b6e-uuid"):
            r = _post_pair(client, ce_id)
            assert r.status_code == 202 and r.json()["rows"] == 12, r.text[:300]
    ids = _ids(store_dir)
    assert len(ids) == 36 and len(set(ids)) == 36  # one distinct id per row
    for rid in ids:
        assert len(rid) <= REQUEST_ID_MAX_LENGTH and re.fullmatch(REQUEST_ID_PATTERN, rid), rid
    assert "5b6e-uuid-11" in ids  # a short Ce-Id keeps the documented <Ce-Id>-<i>


@pytest.mark.parametrize(("ce_id", "said"), [
    ("x" * (REQUEST_ID_MAX_LENGTH + 1), "at most 128 characters"),
    ("x" * 20_000, "at most 128 characters"),
    ("id with spaces", "letters, digits"),
    ("../../etc/passwd", "letters, digits"),
], ids=["129-chars", "20000-chars", "spaces", "slashes"])
def test_a_ce_id_outside_the_rule_is_a_400_naming_it(tmp_path: Path, ce_id: str,
                                                      said: str) -> None:
    store_dir = tmp_path / "store"
    app = build_sink_service(PayloadLogger(open_store(str(store_dir))), token="t0k")
    with TestClient(app) as client:
        r = _post_pair(client, ce_id)
        assert r.status_code == 400, r.text[:300]
        body = r.json()
        assert body["field"] == "ce-id" and said in body["error"], body
        assert len(body["error"]) < 300
    assert _ids(store_dir) == []
