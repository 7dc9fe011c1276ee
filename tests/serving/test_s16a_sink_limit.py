"""A model server's own ``POST /payload-sink`` (``payload_sink_enabled``) takes the CloudEvents
KServe's logger posts: a whole response, far above a request's 64 KiB limit when a request
asks for many instances or a large k. Before, the model server's request limit applied to the
sink too: a 413, and the logger's rows were lost (the sink service takes 8 MiB)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from starlette.testclient import TestClient

from serving.payload.service import SINK_MAX_BODY_BYTES
from serving.payload.sink import REQUEST_TYPE, RESPONSE_TYPE, SINK_PATH
from serving_support import V1_PATH, bundle_dir, kserve_app  # noqa: F401 - fixture

N, K = 64, 500  # the most instances and the largest k a request may ask for


def _pair() -> tuple[dict, dict]:
    request = {"instances": [{"user_id": u, "k": K} for u in range(1, N + 1)]}
    response = {"predictions": [
        {"user_id": u, "items": list(range(1_000_000, 1_000_000 + K)),
         "scores": [0.123456789012345 - i * 1e-9 for i in range(K)], "model_version": "3",
         "request_id": f"big-{u}", "cold_start": False, "fallback": False}
        for u in range(1, N + 1)]}
    return request, response


def test_model_server_sink_takes_a_whole_large_response(bundle_dir: Path,  # noqa: F811
                                                         tmp_path: Path) -> None:
    home = tmp_path / "home"
    app, _, payload = kserve_app(bundle_dir, home, payload_sink_enabled=True,
                                 payload_sink_token="tok-1")
    request, response = _pair()
    auth = {"Authorization": "Bearer tok-1", "content-type": "application/json"}
    try:
        with TestClient(app) as client:
            r = client.post(SINK_PATH, json=request, headers={**auth, "Ce-Id": "b1",
                                                              "Ce-Type": REQUEST_TYPE})
            assert r.status_code == 202, r.text
            r = client.post(SINK_PATH, json=response, headers={**auth, "Ce-Id": "b1",
                                                               "Ce-Type": RESPONSE_TYPE})
            assert r.status_code == 202, r.text[:300]  # was 413: the 64 KiB request limit
            assert r.json() == {"rows": N}
            # the model's own routes keep the request limit
            r = client.post(V1_PATH, content=b" " * (64 * 1024 + 1),
                            headers={"content-type": "application/json"})
            assert r.status_code == 413, r.text[:300]
            # and the sink's own limit holds
            r = client.post(SINK_PATH, content=b"x" * (SINK_MAX_BODY_BYTES + 1),
                            headers={**auth, "Ce-Id": "b2", "Ce-Type": REQUEST_TYPE})
            assert r.status_code == 413
    finally:
        payload.close()
    files = list((home / "store" / "payload-logs").rglob("*.parquet"))
    ids = sorted(x for f in files for x in pq.read_table(f).column("request_id").to_pylist())
    assert ids == sorted(f"big-{u}" for u in range(1, N + 1))
