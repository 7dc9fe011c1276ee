"""The payload-log sink's shared token, wired from an existing Secret (offline renders).

The sink and every model server (which mounts ``/payload-sink`` too) read
``MARQUEE_SERVING_PAYLOAD_SINK_TOKEN`` from ``sink.auth.existingSecret``; KServe's logger
cannot send headers, so the chart's own logger URL carries the token as ``?token=``, read
from the Secret with ``lookup`` at install time. Offline (``helm template``, these tests)
``lookup`` finds nothing, so that case must fail loudly rather than render a logger that
every request would answer with 401.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import chartlib as c

ENV = "MARQUEE_SERVING_PAYLOAD_SINK_TOKEN"
SECRET = {"sink": {"auth": {"existingSecret": "marquee-sink-token", "tokenKey": "sink-token"}}}
OWN_URL = "http://sink.example.svc.cluster.local/payload-sink?token=from-my-vault"


def _with(*parts: dict[str, Any]) -> dict[str, Any]:
    """``parts`` merged left to right, nested dicts merged key by key."""
    def merge(a: Any, b: Any) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            return {**a, **{k: merge(a.get(k), v) for k, v in b.items()}}
        return b

    out: dict[str, Any] = {}
    for part in parts:
        out = merge(out, part)
    return out


def _env(ctr: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in ctr.get("env", [])}


def _serving_containers(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for o in objs:
        if o["kind"] == "InferenceService" or o["metadata"]["name"] == "marquee-sink":
            for pod in c.pod_specs(o):
                out.extend((o["metadata"]["name"], ctr) for ctr in pod["containers"])
    return out


def test_by_default_the_sink_runs_open_and_the_notes_say_so() -> None:
    objs = c.all_feature_objects()
    assert _serving_containers(objs)
    for name, ctr in _serving_containers(objs):
        assert ENV not in _env(ctr), name
    for o in (o for o in objs if o["kind"] == "InferenceService"):
        assert "token" not in o["spec"]["predictor"]["logger"]["url"]
    notes = c.render()["marquee/templates/NOTES.txt"]
    assert "unauthenticated" in notes and "sink.auth.existingSecret" in notes


def test_the_token_reaches_the_sink_and_the_model_servers_from_the_secret() -> None:
    values = _with(c.all_features_values(), SECRET, {"models": {"logger": {
        "enabled": True, "mode": "all", "url": OWN_URL}}})
    objs = c.objects(values)
    containers = _serving_containers(objs)
    assert {name for name, _ in containers} >= {"marquee-sink", "marquee-v1"}
    for name, ctr in containers:
        ref = _env(ctr)[ENV]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "marquee-sink-token", "key": "sink-token"}, name
    for o in (o for o in objs if o["kind"] == "InferenceService"):
        assert o["spec"]["predictor"]["logger"]["url"] == OWN_URL  # a given URL is kept as is
    # never a plain value: not in any ConfigMap, not as a literal variable
    for o in (o for o in objs if o["kind"] == "ConfigMap"):
        assert ENV not in o.get("data", {}), o["metadata"]["name"]
    notes = c.render(values)["marquee/templates/NOTES.txt"]
    assert "unauthenticated" not in notes and "marquee-sink-token" in notes


def test_the_charts_own_logger_url_needs_the_secret_readable_at_install() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmRenderError,
                       match=re.escape('sink.auth.existingSecret: Secret "marquee-sink-token"')):
        c.render(_with(SECRET, {"models": {"logger": {"enabled": True}}}))
    # no logger (the default), no URL to put the token in: renders, and the sink still gets
    # the token
    objs = c.objects(SECRET)
    sink = next(o for o in objs if o["kind"] == "Deployment"
                and o["metadata"]["name"] == "marquee-sink")
    (ctr,) = c.pod_specs(sink)[0]["containers"]
    assert _env(ctr)[ENV]["valueFrom"]["secretKeyRef"]["name"] == "marquee-sink-token"


@pytest.mark.parametrize(("values", "message"), [
    ({"sink": {"auth": {"existingSecret": "x", "tokenKey": ""}}}, "/sink/auth/tokenKey"),
    ({"sink": {"auth": {"existingSecret": "x", "tokenKey": "a/b"}}}, "/sink/auth/tokenKey"),
    ({"sink": {"auth": {"existingSecret": 5}}}, "/sink/auth/existingSecret"),
    ({"sink": {"auth": {"token": "plain"}}}, "additional properties 'token' not allowed"),
])
def test_the_schema_checks_the_sink_auth_values(values: dict, message: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        c.render(values)


def test_with_the_secret_readable_the_logger_url_carries_its_token(tmp_path) -> None:
    """What ``lookup`` returns against a cluster, stood in for by a literal Secret in a copy of
    the chart (offline, lookup finds nothing): the key's value, trimmed and URL-quoted."""
    import base64
    import shutil
    import urllib.parse

    import helm_python

    chart = tmp_path / "marquee"
    shutil.copytree(c.CHART, chart)
    helpers = chart / "templates" / "_helpers.tpl"
    text = helpers.read_text()
    call = 'lookup "v1" "Secret" (include "marquee.namespace" .) $auth.existingSecret'
    assert text.count(call) == 1
    token = "a+b/c=d&e"
    b64 = base64.b64encode(f"{token}\n".encode()).decode()  # kubectl --from-file keeps the \n
    helpers.write_text(text.replace(call, f'dict "data" (dict "sink-token" "{b64}")'))
    with helm_python.Chart.load(chart) as ch:
        objs = c.split(ch.render(_with(c.all_features_values(), SECRET), name=c.RELEASE,
                                 namespace=c.NAMESPACE, is_install=True))
    isvcs = [o for o in objs if o["kind"] == "InferenceService"]
    assert isvcs
    for o in isvcs:
        url = o["spec"]["predictor"]["logger"]["url"]
        base, _, query = url.partition("?")
        assert base == "http://marquee-sink.marquee.svc.cluster.local:80/payload-sink"
        assert urllib.parse.parse_qs(query) == {"token": [token]}, url
