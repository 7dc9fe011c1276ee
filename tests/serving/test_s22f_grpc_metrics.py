"""gRPC calls to the KServe model server are counted in ``marquee_serving_*`` as REST requests are.

Before: a ``ModelInfer`` over gRPC was answered but counted nowhere in
``marquee_serving_requests_total`` or ``_errors_total`` (only REST went through the ASGI
middleware that counts), so a gRPC client was invisible on the dashboard and an error spike
over gRPC showed nowhere. Now each call is counted under ``route="grpc_infer"`` (or
``grpc_other``) with ``code`` the HTTP status its gRPC status stands for (INVALID_ARGUMENT 400,
UNIMPLEMENTED 501, ...), so ``code=~"5.."`` selects server errors of both protocols.
Health and metadata calls are not counted, as their REST routes are not.

Tested on the real ``marquee serve --runtime kserve --enable-grpc`` process on 127.0.0.1,
scraping its own ``/metrics``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("grpc")

import grpc  # noqa: E402
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb  # noqa: E402
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from conftest import free_port, stop_process  # noqa: E402
from serving_support import MODEL, V2_PATH, bundle_dir, start_server  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[2]
VARIANT = "candidate"


@pytest.fixture(scope="module")
def server(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
           ) -> Iterator[tuple[int, int]]:
    """(http_port, grpc_port) of a KServe model server with gRPC, variant ``candidate``."""
    home = tmp_path_factory.mktemp("grpc-metrics-home")
    http_port, grpc_port = free_port(), free_port()
    proc = start_server("kserve", bundle_dir, home, http_port, home / "server.log",
                        grpc_port=grpc_port, payload_log_enabled=False, variant=VARIANT)
    try:
        yield http_port, grpc_port
    finally:
        stop_process(proc)


def _infer(user_ids: list[int]) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="user_id", datatype="INT64", shape=[len(user_ids)],
        contents=pb.InferTensorContents(int64_contents=user_ids))
    return pb.ModelInferRequest(model_name=MODEL, inputs=[tensor])


def _counts(http_port: int, name: str) -> dict[tuple[str, str], float]:
    """(route, code) -> value of the counter ``name`` on the server's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5.0).text
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                assert sample.labels["variant"] == VARIANT, sample
                assert sample.labels["model_version"], sample
                out[(sample.labels["route"], sample.labels["code"])] = sample.value
    return out


def test_grpc_calls_are_counted_with_their_codes(server: tuple[int, int]) -> None:
    http_port, grpc_port = server
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        answer = stub.ModelInfer(_infer([5]))
        assert [o.name for o in answer.outputs][:2] == ["items", "scores"]
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(_infer([-5]))  # refused: user ids are not negative
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as err:
            stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=MODEL))
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert stub.ServerReady(pb.ServerReadyRequest()).ready  # health: not counted

    requests = _counts(http_port, "marquee_serving_requests_total")
    errors = _counts(http_port, "marquee_serving_errors_total")
    grpc_requests = {k: v for k, v in requests.items() if k[0].startswith("grpc_")}
    assert grpc_requests == {("grpc_infer", "200"): 1.0, ("grpc_infer", "400"): 1.0,
                             ("grpc_other", "501"): 1.0}, requests
    grpc_errors = {k: v for k, v in errors.items() if k[0].startswith("grpc_")}
    assert grpc_errors == {("grpc_infer", "400"): 1.0, ("grpc_other", "501"): 1.0}, errors


def test_rest_and_grpc_count_the_same_refusal_under_the_same_code(
        server: tuple[int, int]) -> None:
    http_port, grpc_port = server
    before = _counts(http_port, "marquee_serving_errors_total")
    body = {"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [-5]}]}
    r = httpx.post(f"http://127.0.0.1:{http_port}{V2_PATH}", json=body, timeout=10.0)
    assert r.status_code == 400, r.text
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        with pytest.raises(grpc.RpcError):
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(_infer([-5]))
    after = _counts(http_port, "marquee_serving_errors_total")
    for route in ("v2_infer", "grpc_infer"):
        assert after.get((route, "400"), 0.0) - before.get((route, "400"), 0.0) == 1.0, after



# Refusals grpc made before any interceptor ran (helper J, session 22) ----------------------------
def _delta(before: dict, after: dict, key: tuple[str, str]) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_a_message_over_the_body_limit_is_counted_as_a_413(server: tuple[int, int]) -> None:
    """grpc's own max_receive_message_length refused it uncounted; REST counts its 413."""
    http_port, grpc_port = server
    before = _counts(http_port, "marquee_serving_requests_total")
    errors_before = _counts(http_port, "marquee_serving_errors_total")
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as err:  # ~120 KB, over the default 64 KiB
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                _infer(list(range(1_000_000, 1_040_000))))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "more than the limit of 65536" in err.value.details(), err.value.details()
    after = _counts(http_port, "marquee_serving_requests_total")
    assert _delta(before, after, ("grpc_infer", "413")) == 1.0, after
    errors = _counts(http_port, "marquee_serving_errors_total")
    assert _delta(errors_before, errors, ("grpc_infer", "413")) == 1.0, errors


def test_a_message_far_over_the_limit_is_still_refused(server: tuple[int, int]) -> None:
    """Beyond the counted excess grpc still refuses by itself: the limit holds at any size."""
    _, grpc_port = server
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}",
                               options=[("grpc.max_send_message_length", 8 << 20)]) as channel:
        with pytest.raises(grpc.RpcError) as err:  # ~2.4 MB
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                _infer(list(range(1_000_000, 1_800_000))))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_method_the_server_has_not_is_counted_as_grpc_other_501(
        server: tuple[int, int]) -> None:
    """grpc answered UNIMPLEMENTED before any interceptor ran, uncounted; REST counts an
    unknown path under ``other``. A foreign service's ``ModelInfer`` is no inference call."""
    http_port, grpc_port = server
    before = _counts(http_port, "marquee_serving_requests_total")
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        for method in ("/inference.GRPCInferenceService/NoSuchMethod", "/other.Service/ModelInfer"):
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary(method)(b"\x0a\x03abc", timeout=10)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
            assert method in err.value.details(), err.value.details()
    after = _counts(http_port, "marquee_serving_requests_total")
    assert _delta(before, after, ("grpc_other", "501")) == 2.0, after
    assert _delta(before, after, ("grpc_infer", "501")) == 0.0, after


def test_a_streaming_call_to_an_unknown_method_is_answered_at_once(
        server: tuple[int, int]) -> None:
    """A client that sends nothing before it reads is refused, not left waiting for a
    request message (as grpc itself answers an unknown method)."""
    _, grpc_port = server
    done = threading.Event()

    def nothing_yet() -> Iterator[bytes]:
        done.wait(30)  # the stream stays open, with no message, until the answer came
        yield from ()

    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.stream_stream("/inference.GRPCInferenceService/Chat")(
                nothing_yet(), timeout=10)
            with pytest.raises(grpc.RpcError) as err:
                next(call)
    finally:
        done.set()
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # not DEADLINE_EXCEEDED
