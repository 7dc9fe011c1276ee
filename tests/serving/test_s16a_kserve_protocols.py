"""The KServe model server's other protocol doors keep the REST JSON path's guarantees.

The binary data extension of V2 over REST (``inference-header-content-length``): a request
whose parts do not fit is a 400 naming the body (KServe let ValueError, KeyError and
struct.error out as 500s with tracebacks).

KServe's gRPC server (``marquee serve --enable-grpc``):

KServe 0.21 starts gRPC on ``[::]`` (every interface) whatever the configured host, serves the
model repository's unload (anyone who reaches it could unload the one model for good while
/v2/health/ready stayed true) and answers a bad request INTERNAL with a traceback at ERROR.
Tested on the real server process, bound to 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

pytest.importorskip("grpc")

import grpc  # noqa: E402
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb  # noqa: E402
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402

from conftest import free_port, stop_process  # noqa: E402
from serving_support import MODEL, V1_PATH, V2_PATH, bundle_dir, start_server  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def grpc_server(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[subprocess.Popen, int, int]]:
    home = tmp_path_factory.mktemp("grpc-home")
    http_port, grpc_port = free_port(), free_port()
    proc = start_server("kserve", bundle_dir, home, http_port, home / "server.log",
                        grpc_port=grpc_port, payload_log_enabled=False)
    try:
        yield proc, http_port, grpc_port
    finally:
        stop_process(proc)


@pytest.fixture()
def stub(grpc_server: tuple[subprocess.Popen, int, int]
         ) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server[2]}") as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _infer(user_ids: list[int]) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="user_id", datatype="INT64", shape=[len(user_ids)],
        contents=pb.InferTensorContents(int64_contents=user_ids))
    return pb.ModelInferRequest(model_name=MODEL, inputs=[tensor])


def test_grpc_listens_on_the_configured_host_only(grpc_server) -> None:
    proc, _, grpc_port = grpc_server
    addresses = [c.laddr.ip for c in psutil.Process(proc.pid).connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == grpc_port]
    assert addresses, "no gRPC listener"
    # KServe's own: ['::'], every interface. gRPC may listen on 127.0.0.1 as ::ffff:127.0.0.1
    assert all(_loopback(a) for a in addresses), addresses


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_grpc_cannot_unload_the_model(grpc_server, stub) -> None:
    _, http_port, _ = grpc_server
    with pytest.raises(grpc.RpcError) as err:
        stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=MODEL))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as err:
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=MODEL))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # the model still answers, over REST and gRPC
    r = httpx.post(f"http://127.0.0.1:{http_port}{V1_PATH}",
                   json={"instances": [{"user_id": 5, "k": 3}]}, timeout=10.0)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"][0]["items"]) == 3
    answer = stub.ModelInfer(_infer([5]))
    assert [o.name for o in answer.outputs][:2] == ["items", "scores"]


def test_grpc_bad_request_is_invalid_argument_naming_the_field(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(_infer([-5]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # was INTERNAL
    assert "inputs.user_id" in err.value.details()


def test_grpc_message_over_the_body_limit_is_refused(stub) -> None:
    # the REST body limit (64 KiB by default) holds for gRPC messages too (KServe: 8 MiB)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(_infer(list(range(1_000_000, 1_040_000))))  # ~120 KB
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_grpc_raw_contents_that_do_not_fit_are_invalid_argument(stub) -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="user_id", datatype="INT64", shape=[1])
    request = pb.ModelInferRequest(model_name=MODEL, inputs=[tensor],
                                   raw_input_contents=[b"\x01\x02\x03"])  # 3 bytes, not 8
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs.user_id" in err.value.details()


# V2 binary data extension over REST ------------------------------------------------------------
def _binary_post(http_port: int, header: object, tail: bytes,
                 length: str | None = None) -> httpx.Response:
    head = json.dumps(header).encode()
    return httpx.post(f"http://127.0.0.1:{http_port}{V2_PATH}", content=head + tail,
                      headers={"inference-header-content-length": length or str(len(head)),
                               "content-type": "application/octet-stream"}, timeout=10.0)


def _user_input(size: int, datatype: str = "INT64") -> dict:
    return {"inputs": [{"name": "user_id", "shape": [1], "datatype": datatype,
                        "parameters": {"binary_data_size": size}}]}


def test_binary_extension_request_is_answered(grpc_server) -> None:
    r = _binary_post(grpc_server[1], _user_input(8), (5).to_bytes(8, "little"))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["name"] == "items"


@pytest.mark.parametrize(("header", "tail", "length"), [
    (_user_input(8), b"\x01\x02\x03", None),  # binary part shorter than binary_data_size
    (_user_input(8), b"", "99999"),  # header length beyond the body
    (_user_input(8), b"\x00" * 8, "abc"),  # header length not a number
    (_user_input(8, "BYTES"), (5).to_bytes(8, "little"), None),  # BYTES framing that does not fit
    ({"x": 1}, b"", None),  # no inputs
    (_user_input("8"), b"\x00" * 8, None),  # binary_data_size not a number
])
def test_malformed_binary_extension_request_is_a_400(grpc_server, header, tail, length) -> None:
    r = _binary_post(grpc_server[1], header, tail, length)
    assert r.status_code == 400, r.text  # was a 500 with KServe's ValueError/struct.error/KeyError
    body = r.json()
    assert body["field"] == "body"
    assert body["error"].startswith("body: ")
