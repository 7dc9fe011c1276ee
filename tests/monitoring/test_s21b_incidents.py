"""`marquee incidents` against what answers on its URLs, found by a bug hunt (session 21, B).

- An Alertmanager URL that answers JSON which is not a list of alerts (another service on the
  port, a proxy's ``null``) or that is not even a URL (``http://[::1``) ended in a traceback
  (TypeError, httpx.InvalidURL) instead of "Alerts: unavailable: …" and exit 1.
- The retrain URL answering 200 with something that is not the trigger's ``/runs`` (a JSON
  list) ended in a TypeError traceback.
- Alert labels and annotations, and a run's reason, were printed as rich markup: ``[x]``
  vanished from the text, and a ``[/x]`` ended the command in a MarkupError traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from conftest import alertmanager_at, wait_until
from test_retrain_cli import _env, _marquee
from tests.stand_in_http import serving


def answering(body: str):  # noqa: ANN201
    """A server on 127.0.0.1 that answers every GET with 200 and ``body`` as JSON."""
    return serving(lambda method, path, request: (200, body))


@pytest.mark.parametrize(("body", "kind"), [("null", "NoneType"), ("42", "int"),
                                            ('{"status": "error"}', "dict")])
def test_an_alertmanager_answering_something_else_is_unavailable_not_a_traceback(
        tmp_path: Path, body: str, kind: str) -> None:
    with answering(body) as url:
        out = _marquee(["incidents"], _env(tmp_path, MARQUEE_ALERTMANAGER_URL=url))
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 1, out.stdout + out.stderr
    assert (f"Alerts: unavailable: cannot read alerts from {url}/api/v2/alerts: expected a "
            f"JSON list of alerts, got {kind}") in out.stdout
    assert "Recent retraining runs" in out.stdout


def test_an_alertmanager_url_that_is_no_url_is_unavailable_not_a_traceback(
        tmp_path: Path) -> None:
    out = _marquee(["incidents"], _env(tmp_path, MARQUEE_ALERTMANAGER_URL="http://[::1"))
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Alerts: unavailable: cannot read alerts from http://[::1" in out.stdout


def test_a_retrain_url_answering_something_else_is_named_not_a_traceback(
        tmp_path: Path) -> None:
    with answering("[]") as url:
        out = _marquee(["incidents"], _env(tmp_path, MARQUEE_ALERTMANAGER_URL="",
                                           MARQUEE_RETRAIN_URL=url))
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 1, out.stdout + out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {url} answered 200 with no runs and decisions in it"), error
    assert "this machine's" in error and "Recent retraining runs" in out.stdout


@pytest.fixture()
def alertmanager(tmp_path: Path) -> Iterator[str]:
    with alertmanager_at(tmp_path) as url:
        yield url


def test_alert_and_run_texts_are_shown_as_they_are_not_as_markup(
        tmp_path: Path, alertmanager: str) -> None:
    """A real Alertmanager holding an alert whose texts have brackets, and a retraining run
    whose reason has some: every one is printed verbatim, exit 0."""
    now = datetime.now(timezone.utc)
    summary = "Served [bold]hour_of_day[/bold] disagrees; see [/docs/skew] and [runbook]."
    alert = {"labels": {"alertname": "TrainingServingSkew", "severity": "critical",
                        "namespace": "ml[prod]", "feature": "hour_of_day"},
             "annotations": {"summary": summary,
                             "runbook_url": "https://wiki.example/skew?q=[a]"},
             "startsAt": (now - timedelta(minutes=5)).isoformat()}
    httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert]).raise_for_status()
    wait_until(lambda: len(httpx.get(f"{alertmanager}/api/v2/alerts").json()) == 1,
               timeout=10, what="alert visible")
    env = _env(tmp_path, MARQUEE_ALERTMANAGER_URL=alertmanager)
    reason = "[inc-42] bad catalogue import [/data]"
    ran = _marquee(["retrain", "--local", "--reason", reason], env)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    out = _marquee(["incidents"], env)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert summary in text
    assert "namespace=ml[prod]" in text
    assert "TrainingServingSkew: https://wiki.example/skew?q=[a]" in text
    assert reason in text
