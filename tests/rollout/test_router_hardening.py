"""The router against bad input and misbehaving model servers (found by a bug bash).

- A request the router accepts is one the model server accepts (the same strict types and
  limits), so a model server's 4xx is that server's failure: a 502 counted against its variant.
- Bodies are bounded (413), echoed values are cut short, and other methods get a JSON 405.
- Answers that are not a prediction of at most k items with a score each are refused.
- A restart finds the upstreams registered at run time, and a saved routing it cannot apply
  does not stop the router from starting.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from serving.router.app import MAX_BODY_BYTES
from serving.runtime.schema import V1Request
from tests.rollout.test_router_app import FakeServers, client_for, route


def _sample(name: str, **labels: str) -> float:
    """A counter's value in this process (the metrics are module-level: other tests add)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


class RecordingServers(FakeServers):
    """The fake KServe servers, checking every instance they get with the model server's own
    schema, and able to answer 404 (a wrong URL) or a malformed prediction."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []
        self.not_found: set[str] = set()
        self.answer: dict[str, Any] | None = None
        self.bundle_prefix = ""

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        V1Request.model_validate(json.loads(request.content))  # raises on what the server refuses
        host = request.url.host
        if host in self.not_found:
            self.calls[host] += 1
            return httpx.Response(404, json={"error": "Model with name x does not exist."})
        if self.answer is not None:
            return httpx.Response(200, json={"predictions": [self.answer]})
        resp = await super().__call__(request)
        if self.bundle_prefix and resp.status_code == 200:  # a bundle's version, not "2"
            body = json.loads(resp.content)
            body["predictions"][0]["model_version"] = \
                self.bundle_prefix + body["predictions"][0]["model_version"]
            return httpx.Response(200, json=body)
        return resp


@pytest.mark.parametrize("body, field", [
    ({"user_id": "7"}, "user_id"),
    ({"user_id": True}, "user_id"),
    ({"user_id": 7.0}, "user_id"),
    ({"user_id": 2**63}, "user_id"),
    ({"user_id": 7, "k": "10"}, "k"),
    ({"user_id": 7, "k": True}, "k"),
    ({"user_id": 7, "history": ["5"]}, "history.0"),
    ({"user_id": 7, "history": [True]}, "history.0"),
    ({"user_id": 7, "history": list(range(1, 1002))}, "history"),
    ({"user_id": 7, "context": {"ts": "noon"}}, "context"),
    ({"user_id": 7, "context": {f"k{i}": i for i in range(33)}}, "context"),
])
def test_the_router_refuses_what_the_model_server_would(body: dict[str, Any],
                                                        field: str) -> None:
    servers = RecordingServers()
    with client_for(servers) as c:
        r = c.post("/recommend", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field
        assert not servers.calls  # nothing reached a model server
        metrics = c.get("/metrics").text
        assert 'marquee_router_requests_total{code="422",model_version="none",variant="none"}' \
            in metrics


def test_what_the_router_accepts_the_model_server_accepts() -> None:
    servers = RecordingServers()
    with client_for(servers) as c:
        for body in ({"user_id": 2**63 - 1, "k": 500}, {"user_id": 7, "history": [1] * 1000},
                     {"user_id": 7, "context": {"ts": 1_700_000_000, "device": "tv"}}):
            assert c.post("/recommend", json=body).status_code == 200


def test_a_model_server_4xx_is_a_502_counted_against_its_variant() -> None:
    """A candidate behind a wrong URL answers 404 to every request: before, the client got a
    422 'bad request' and the candidate's error rate stayed at 0 of 0."""
    servers = RecordingServers()
    servers.not_found.add("cand.test")
    labels = {"variant": "candidate", "model_version": "2"}
    before = (_sample("marquee_router_errors_total", reason="status_4xx", **labels),
              _sample("marquee_router_requests_total", code="502", **labels))
    with client_for(servers) as c:
        route(c, "canary", weight=100)
        for u in range(1, 21):
            r = c.post("/recommend", json={"user_id": u, "k": 3})
            assert r.status_code == 502, r.text
            assert r.json()["variant"] == "candidate" and "404" in r.json()["error"]
        cand = c.get("/admin/stats", params={"since": 0}).json()["variants"]["candidate"]
        assert cand["requests"] == cand["errors"] == 20
        after = (_sample("marquee_router_errors_total", reason="status_4xx", **labels),
                 _sample("marquee_router_requests_total", code="502", **labels))
        assert after[0] - before[0] == after[1] - before[1] == 20


def test_answers_and_errors_carry_the_same_model_version_label() -> None:
    servers = RecordingServers()
    servers.bundle_prefix = "20261124T000000Z-v"
    with client_for(servers) as c:
        route(c, "canary", weight=50)
        for u in range(1, 41):
            c.post("/recommend", json={"user_id": u})
        servers.fail.add("cand.test")
        for u in range(1, 41):
            c.post("/recommend", json={"user_id": u})
        metrics = c.get("/metrics").text
        assert "20261124T000000Z" not in metrics
        for code in ("200", "502"):
            assert (f'marquee_router_requests_total{{code="{code}",model_version="2",'
                    f'variant="candidate"}}') in metrics


@pytest.mark.parametrize("answer", [
    {"items": [1, 2, 3, 4], "scores": [1.0, 0.9, 0.8, 0.7], "model_version": "1"},  # k is 3
    {"items": [1, 2, 3], "scores": [1.0], "model_version": "1"},
    {"items": ["a"], "scores": [1.0], "model_version": "1"},
])
def test_an_answer_that_is_not_a_prediction_of_k_items_is_refused(answer: dict) -> None:
    servers = RecordingServers()
    servers.answer = answer
    with client_for(servers) as c:
        r = c.post("/recommend", json={"user_id": 5, "k": 3})
        assert r.status_code == 502 and "invalid body" in r.json()["error"]


def test_bodies_are_bounded_and_echoes_cut_short() -> None:
    servers = RecordingServers()
    with client_for(servers) as c:
        big = b'{"user_id": 1, "pad": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
        r = c.post("/recommend", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["field"] == "body"

        def chunks():  # no Content-Length: the limit holds while reading
            for _ in range(20):
                yield b"x" * 8192
        r = c.post("/feedback", content=chunks())
        assert r.status_code == 413
        r = c.post("/recommend", json={"user_id": 1, "pad": "y" * 20_000})
        assert r.status_code == 422 and len(r.content) < 400 and "pad" in r.json()["error"]
        assert not servers.calls


def test_other_methods_on_the_product_api_get_a_json_405() -> None:
    with client_for(RecordingServers()) as c:
        r = c.get("/recommend")
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        assert "POST" in r.json()["error"]


def test_a_restart_finds_upstreams_registered_at_run_time(tmp_path) -> None:  # noqa: ANN001
    routing = tmp_path / "routing.json"
    servers = RecordingServers()
    with client_for(servers, routing_file=str(routing)) as c:
        r = c.put("/admin/upstreams", json={"version": "3", "url": "http://cand.test"})
        assert r.status_code == 200
        r = c.put("/admin/routing", json={"strategy": "canary", "baseline": {"version": "1"},
                                          "candidate": {"version": "3"},
                                          "candidate_weight": 25})
        assert r.status_code == 200, r.text
        epoch = r.json()["epoch"]
    # The restarted router knows only versions 1 and 2 from its settings.
    with client_for(servers, routing_file=str(routing)) as c:
        now = c.get("/admin/routing").json()
        assert now["candidate"]["version"] == "3" and now["epoch"] == epoch
        assert now["candidate_url"] == "http://cand.test"
        assert c.get("/admin/upstreams").json()["3"] == "http://cand.test"


def test_a_saved_routing_that_cannot_be_applied_does_not_stop_the_router(tmp_path) -> None:  # noqa: ANN001
    routing = tmp_path / "routing.json"
    # The older format (a bare routing), naming a version no setting knows.
    routing.write_text(json.dumps({"strategy": "canary", "baseline": {"version": "1"},
                                   "candidate": {"version": "9"}, "candidate_weight": 10}))
    with client_for(RecordingServers(), routing_file=str(routing)) as c:
        now = c.get("/admin/routing").json()
        assert now["strategy"] == "single" and now["baseline"]["version"] == "1"
        assert c.post("/recommend", json={"user_id": 1}).status_code == 200


@pytest.mark.parametrize(("args", "message"), [
    (("--baseline", "7", "--routing-file", "none"),
     "no model server URL for version '7': give it with --upstream 7=http://HOST:PORT"),
    (("--upstream", "1=http://127.0.0.1:9", "--log-level", "nonsense"),
     "expected debug, info, warning or error, got 'nonsense'"),
])
def test_router_command_line_mistakes_are_usage_errors(tmp_path, args, message) -> None:  # noqa: ANN001
    from tests.unit.test_cli_errors import marquee

    out = marquee(tmp_path, "router", "--port", "1", *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
