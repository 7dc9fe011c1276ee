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


def test_an_alert_not_labelled_retrain_true_starts_nothing(trigger_app) -> None:
    """A route wider than the shipped one (every alert to the webhook) must not turn a page
    that says "do not retrain" (TrainingServingSkew: a serving bug, retrain="false") or an
    alert without the label into a run; a retrain-worthy alert of the same notification still
    starts one, and its reason names only that alert."""
    http, trig = trigger_app
    skew = notification("fp-skew", "movie-recommender")
    skew["alerts"][0]["labels"].update(alertname="TrainingServingSkew", retrain="false")
    unlabelled = notification("fp-latency", "movie-recommender")
    del unlabelled["alerts"][0]["labels"]["retrain"]
    unlabelled["alerts"][0]["labels"]["alertname"] = "HighLatency"
    for body in (skew, unlabelled):
        r = http.post("/webhook", json=body, headers=HEADERS)
        assert r.status_code == 200, r.text
        [d] = r.json()["decisions"]
        assert d["decision"] == "not-retrain", d
        assert "starts nothing" in d["detail"]
    assert trig.store.runs(10) == []

    mixed = notification("fp-drift", "movie-recommender")
    mixed["alerts"].append(skew["alerts"][0] | {"fingerprint": "fp-skew-2"})
    r = http.post("/webhook", json=mixed, headers=HEADERS)
    assert r.status_code == 200, r.text
    assert [d["decision"] for d in r.json()["decisions"]] == ["started", "not-retrain"]
    [run] = trig.store.runs(10)
    assert run.reason.startswith("ModelDataDrift") and "TrainingServingSkew" not in run.reason
