"""The payload-log sink: off by default, and its shared token, wired from an existing Secret
(offline renders).

Nothing posts payload logs to a sink by default (``models.logger.enabled`` is false: Marquee's
model server writes its own), so neither the sink Deployment (``sink.enabled``) nor the model
servers' own ``/payload-sink`` (``modelServer.payloadSinkEnabled``) is there to inject rows
through; a logger with nowhere to post fails the render. When enabled, the sink and every
model server read ``MARQUEE_SERVING_PAYLOAD_SINK_TOKEN`` from ``sink.auth.existingSecret``;
KServe's logger cannot send headers, so the chart's own logger URL carries the token as
``?token=``, read from the Secret with ``lookup`` at install time. Offline (``helm template``,
these tests) ``lookup`` finds nothing, so that case must fail loudly rather than render a
logger that every request would answer with 401.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import chartlib as c

ENV = "MARQUEE_SERVING_PAYLOAD_SINK_TOKEN"
SECRET = {"sink": {"auth": {"existingSecret": "marquee-sink-token", "tokenKey": "sink-token"}}}
OWN_URL = "http://sink.example.svc.cluster.local/payload-sink?token=from-my-vault"
SINK_ON = {"sink": {"enabled": True}}
LOGGER_ON = {"models": {"logger": {"enabled": True}}}
CHART_SINK_URL = "http://marquee-sink.marquee.svc.cluster.local:80/payload-sink"


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


def test_by_default_there_is_no_sink_to_post_to() -> None:
    """No sink Deployment, Service, ServiceMonitor or NetworkPolicy (even with the monitoring
    and policy features on), no model server mounting /payload-sink, no logger, no warning."""
    defaults = c.chart_defaults()
    assert defaults["sink"]["enabled"] is False
    assert defaults["modelServer"]["payloadSinkEnabled"] is False
    assert defaults["models"]["logger"]["enabled"] is False
    for values in (None, {"serviceMonitor": {"enabled": True},
                          "networkPolicy": {"enabled": True}}):
        objs = c.objects(values)
        assert not [(o["kind"], o["metadata"]["name"]) for o in objs
                    if o["metadata"]["name"] == "marquee-sink"], values
        assert [o for o in objs if o["kind"] == "InferenceService"]
        for o in (o for o in objs if o["kind"] == "InferenceService"):
            assert "logger" not in o["spec"]["predictor"]
        (cm,) = [o for o in objs if o["kind"] == "ConfigMap"
                 and o["metadata"]["name"] == "marquee-model-server"]
        assert cm["data"]["MARQUEE_SERVING_PAYLOAD_SINK_ENABLED"] == "false"
        from serving.settings import ServingSettings

        assert ServingSettings(payload_sink_enabled=cm["data"][
            "MARQUEE_SERVING_PAYLOAD_SINK_ENABLED"]).payload_sink_enabled is False
        notes = c.render(values)["marquee/templates/NOTES.txt"]
        assert "unauthenticated" not in notes and "payload-log sink" not in notes


def test_a_logger_with_nowhere_to_post_fails_naming_the_values() -> None:
    """Before, the logger silently disappeared from every InferenceService."""
    import helm_python

    for extra in ({}, {"models": {"versions": []}}):  # also with no InferenceService to render
        with pytest.raises(helm_python.HelmRenderError) as err:
            c.render(_with(LOGGER_ON, extra))
        for value in ("models.logger.enabled", "models.logger.url", "sink.enabled"):
            assert value in str(err.value), (value, str(err.value))
    # either place to post renders
    assert c.objects(_with(LOGGER_ON, {"models": {"logger": {"url": OWN_URL}}}))
    assert c.objects(_with(LOGGER_ON, SINK_ON))


def test_a_logger_with_the_sink_enabled_posts_to_the_sink() -> None:
    objs = c.objects(_with(LOGGER_ON, SINK_ON))
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert {("Deployment", "marquee-sink"), ("Service", "marquee-sink")} <= names
    isvcs = [o for o in objs if o["kind"] == "InferenceService"]
    assert isvcs
    for o in isvcs:
        assert o["spec"]["predictor"]["logger"] == {"mode": "all", "url": CHART_SINK_URL}


def test_the_model_servers_own_sink_is_opt_in_and_warned_about_when_open() -> None:
    values = {"modelServer": {"payloadSinkEnabled": True}}
    (cm,) = [o for o in c.objects(values) if o["kind"] == "ConfigMap"
             and o["metadata"]["name"] == "marquee-model-server"]
    assert cm["data"]["MARQUEE_SERVING_PAYLOAD_SINK_ENABLED"] == "true"
    notes = c.render(values)["marquee/templates/NOTES.txt"]
    assert "every model server's /payload-sink is unauthenticated" in notes
    notes = c.render(_with(values, SINK_ON))["marquee/templates/NOTES.txt"]
    assert "payload-log sink and every model server's /payload-sink is unauthenticated" in notes


def test_an_enabled_sink_without_a_secret_runs_open_and_the_notes_say_so() -> None:
    objs = c.all_feature_objects()  # every enabled flag on: the sink and the logger
    assert _serving_containers(objs)
    for name, ctr in _serving_containers(objs):
        assert ENV not in _env(ctr), name
    for o in (o for o in objs if o["kind"] == "InferenceService"):
        assert "token" not in o["spec"]["predictor"]["logger"]["url"]
    notes = c.render(SINK_ON)["marquee/templates/NOTES.txt"]
    assert "the payload-log sink is unauthenticated" in notes
    assert "sink.auth.existingSecret" in notes


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
        c.render(_with(SECRET, SINK_ON, LOGGER_ON))
    # no logger (the default), no URL to put the token in: renders, and the sink still gets
    # the token
    objs = c.objects(_with(SECRET, SINK_ON))
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
        assert base == CHART_SINK_URL
        assert urllib.parse.parse_qs(query) == {"token": [token]}, url
