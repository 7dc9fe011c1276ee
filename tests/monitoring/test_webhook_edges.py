"""The retrain webhook against bodies the stdlib JSON parser let through to a 500: nesting past
Python's recursion limit, and lone surrogates (``"\\ud800"``) that parse but cannot be written to
the state files. Each is a 400 that says the body is not JSON; nothing is started or lost, and
the next good alert is handled as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from monitoring.retrain.app import create_app
from tests.monitoring.test_retrain_trigger import Clock, GateLauncher, make

HEADERS = {"Authorization": "Bearer token", "content-type": "application/json"}


def notification(fp: str, model: str) -> dict:
    """An Alertmanager v4 webhook body with one firing alert."""
    alert = {"status": "firing",
             "labels": {"alertname": "ModelDataDrift", "model": model, "retrain": "true"},
             "annotations": {}, "startsAt": "2025-03-01T02:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fp}
    return {"receiver": "retrain-trigger", "status": "firing", "alerts": [alert],
            "groupLabels": {"model": model}, "version": "4",
            "groupKey": f'{{}}/{{retrain="true"}}:{{model="{model}"}}', "truncatedAlerts": 0}


@pytest.fixture()
def trigger_app(tmp_path: Path):
    """The webhook app over a trigger whose launcher runs at once; (client, trigger)."""
    launcher = GateLauncher()
    launcher.release()
    trig = make(tmp_path, launcher, Clock())
    try:
        with TestClient(create_app(trig, "token"), raise_server_exceptions=False) as http:
            yield http, trig
    finally:
        trig.close(5)


def _with_model(model_json: str) -> bytes:
    """A valid notification whose ``model`` label is ``model_json`` (raw JSON text)."""
    return json.dumps(notification("fp-s", "PLACEHOLDER")).replace(
        '"PLACEHOLDER"', model_json).encode()


@pytest.mark.parametrize(("path", "body"), [
    ("/webhook", b'{"alerts": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("/retrain", b'{"reason": "deep", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("/webhook", _with_model('"\\ud800"')),
    ("/retrain", b'{"reason": "lone surrogate", "model": "\\udfff"}'),
])
def test_bodies_the_stdlib_parser_let_through_are_a_400(trigger_app, path: str,
                                                        body: bytes) -> None:
    http, trig = trigger_app
    r = http.post(path, content=body, headers=HEADERS)
    assert r.status_code == 400, r.text
    assert "not JSON" in r.json()["message"]
    assert trig.store.runs(10) == []
    good = http.post("/webhook", json=notification("fp-ok", "movie-recommender"),
                     headers=HEADERS)
    assert good.status_code == 200, good.text
    assert [d["decision"] for d in good.json()["decisions"]] == ["started"]


@pytest.mark.parametrize("extra", [{"force": "yes"}, {"force": 1}, {"force": "true"},
                                   {"model": ""}, {"model": "m" * 257}])
def test_a_manual_request_with_a_loose_field_is_a_400_that_starts_nothing(
        trigger_app, extra: dict) -> None:
    """``force`` lifts the cooldown, so only JSON true does; a model name is 1–256 chars."""
    http, trig = trigger_app
    r = http.post("/retrain", json={"reason": "on-call retrain", **extra}, headers=HEADERS)
    assert r.status_code == 400, r.text
    assert next(iter(extra)) in r.json()["message"], r.text
    assert trig.store.runs(10) == []
