"""The retrain webhook as Alertmanager meets it: `marquee trigger` on 127.0.0.1.

The trigger runs as a real process with the command launcher; the "pipeline" it starts is a
stand-in child process (stand_in_pipeline.py) that records each run in a file, because the
real training pipeline (pipelines.run) has not landed yet.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import REPO, free_port, stop_process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("retrain-webhook")]

TOKEN = "s3cret-retrain-token"
STAND_IN = Path(__file__).with_name("stand_in_pipeline.py")


@dataclass
class Trigger:
    url: str
    home: Path
    runs_dir: Path  # what the stand-in pipeline recorded
    env: dict[str, str]

    def post(self, body: object, token: str | None = TOKEN, raw: bytes | None = None,
             client: httpx.Client | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        c = client or httpx
        if raw is not None:
            return c.post(f"{self.url}/webhook", content=raw, headers=headers, timeout=10)
        return c.post(f"{self.url}/webhook", json=body, headers=headers, timeout=10)

    def decisions(self) -> list[dict]:
        path = self.home / "retrain" / "decisions.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def stand_in_runs(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.runs_dir.glob("*.json"))]

    def runs(self) -> list[dict]:
        resp = httpx.get(f"{self.url}/runs", headers={"Authorization": f"Bearer {TOKEN}"})
        resp.raise_for_status()
        return resp.json()["runs"]

    def wait_runs_finished(self) -> None:
        wait_until(lambda: all(r["status"] in ("succeeded", "failed") for r in self.runs()),
                   timeout=30, what="runs finished")


@contextlib.contextmanager
def running_trigger(tmp: Path, cooldown_seconds: float,
                    stand_in_seconds: float) -> Iterator[Trigger]:
    """A real `marquee trigger` on 127.0.0.1 under ``tmp``, its runs made by the stand-in
    pipeline; stopped by its process id when the block ends."""
    (tmp / "token").write_text(TOKEN + "\n")
    port = free_port()
    env = {**os.environ,
           "MARQUEE_HOME": str(tmp / "home"),
           "MARQUEE_BIND_HOST": "127.0.0.1",
           "MARQUEE_RETRAIN_TOKEN_FILE": str(tmp / "token"),
           "MARQUEE_RETRAIN_PORT": str(port),
           "MARQUEE_RETRAIN_URL": f"http://127.0.0.1:{port}",
           "MARQUEE_RETRAIN_COOLDOWN_SECONDS": str(cooldown_seconds),
           "MARQUEE_RETRAIN_LAUNCHER": "command",
           "MARQUEE_RETRAIN_COMMAND": json.dumps([sys.executable, str(STAND_IN)]),
           "STAND_IN_RUNS_DIR": str(tmp / "stand-in-runs"),
           "STAND_IN_SECONDS": str(stand_in_seconds)}
    env.pop("MARQUEE_RETRAIN_TOKEN", None)
    log = open(tmp / "trigger.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "marquee.cli", "trigger", "--log-level",
                             "warning"], env=env, cwd=REPO, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is None
                   and httpx.get(f"{url}/readyz", timeout=1).status_code == 200,
                   timeout=60, what="retrain trigger ready")
        yield Trigger(url, tmp / "home", tmp / "stand-in-runs", env)
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="module")
def trigger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trigger]:
    with running_trigger(tmp_path_factory.mktemp("trigger"), 3600, 0.3) as t:
        yield t


def notification(fp: str, model: str, status: str = "firing",
                 starts: str = "2025-03-01T02:00:00.123456789Z") -> dict:
    """An Alertmanager v4 webhook body as 0.25 sends it (nanosecond RFC 3339 timestamps)."""
    alert = {"status": status,
             "labels": {"alertname": "ModelDataDrift", "model": model, "retrain": "true",
                        "severity": "warning", "model_version": "3"},
             "annotations": {"summary": "Serving data drifted: 25% of features drifted.",
                             "runbook_url": "https://example/ModelDataDrift.md"},
             "startsAt": starts,
             "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2025-03-01T03:00:00Z",
             "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=marquee_drift_share",
             "fingerprint": fp}
    return {"receiver": "retrain-trigger", "status": status, "alerts": [alert],
            "groupLabels": {"model": model}, "commonLabels": alert["labels"],
            "commonAnnotations": alert["annotations"], "externalURL": "http://127.0.0.1:9093",
            "version": "4", "groupKey": f'{{}}/{{retrain="true"}}:{{model="{model}"}}',
            "truncatedAlerts": 0}


def test_100_identical_alerts_start_exactly_one_run(trigger: Trigger) -> None:
    body = notification("f00d0001", model="model-dedup")
    with httpx.Client(limits=httpx.Limits(max_connections=20)) as client, \
            ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: trigger.post(body, client=client), range(100)))
    assert [r.status_code for r in responses] == [200] * 100
    kinds = [r.json()["decisions"][0]["decision"] for r in responses]
    assert kinds.count("started") == 1 and kinds.count("duplicate") == 99
    trigger.wait_runs_finished()
    ran = [r for r in trigger.stand_in_runs() if r["model"] == "model-dedup"]
    assert len(ran) == 1, ran
    run = next(r for r in trigger.runs() if r["model"] == "model-dedup")
    assert run["status"] == "succeeded" and run["model_version"] == "7"
    assert run["pipeline_run_id"] == f"pipeline-{run['run_id']}"
    logged = [d for d in trigger.decisions() if d["fingerprint"] == "f00d0001"]
    assert len(logged) == 100 and sum(d["decision"] == "started" for d in logged) == 1


def test_wrong_or_missing_token_gets_401_and_starts_nothing(trigger: Trigger) -> None:
    before = len(trigger.stand_in_runs())
    body = notification("f00d0002", model="model-auth")
    wrong = trigger.post(body, token="not-the-token")
    missing = trigger.post(body, token=None)
    assert wrong.status_code == 401 and missing.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert wrong.json()["message"] == "wrong bearer token"
    assert "missing Authorization" in missing.json()["message"]
    assert len(trigger.stand_in_runs()) == before
    # logged (at most one line a minute: test_retrain_trigger), and nothing started
    assert [d["decision"] for d in trigger.decisions()].count("unauthorized") >= 1


@pytest.mark.parametrize(("raw", "names"), [
    (b'{"version": "4", "alerts": [', "not JSON"),
    (b"", "not JSON"),
    (json.dumps({**notification("x", "m"), "version": "3"}).encode(), "version"),
    (json.dumps({**notification("x", "m"), "alerts": []}).encode(), "alerts"),
    (json.dumps(notification("", "m")).encode(), "alerts.0.fingerprint"),
    (json.dumps({**notification("x", "m"),
                 "alerts": [{**notification("x", "m")["alerts"][0], "startsAt": "yesterday"}]}
                ).encode(), "alerts.0.startsAt"),
])
def test_malformed_body_gets_400_naming_the_field(trigger: Trigger, raw: bytes,
                                                  names: str) -> None:
    resp = trigger.post(None, raw=raw)
    assert resp.status_code == 400, resp.text
    assert names in resp.json()["message"]


def test_resolved_alert_starts_nothing(trigger: Trigger) -> None:
    before = len(trigger.stand_in_runs())
    resp = trigger.post(notification("f00d0003", model="model-resolved", status="resolved"))
    assert resp.status_code == 200
    assert [d["decision"] for d in resp.json()["decisions"]] == ["resolved-ignored"]
    trigger.wait_runs_finished()
    assert len(trigger.stand_in_runs()) == before


def test_new_alert_for_the_same_model_within_cooldown_is_refused(trigger: Trigger) -> None:
    first = trigger.post(notification("f00d0004", model="model-cool"))
    assert first.json()["decisions"][0]["decision"] == "started"
    trigger.wait_runs_finished()
    later = trigger.post(notification("f00d0005", model="model-cool",
                                      starts="2025-03-01T02:30:00Z"))
    d = later.json()["decisions"][0]
    assert d["decision"] == "cooldown" and "cooldown until" in d["detail"]
    assert sum(r["model"] == "model-cool" for r in trigger.stand_in_runs()) == 1


def test_metrics_count_decisions(trigger: Trigger) -> None:
    trigger.post(notification("f00d0006", model="model-metrics", status="resolved"))
    text = httpx.get(f"{trigger.url}/metrics").text
    assert 'marquee_retrain_decisions_total{reason="resolved-ignored"}' in text
    assert "marquee_retrain_runs_in_flight" in text


def test_oncall_retrain_command_goes_through_the_service(trigger: Trigger) -> None:
    cmd = [sys.executable, "-m", "marquee.cli", "retrain", "--reason", "fresh data landed",
           "--model", "model-oncall"]
    first = subprocess.run(cmd, env=trigger.env, cwd=REPO, capture_output=True, text=True,
                           timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "started" in first.stdout
    trigger.wait_runs_finished()
    second = subprocess.run(cmd, env=trigger.env, cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "cooldown" in second.stdout
    manual = [d for d in trigger.decisions() if d["source"] == "manual"]
    assert [d["decision"] for d in manual] == ["started", "cooldown"]
    ran = [r for r in trigger.stand_in_runs() if r["model"] == "model-oncall"]
    assert len(ran) == 1 and "fresh data landed" in ran[0]["reason"]


def test_a_body_over_the_limit_is_a_413_and_starts_nothing(trigger: Trigger) -> None:
    from monitoring.retrain.app import MAX_BODY_BYTES

    before = len(trigger.stand_in_runs())
    body = notification("f00d0413", model="model-big")
    body["alerts"][0]["annotations"]["summary"] = "x" * (MAX_BODY_BYTES + 1)
    r = trigger.post(body)
    assert r.status_code == 413 and "limit" in r.json()["message"]
    assert len(trigger.stand_in_runs()) == before
