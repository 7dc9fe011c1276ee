"""A gRPC call the client gave up on is counted under the status the client got, not as a 500.

Before: a ``ModelInfer`` that the client cancelled, or whose deadline passed while the model
server was still answering, was counted in ``marquee_serving_errors_total`` as
``route="grpc_infer", code="500"``: grpc cancels the handler's task, no status was set, and
the counting interceptor took an unset status after an exception for INTERNAL. A client that
cancels (a hedging client dropping the slower copy, a page closed) showed as a server error
on the dashboard's error ratio; a timeout showed as an internal error. Now a cancelled call is
counted as CANCELLED's 499 and one past its deadline as DEADLINE_EXCEEDED's 504 (still a
5xx: the server was slower than the client allowed), the statuses the clients got, as the
interceptor's own gRPC-to-HTTP mapping names them.

Tested on the real ``marquee serve --runtime kserve --enable-grpc`` process on 127.0.0.1 with
an injected latency (``MARQUEE_SERVING_FAULT_EXTRA_LATENCY_MS``), scraping its ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("grpc")

import grpc  # noqa: E402
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb  # noqa: E402
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from conftest import free_port, stop_process, wait_until  # noqa: E402
from serving_support import MODEL, bundle_dir, start_server  # noqa: E402,F401

LATENCY_MS = 3000


@pytest.fixture(scope="module")
def server(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
           ) -> Iterator[tuple[int, int]]:
    """(http_port, grpc_port) of a KServe model server with gRPC whose answers take 3 s."""
    home = tmp_path_factory.mktemp("grpc-cancel-home")
    http_port, grpc_port = free_port(), free_port()
    proc = start_server("kserve", bundle_dir, home, http_port, home / "server.log",
                        grpc_port=grpc_port, payload_log_enabled=False,
                        fault_extra_latency_ms=LATENCY_MS)
    try:
        yield http_port, grpc_port
    finally:
        stop_process(proc)


def _infer() -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="user_id", datatype="INT64", shape=[1], contents=pb.InferTensorContents(
            int64_contents=[5]))
    return pb.ModelInferRequest(model_name=MODEL, inputs=[tensor])


def _counts(http_port: int, name: str) -> dict[str, float]:
    """code -> value of the counter ``name`` on route grpc_infer."""
    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5.0).text
    return {s.labels["code"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name and s.labels["route"] == "grpc_infer"}


def _settled(http_port: int, before: dict[str, float]) -> dict[str, float]:
    """The grpc_infer requests counted since ``before``, once one more was counted (the
    server counts a call it was still answering when the client left a moment later)."""
    delta: dict[str, float] = {}

    def counted() -> bool:
        after = _counts(http_port, "marquee_serving_requests_total")
        delta.clear()
        delta.update({k: v - before.get(k, 0.0) for k, v in after.items()
                      if v - before.get(k, 0.0)})
        return sum(delta.values()) >= 1

    wait_until(counted, timeout=30, interval=0.1, what="the abandoned call counted")
    return delta


def test_a_call_past_its_deadline_is_counted_as_504_not_500(server: tuple[int, int]) -> None:
    http_port, grpc_port = server
    before = _counts(http_port, "marquee_serving_requests_total")
    errors_before = _counts(http_port, "marquee_serving_errors_total")
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(_infer(), timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _settled(http_port, before) == {"504": 1.0}
    errors = _counts(http_port, "marquee_serving_errors_total")
    assert errors.get("500", 0.0) == errors_before.get("500", 0.0), errors


def test_a_call_the_client_cancelled_is_counted_as_499_not_500(server: tuple[int, int]) -> None:
    http_port, grpc_port = server
    before = _counts(http_port, "marquee_serving_requests_total")
    errors_before = _counts(http_port, "marquee_serving_errors_total")
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        call = stub.ModelInfer.future(_infer())  # no deadline: only the cancel ends it
        # cancelled within the 3 s the server takes: it has the call by then (the deadline
        # test shows a call 0.5 s old reaches it), and its answer cannot have come yet
        time.sleep(0.5)
        assert call.cancel()
    assert _settled(http_port, before) == {"499": 1.0}
    errors = _counts(http_port, "marquee_serving_errors_total")
    assert errors.get("500", 0.0) == errors_before.get("500", 0.0), errors
