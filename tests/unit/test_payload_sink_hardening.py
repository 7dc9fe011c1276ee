"""Payload sink and logger under bad input: a 400 naming the field (never a 500), a bad row
dropped alone, bounded metric labels, partitions the sender cannot push off the calendar."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from marquee.store import open_store
from serving import metrics
from serving.payload.logger import MAX_VERSION_LABELS, OTHER_VERSION, PayloadLogger
from serving.payload.schema import MAX_VERSION_SEGMENT, partition_key, payload_row, rows_to_table
from serving.payload.sink import (
    CE_TIME_MAX_FUTURE_SECONDS,
    CE_TIME_MAX_PAST_SECONDS,
    REQUEST_TYPE,
    RESPONSE_TYPE,
    SINK_PATH,
    CloudEventPairer,
    SinkError,
    build_sink_app,
    rows_from_pair,
)

V1_REQUEST = {"instances": [{"user_id": 7, "k": 2}]}


def _v1_response(**pred: Any) -> dict[str, Any]:
    base = {"user_id": 7, "items": [1, 2], "scores": [0.5, 0.4], "model_version": "3",
            "request_id": "q7", "cold_start": False, "fallback": False}
    return {"predictions": [{**base, **pred}]}


def _nested(depth: int) -> list[Any]:
    """``[[[…]]]``, ``depth`` lists deep."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _v2_request(user_data: Any = (1,), k_data: Any = None) -> dict[str, Any]:
    inputs = [{"name": "user_id", "shape": [1], "datatype": "INT64",
               "data": list(user_data) if isinstance(user_data, tuple) else user_data}]
    if k_data is not None:
        inputs.append({"name": "k", "shape": [1], "datatype": "INT64", "data": k_data})
    return {"inputs": inputs}


def _v2_response(**outputs: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"items": [1, 2], "scores": [0.5, 0.4], "request_id": ["q1"]}
    base.update(outputs)
    return {"model_version": "3", "outputs": [
        {"name": name, "shape": [1, 2], "datatype": "INT64", "data": data}
        for name, data in base.items()]}


def _row(i: int, version: str = "3", ts: float = 1_700_000_000.0) -> dict[str, Any]:
    return payload_row(request_id=f"r{i}", ts=ts, model_version=version, variant="canary",
                       user_id=i + 1, k=2, cold_start=False, fallback=False, status=200,
                       latency_ms=1.5, items=[10, 11], scores=[0.9, 0.8],
                       request_json="{}", response_json="{}", features=None)


def _read(store_root: Path) -> list[dict[str, Any]]:
    files = sorted((store_root / "payload-logs").rglob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def _post_pair(client: TestClient, ce_id: str, request: Any, response: Any,
               **headers: str):
    common = {"Ce-Id": ce_id, "content-type": "application/json", **headers}
    first = client.post(SINK_PATH, json=request, headers={**common, "Ce-Type": REQUEST_TYPE})
    assert first.status_code == 202 and first.json() == {"rows": 0}
    return client.post(SINK_PATH, json=response, headers={**common, "Ce-Type": RESPONSE_TYPE})


@pytest.fixture()
def sink(tmp_path: Path):
    logger = PayloadLogger(open_store(str(tmp_path / "store")))
    yield TestClient(build_sink_app(CloudEventPairer(logger))), logger
    logger.close()


# 1. Type checks: a pair that does not fit is a 400 naming the field, and writes nothing -----------
BAD_PAIRS = [
    # the bug bash's poison row: strings where item ids belong
    (V1_REQUEST, _v1_response(items=["a"], scores=[1.0]), "predictions.0.items"),
    (V1_REQUEST, _v1_response(items=[1, 2], scores=["b", 0.1]), "predictions.0.scores"),
    (V1_REQUEST, _v1_response(items=[1, 2], scores=[0.1]), "predictions.0.scores"),
    (V1_REQUEST, _v1_response(items=[2**70]), "predictions.0.items"),
    (V1_REQUEST, _v1_response(items=5), "predictions.0.items"),
    (V1_REQUEST, _v1_response(features=[1, 2]), "predictions.0.features"),
    (V1_REQUEST, _v1_response(cold_start="yes"), "predictions.0.cold_start"),
    (V1_REQUEST, _v1_response(model_version={"v": 1}), "predictions.0.model_version"),
    (V1_REQUEST, _v1_response(request_id=12), "predictions.0.request_id"),
    ({"instances": [{"user_id": "7"}]}, _v1_response(), "instances.0.user_id"),
    ({"instances": [{"user_id": True}]}, _v1_response(), "instances.0.user_id"),
    ({"instances": [{"user_id": 7, "k": 2.5}]}, _v1_response(), "instances.0.k"),
    ({"instances": [{"k": 2}]}, _v1_response(), "instances.0.user_id"),
    ({"instances": [[7]]}, _v1_response(), "instances.0"),
    ({"instances": 7}, _v1_response(), "instances"),
    (V1_REQUEST, {"predictions": {"items": [1]}}, "predictions"),
    (V1_REQUEST, {"predictions": ["x"]}, "predictions.0"),
    # the bug bash's 500s: V2 data that is not a list
    (_v2_request(), _v2_response(items=5), "outputs.items.data"),
    (_v2_request(user_data=5), _v2_response(), "inputs.user_id.data"),
    (_v2_request(user_data=("1",)), _v2_response(), "inputs.user_id.data"),
    (_v2_request(user_data=(0,)), _v2_response(), "inputs.user_id.data.0"),
    (_v2_request(k_data="10"), _v2_response(), "inputs.k.data"),
    (_v2_request(k_data=[2, 2, 2]), _v2_response(), "inputs.k.data"),
    (_v2_request(), _v2_response(scores=[0.5, "x"]), "outputs.scores.data"),
    (_v2_request(), _v2_response(items=[1, 2, 3]), "outputs.scores.data"),
    (_v2_request(user_data=(1, 2)), _v2_response(items=[1, 2, 3], scores=[1, 2, 3]),
     "outputs.items.data"),
    (_v2_request(), _v2_response(request_id="q1"), "outputs.request_id.data"),
    (_v2_request(), _v2_response(request_id=[5]), "outputs.request_id.data.0"),
    ({"inputs": {"name": "user_id", "data": [1]}}, _v2_response(), "inputs"),
    ({"inputs": [{"name": ["user_id"], "data": [1]}]}, _v2_response(), "inputs.0.name"),
    (_v2_request(), {"outputs": [7]}, "outputs.0"),
    (_v2_request(), {**_v2_response(), "model_version": 3}, "model_version"),
    # the second bug hunt: nested deeper than orjson writes (254 levels), a 500 after the
    # first half was held; a prediction count unlike the instance count, a 202 and rows
    ({"instances": [{"user_id": 7, "k": 2, "x": _nested(300)}]}, _v1_response(), "instances.0"),
    (V1_REQUEST, _v1_response(x=_nested(300)), "predictions.0"),
    ({"instances": [{"user_id": 7}, {"user_id": 8}]}, _v1_response(), "predictions"),
    (V1_REQUEST, {"predictions": _v1_response()["predictions"] * 2}, "predictions"),
]


@pytest.mark.parametrize(("request_body", "response_body", "field"), BAD_PAIRS)
def test_bad_pair_is_a_400_naming_the_field_and_writes_nothing(
        sink, request_body: Any, response_body: Any, field: str) -> None:
    client, logger = sink
    r = _post_pair(client, "bad-1", request_body, response_body)
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"error", "field"}
    assert body["field"] == field and body["error"].startswith(f"{field}: ")
    assert logger.pending == 0


def test_a_good_pair_after_a_bad_one_still_writes_its_rows(sink, tmp_path: Path) -> None:
    client, logger = sink
    assert _post_pair(client, "bad", V1_REQUEST, _v1_response(items=["a"])).status_code == 400
    assert _post_pair(client, "good", V1_REQUEST, _v1_response()).json() == {"rows": 1}
    logger.close()
    assert [r["request_id"] for r in _read(tmp_path / "store")] == ["q7"]


def test_v2_pair_with_one_k_nested_data_and_padding(sink, tmp_path: Path) -> None:
    client, logger = sink
    request = _v2_request(user_data=[[1], [2]], k_data=[3])
    response = _v2_response(items=[[5, 6, 7], [8, -1, -1]], scores=[[.9, .8, .7], [.6, 0, 0]],
                            request_id=["a", "b"])
    assert _post_pair(client, "v2", request, response).json() == {"rows": 2}
    logger.close()
    rows = {r["request_id"]: r for r in _read(tmp_path / "store")}
    assert rows["a"]["user_id"] == 1 and rows["a"]["items"] == [5, 6, 7]
    assert rows["b"]["k"] == 3  # one k for every user, as the model server accepts it
    assert rows["b"]["items"] == [8] and rows["b"]["scores"] == [0.6]  # padding removed


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4)),
    lambda kids: st.one_of(st.lists(kids, max_size=3),
                           st.dictionaries(st.text(max_size=4), kids, max_size=3)),
    max_leaves=8)
FIELDS = st.sampled_from(["user_id", "k", "items", "scores", "features", "request_id",
                          "model_version", "cold_start", "fallback"])
V1_PAIRS = st.tuples(
    st.fixed_dictionaries({"instances": st.one_of(
        st.lists(st.dictionaries(FIELDS, st.one_of(st.integers(1, 50), JSON), max_size=3),
                 max_size=3), JSON)}),
    st.fixed_dictionaries({"predictions": st.one_of(
        st.lists(st.dictionaries(FIELDS, st.one_of(st.lists(st.integers(1, 9)), JSON),
                                 max_size=5), max_size=3), JSON)}))
TENSORS = st.lists(st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["user_id", "k", "items", "scores", "request_id"]), JSON),
     "data": st.one_of(st.lists(st.integers(-1, 9), max_size=6), JSON)}), max_size=4)
V2_PAIRS = st.tuples(st.fixed_dictionaries({"inputs": st.one_of(TENSORS, JSON)}),
                     st.fixed_dictionaries({"outputs": st.one_of(TENSORS, JSON)},
                                           optional={"model_version": JSON}))


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(pair=st.one_of(V1_PAIRS, V2_PAIRS, st.tuples(JSON, JSON)))
def test_any_pair_gives_encodable_rows_or_a_sink_error(pair: tuple[Any, Any]) -> None:
    request, response = pair
    try:
        rows = rows_from_pair("ce-1", {}, request, response)
    except SinkError as exc:
        assert str(exc).startswith(f"{exc.field}: ")
        return
    rows_to_table(rows)  # every row the sink accepts can be written


# 2. The logger drops a bad row alone -----------------------------------------------------------
def test_one_bad_row_does_not_take_its_batch_with_it(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    logger = PayloadLogger(store, batch_rows=100, flush_seconds=60)
    dropped = metrics.PAYLOG_DROPPED.labels("encode_failed")
    before = dropped._value.get()
    for i in range(5):
        logger.log(_row(i))
    logger.log({**_row(99), "items": ["a"]})  # the same partition as the good rows
    for i in range(5, 10):
        logger.log(_row(i))
    logger.flush()
    rows = _read(tmp_path / "store")
    assert sorted(r["request_id"] for r in rows) == sorted(f"r{i}" for i in range(10))
    assert len(logger.files_written) == 1 and logger.rows_written == 10
    assert dropped._value.get() - before == 1
    logger.close()


def test_a_row_without_a_usable_ts_is_dropped_alone(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    logger = PayloadLogger(store, batch_rows=100, flush_seconds=0.05).start()
    dropped = metrics.PAYLOG_DROPPED.labels("encode_failed")
    before = dropped._value.get()
    logger.log({**_row(1), "ts": "yesterday"})
    logger.log({k: v for k, v in _row(2).items() if k != "model_version"})
    logger.log(_row(3))
    logger.close()  # the writer thread survived both and wrote the good row
    assert [r["request_id"] for r in _read(tmp_path / "store")] == ["r3"]
    assert dropped._value.get() - before == 2


# 3. Bounded label values and partitions ---------------------------------------------------------
def _version_labels() -> dict[str, float]:
    return {s.labels["model_version"]: s.value
            for m in metrics.PAYLOG_ROWS.collect() for s in m.samples
            if s.name.endswith("_total")}


def test_model_version_label_values_are_bounded(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    logger = PayloadLogger(store, batch_rows=100, flush_seconds=60)
    before = _version_labels()
    tag = uuid.uuid4().hex[:8]
    n = MAX_VERSION_LABELS + 30
    for i in range(n):
        logger.log(_row(i, version=f"card-{tag}-{i}"))
    logger.log(_row(999, version="x" * 500))
    logger.flush()
    after = _version_labels()
    assert logger.rows_written == n + 1
    assert len(after) <= MAX_VERSION_LABELS + 1 and OTHER_VERSION in after
    counted = sum(v - before.get(label, 0.0) for label, v in after.items())
    assert counted == n + 1  # every written row is counted, under its version or "other"
    assert "x" * 500 not in after
    logger.close()


def test_ce_time_outside_the_window_falls_back_to_the_receive_time(sink, tmp_path: Path
                                                                    ) -> None:
    client, logger = sink
    now = time.time()
    recent = datetime.fromtimestamp(now - 600, tz=timezone.utc).isoformat()
    stale = datetime.fromtimestamp(now - CE_TIME_MAX_PAST_SECONDS - 3600,
                                   tz=timezone.utc).isoformat()
    ahead = datetime.fromtimestamp(now + CE_TIME_MAX_FUTURE_SECONDS + 600,
                                   tz=timezone.utc).isoformat()
    for name, when in [("recent", recent), ("future", "9999-12-31T23:59:59Z"),
                       ("stale", stale), ("ahead", ahead), ("year1", "0001-01-01T00:00:00"),
                       ("junk", "not-a-time")]:
        r = _post_pair(client, name, V1_REQUEST, _v1_response(request_id=name),
                       **{"Ce-Time": when})
        assert r.status_code == 202, r.text
    received_by = time.time()
    logger.close()
    rows = {r["request_id"]: r for r in _read(tmp_path / "store")}
    assert rows["recent"]["ts"] == pytest.approx(now - 600, abs=1e-3)
    for name in ("future", "stale", "ahead", "year1", "junk"):
        assert now <= rows[name]["ts"] <= received_by, name
    keys = list((tmp_path / "store" / "payload-logs").rglob("*.parquet"))
    years = {p.relative_to(tmp_path / "store").parts[1][len("date="):][:4] for p in keys}
    assert years <= {f"{datetime.fromtimestamp(t, tz=timezone.utc):%Y}"
                     for t in (now - 600, received_by)}


def test_long_model_version_is_cut_in_the_path_and_stays_distinct() -> None:
    a, b = "v" * 300 + "a", "v" * 300 + "b"
    seg_a = partition_key(1_700_000_000.0, a).rsplit("model_version=", 1)[1]
    seg_b = partition_key(1_700_000_000.0, b).rsplit("model_version=", 1)[1]
    assert len(seg_a) == len(seg_b) == MAX_VERSION_SEGMENT and seg_a != seg_b
    evil = partition_key(1_700_000_000.0, "../../" * 40 + "etc")
    assert "/" not in evil.rsplit("model_version=", 1)[1]
    assert partition_key(1_700_000_000.0, "20261124T012259Z-9f07e020").endswith(
        "/model_version=20261124T012259Z-9f07e020")


# 6. Authentication: with a token set, only requests that carry it write ----------------------------
SINK_TOKEN = "s3cret-sink-token"


def _unauthorized(reason: str) -> float:
    from serving.payload import metrics as sink_metrics

    return sink_metrics.SINK_UNAUTHORIZED.labels(reason)._value.get()


@pytest.fixture()
def authed(tmp_path: Path):
    from serving.payload.service import build_sink_service

    logger = PayloadLogger(open_store(str(tmp_path / "store")))
    yield TestClient(build_sink_service(logger, token=SINK_TOKEN)), logger
    logger.close()


@pytest.mark.parametrize(("headers", "query", "reason"), [
    ({}, "", "missing"),
    ({"Authorization": "Bearer wrong-token"}, "", "wrong"),
    ({"Authorization": f"Basic {SINK_TOKEN}"}, "", "wrong"),
    ({"Authorization": "Bearer "}, "", "wrong"),
    ({}, "?token=wrong-token", "wrong"),
    ({}, f"?token={SINK_TOKEN}x", "wrong"),
    ({}, "?token=", "wrong"),
])
def test_without_the_token_the_sink_answers_401_counts_it_and_writes_nothing(
        authed, tmp_path: Path, headers: dict[str, str], query: str, reason: str) -> None:
    client, logger = authed
    before = _unauthorized(reason)
    common = {"Ce-Id": "forged", "content-type": "application/json", **headers}
    for kind, body in ((REQUEST_TYPE, V1_REQUEST), (RESPONSE_TYPE, _v1_response())):
        r = client.post(SINK_PATH + query, json=body, headers={**common, "Ce-Type": kind})
        assert r.status_code == 401, r.text
        assert r.json()["field"] == "authorization" and r.json()["error"].startswith(
            "authorization: "), r.json()
        assert r.headers["www-authenticate"] == "Bearer"
        assert SINK_TOKEN not in r.text
    assert _unauthorized(reason) == before + 2
    assert logger.pending == 0
    logger.close()
    assert _read(tmp_path / "store") == []


def test_with_the_token_as_bearer_or_query_parameter_the_sink_writes(authed,
                                                                      tmp_path: Path) -> None:
    client, logger = authed
    bearer = {"Authorization": f"Bearer {SINK_TOKEN}"}
    r = _post_pair(client, "by-header", V1_REQUEST, _v1_response(request_id="h1"), **bearer)
    assert r.status_code == 202 and r.json() == {"rows": 1}, r.text
    # KServe's logger cannot add headers: the token rides in the logger URL's query string
    common = {"Ce-Id": "by-query", "content-type": "application/json"}
    url = f"{SINK_PATH}?token={SINK_TOKEN}"
    assert client.post(url, json=V1_REQUEST, headers={**common, "Ce-Type": REQUEST_TYPE}
                       ).json() == {"rows": 0}
    r = client.post(url, json=_v1_response(request_id="q1"),
                    headers={**common, "Ce-Type": RESPONSE_TYPE})
    assert r.status_code == 202 and r.json() == {"rows": 1}, r.text
    logger.close()
    assert sorted(row["request_id"] for row in _read(tmp_path / "store")) == ["h1", "q1"]


def test_a_forged_half_cannot_complete_a_real_pair(authed, tmp_path: Path) -> None:
    client, logger = authed
    common = {"Ce-Id": "shared", "content-type": "application/json"}
    ok = {"Authorization": f"Bearer {SINK_TOKEN}"}
    assert client.post(SINK_PATH, json=V1_REQUEST, headers={**common, **ok,
                       "Ce-Type": REQUEST_TYPE}).status_code == 202
    forged = client.post(SINK_PATH, json=_v1_response(request_id="forged"),
                         headers={**common, "Ce-Type": RESPONSE_TYPE})
    assert forged.status_code == 401
    real = client.post(SINK_PATH, json=_v1_response(request_id="real"),
                       headers={**common, **ok, "Ce-Type": RESPONSE_TYPE})
    assert real.json() == {"rows": 1}
    logger.close()
    assert [row["request_id"] for row in _read(tmp_path / "store")] == ["real"]


def test_the_sinks_limits_hold_with_a_valid_token(authed) -> None:
    from serving.payload.service import SINK_MAX_BODY_BYTES

    client, _ = authed
    r = client.post(f"{SINK_PATH}?token={SINK_TOKEN}", content=b"x" * (SINK_MAX_BODY_BYTES + 1),
                    headers={"content-type": "application/json", "Ce-Id": "big",
                             "Ce-Type": REQUEST_TYPE})
    assert r.status_code == 413 and r.json()["field"] == "body"
    r = client.post(f"{SINK_PATH}?token={SINK_TOKEN}", json=V1_REQUEST,
                    headers={"content-type": "application/json", "Ce-Id": "t",
                             "Ce-Type": "junk"})
    assert r.status_code == 400 and r.json()["field"] == "ce-type"


def test_without_a_token_the_sink_is_open_and_says_so(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from serving.payload.service import build_sink_service

    logger = PayloadLogger(open_store(str(tmp_path / "store")))
    with caplog.at_level("WARNING", logger="serving.payload.sink"):
        client = TestClient(build_sink_service(logger))
    assert any("unauthenticated" in r.getMessage() and "MARQUEE_SERVING_PAYLOAD_SINK_TOKEN"
               in r.getMessage() for r in caplog.records), caplog.text
    assert _post_pair(client, "open", V1_REQUEST, _v1_response()).json() == {"rows": 1}
    caplog.clear()
    with caplog.at_level("WARNING", logger="serving.payload.sink"):
        build_sink_service(PayloadLogger(open_store(str(tmp_path / "s2"))), token=SINK_TOKEN)
    assert not any("unauthenticated" in r.getMessage() for r in caplog.records)
    logger.close()


def test_the_token_setting_is_a_secret_read_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from serving.settings import ServingSettings

    assert ServingSettings().payload_sink_token is None
    monkeypatch.setenv("MARQUEE_SERVING_PAYLOAD_SINK_TOKEN", SINK_TOKEN)
    s = ServingSettings()
    assert s.payload_sink_token is not None
    assert s.payload_sink_token.get_secret_value() == SINK_TOKEN
    assert SINK_TOKEN not in repr(s) and "payload_sink_token" not in s.model_dump()
    monkeypatch.setenv("MARQUEE_SERVING_PAYLOAD_SINK_TOKEN", "  ")
    with pytest.raises(ValidationError, match="payload_sink_token"):
        ServingSettings()


def test_unpaired_halves_are_bounded_in_bytes_not_only_in_count(tmp_path: Path) -> None:
    """Halves that never find their pair (bodies up to 8 MiB each) cannot fill the sink's
    memory: past the byte bound the oldest go first, counted as dropped, and a pair whose
    halves arrive together is still written."""
    logger = PayloadLogger(open_store(str(tmp_path / "store")))
    pairer = CloudEventPairer(logger, max_pending_bytes=10_000)
    dropped = metrics.PAYLOG_DROPPED.labels("unpaired")
    before = dropped._value.get()
    padding = {"instances": [{"user_id": 7, "k": 2, "pad": "x" * 1_000}]}
    body = orjson.dumps(padding)
    for i in range(50):  # 50 × ~1 KB of halves whose pair never comes
        assert pairer.accept({"Ce-Id": f"orphan-{i}", "Ce-Type": REQUEST_TYPE}, body) == 0
    assert pairer.pending_bytes <= 10_000 and pairer.pending < 10, pairer.pending
    assert dropped._value.get() - before == 50 - pairer.pending
    assert pairer.accept({"Ce-Id": "real", "Ce-Type": REQUEST_TYPE},
                         orjson.dumps(V1_REQUEST)) == 0
    assert pairer.accept({"Ce-Id": "real", "Ce-Type": RESPONSE_TYPE},
                         orjson.dumps(_v1_response())) == 1
    logger.close()
    assert [r["request_id"] for r in _read(tmp_path / "store")] == ["q7"]
