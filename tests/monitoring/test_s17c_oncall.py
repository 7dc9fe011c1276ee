"""The on-call engineer's path through the runbooks, followed literally against real processes
on 127.0.0.1: `marquee trigger` (command launcher, the stand-in pipeline as its child),
Alertmanager from the Debian package, and the `marquee` CLI.

- ClickThroughDrop, ModelDataDrift and TrainingServingSkew tell on-call to cancel a
  retraining run that trains on broken data: `marquee retrain --cancel RUN --reason TEXT` stops the trigger's run in flight
  (the child's process group, or the Kubeflow run), the run ends failed naming who and why,
  and nothing it trained is rolled out.
- Every runbook's commands take the release's namespace from the alert: `marquee incidents`
  shows the alert's `namespace` label.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from conftest import (
    REPO,
    alertmanager_at,
    free_port,
    pid_alive,
    stop_process,
    wait_until,
)

from marquee.settings import Settings
from monitoring.retrain.launcher import KubeflowLauncher
from monitoring.retrain.models import ManualRequest, RunStatus
from monitoring.retrain.state import StateStore
from monitoring.retrain.trigger import RetrainTrigger

STAND_IN = Path(__file__).with_name("stand_in_pipeline.py")
TOKEN = "s17c-token"
RUNBOOKS = REPO / "monitoring" / "runbooks"


def _marquee(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marquee.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def trigger(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`marquee trigger` whose runs are the stand-in pipeline holding on for 120 s, with the
    automatic shadow rollout on (towards a router nobody runs: a rollout attempt would be a
    rollout-* decision). Yields the on-call's environment (DEPLOY "On call from your
    machine": MARQUEE_RETRAIN_URL and MARQUEE_RETRAIN_TOKEN_FILE)."""
    (tmp_path / "token").write_text(TOKEN + "\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update({"MARQUEE_HOME": str(tmp_path / "home"),
                "MARQUEE_BIND_HOST": "127.0.0.1",
                "MARQUEE_RETRAIN_TOKEN_FILE": str(tmp_path / "token"),
                "MARQUEE_RETRAIN_PORT": str(port),
                "MARQUEE_RETRAIN_URL": f"http://127.0.0.1:{port}",
                "MARQUEE_RETRAIN_LAUNCHER": "command",
                "MARQUEE_RETRAIN_COMMAND": json.dumps([sys.executable, str(STAND_IN)]),
                "MARQUEE_RETRAIN_AUTO_ROLLOUT": "shadow",
                "MARQUEE_RETRAIN_ROUTER_URL": f"http://127.0.0.1:{free_port()}",
                "STAND_IN_RUNS_DIR": str(tmp_path / "stand-in-runs"),
                "STAND_IN_SECONDS": "120",
                "COLUMNS": "400"})
    log = open(tmp_path / "trigger.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "marquee.cli", "trigger", "--log-level",
                             "warning"], env=env, cwd=REPO, stdout=log, stderr=log)
    url = env["MARQUEE_RETRAIN_URL"]
    try:
        wait_until(lambda: proc.poll() is None
                   and httpx.get(f"{url}/readyz", timeout=1).status_code == 200,
                   timeout=60, what="retrain trigger ready")
        yield env
    finally:
        stop_process(proc)
        log.close()


def _runs(env: dict[str, str]) -> dict:
    resp = httpx.get(env["MARQUEE_RETRAIN_URL"] + "/runs",
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    resp.raise_for_status()
    return resp.json()


def test_the_runbooks_cancel_command_stops_the_run_and_rolls_nothing_out(
        trigger: dict[str, str], tmp_path: Path) -> None:
    env = trigger
    started = _marquee(["retrain", "--reason", "ClickThroughDrop on production"], env)
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = started.stdout.split("run ")[-1].split(")")[0]
    wait_until(lambda: list((tmp_path / "stand-in-runs").glob("*.json")), timeout=30,
               what="the stand-in pipeline started")
    child = json.loads(next((tmp_path / "stand-in-runs").glob("*.json")).read_text())["pid"]
    assert pid_alive(child)

    # the runbook's command, as written there with the run id from `marquee incidents`
    out = _marquee(["retrain", "--cancel", run_id, "--reason", "feedback logging broken"],
                   env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"canceled: run {run_id} canceled by" in out.stdout
    assert "feedback logging broken" in out.stdout
    wait_until(lambda: not pid_alive(child), timeout=30, what="the pipeline child stopped")
    wait_until(lambda: _runs(env)["runs"][0]["status"] == "failed", timeout=30,
               what="the run ended")
    body = _runs(env)
    (run,) = body["runs"]
    assert run["run_id"] == run_id and "feedback logging broken" in run["error"]
    kinds = [d["decision"] for d in body["decisions"]]
    assert "canceled" in kinds
    assert not [k for k in kinds if k.startswith("rollout")], kinds  # nothing rolled out
    # the claim is released: on-call can ask for a run again (past the cooldown)
    again = _marquee(["retrain", "--force", "--reason", "feedback fixed"], env)
    assert again.returncode == 0 and "started" in again.stdout, again.stdout + again.stderr

    # a run that has ended cannot be canceled; a made-up id is refused before any request
    ended = _marquee(["retrain", "--cancel", run_id, "--reason", "once more"], env)
    assert ended.returncode == 1
    assert "has already ended failed" in ended.stderr
    bad = _marquee(["retrain", "--cancel", "../state", "--reason", "once more"], env)
    assert bad.returncode == 2 and "is not a run id" in bad.stderr


def test_the_runbooks_name_the_cancel_command() -> None:
    """What ClickThroughDrop and ModelDataDrift tell on-call to do is a real command."""
    for name in ("ClickThroughDrop.md", "ModelDataDrift.md", "TrainingServingSkew.md"):
        text = (RUNBOOKS / name).read_text()
        assert "marquee retrain --cancel <run> --reason" in text, name


class _KfpClient:
    """FAKE ``kfp.Client`` (no Kubeflow here): a submitted run stays RUNNING until
    ``terminate_run``, then reports CANCELED, as Kubeflow does."""

    def __init__(self) -> None:
        self.terminated: list[str] = []
        self.submitted = threading.Event()

    def create_run_from_pipeline_func(self, func, arguments, run_name, experiment_name):  # noqa: ANN001, ANN201
        self.submitted.set()
        return SimpleNamespace(run_id="kfp-1")

    def get_run(self, run_id: str) -> SimpleNamespace:
        state = "CANCELED" if run_id in self.terminated else "RUNNING"
        return SimpleNamespace(run_id=run_id, state=state, error=None)

    def terminate_run(self, run_id: str) -> dict:
        self.terminated.append(run_id)
        return {}


def test_cancel_terminates_the_kubeflow_run(tmp_path: Path) -> None:
    from monitoring.retrain.models import CancelRequest  # new with the cancel

    settings = Settings(home=tmp_path / "home")
    client = _KfpClient()
    rolled: list[str] = []
    launcher = KubeflowLauncher(settings, client=client, poll_seconds=0.05)
    trig = RetrainTrigger(StateStore(tmp_path / "state"), launcher,
                          default_model=settings.model_name,
                          after_run=lambda run: rolled.append(run.run_id)).start()
    try:
        decision = trig.handle_manual(ManualRequest(reason="drift on region"))
        assert decision.started
        wait_until(lambda: trig.store.load_run(decision.run_id).pipeline_run_id == "kfp-1",
                   timeout=60, what="the run submitted")
        canceled = trig.cancel(decision.run_id, CancelRequest(reason="broken logging",
                                                              requested_by="oncall"))
        assert canceled.decision.value == "canceled"
        assert client.terminated == ["kfp-1"]
        assert trig.wait_idle(timeout=60)
    finally:
        trig.close(timeout=5)
    run = trig.store.load_run(decision.run_id)
    assert run.status is RunStatus.FAILED
    assert "canceled by oncall: broken logging" in (run.error or "")
    assert "ended CANCELED" in (run.error or "")
    assert rolled == []


@pytest.fixture()
def alertmanager(tmp_path: Path) -> Iterator[str]:
    with alertmanager_at(tmp_path) as url:
        yield url


def test_incidents_shows_the_namespace_the_runbooks_commands_take(
        tmp_path: Path, alertmanager: str) -> None:
    """DriftJobStale: 'the alert's namespace label names where'; every runbook command takes
    `--namespace <the release's namespace>` / `kubectl -n`: `marquee incidents` shows it."""
    now = datetime.now(timezone.utc).isoformat()
    alerts = [{"labels": {"alertname": "DriftJobStale", "severity": "warning",
                          "retrain": "false", "model": "movie-recommender",
                          "namespace": "marquee-staging"},
               "annotations": {"summary": "The drift check has never completed."},
               "startsAt": now}]
    httpx.post(f"{alertmanager}/api/v2/alerts", json=alerts).raise_for_status()
    wait_until(lambda: len(httpx.get(f"{alertmanager}/api/v2/alerts").json()) == 1,
               timeout=10, what="alert visible")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update({"MARQUEE_HOME": str(tmp_path / "home"), "COLUMNS": "300",
                "MARQUEE_ALERTMANAGER_URL": alertmanager,
                "MARQUEE_RETRAIN_URL": f"http://127.0.0.1:{free_port()}"})
    out = _marquee(["incidents"], env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "DriftJobStale" in out.stdout
    assert "namespace=marquee-staging" in out.stdout


@pytest.mark.parametrize("doc", ["docs/DEPLOY.md", "monitoring/runbooks/ModelDataDrift.md"])
def test_the_token_file_is_private_before_the_token_is_written(doc: str, tmp_path: Path) -> None:
    """The docs' lines that save the trigger's token, run by bash as written (kubectl's
    output given by a stand-in): the file holds the token and is never readable by others
    while the token goes in (under the common umask 022, a file the redirect creates is)."""
    text = (REPO / doc).read_text()
    lines = [x.split("  #")[0] for x in text.splitlines()
             if ".marquee-retrain-token" in x and not x.lstrip().startswith(("#", "export"))]
    assert any("kubectl" in x for x in lines), lines
    script = "\n".join([
        "umask 022",
        # kubectl prints the Secret's base64 value; base64 -d runs once the redirect has
        # opened the file: note the file's mode when the token is written
        "kubectl() { printf 'czNjcmV0'; }",
        'base64() { cat >/dev/null; stat -c %a "$HOME/.marquee-retrain-token" '
        '> "$HOME/mode-when-written"; printf s3cret; }',
        "set -e", *lines])
    out = subprocess.run(["bash", "-c", script], env={**os.environ, "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / ".marquee-retrain-token").read_text() == "s3cret"
    assert (tmp_path / "mode-when-written").read_text().strip() == "600"
    assert oct((tmp_path / ".marquee-retrain-token").stat().st_mode & 0o777) == "0o600"


class _UnstoppableLauncher:
    """A launcher of the PipelineLauncher protocol without ``stop`` (a custom one): its run
    waits for ``release`` and then succeeds."""

    name = "unstoppable"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def launch(self, request):  # noqa: ANN001, ANN201
        from monitoring.retrain.launcher import LaunchResult

        self.started.set()
        self.release.wait(timeout=60)
        return LaunchResult(pipeline_run_id="p-1", model_version="2", gate_decision="candidate")


def test_a_refused_cancel_leaves_the_run_alone(tmp_path: Path) -> None:
    """A launcher that cannot stop a run refuses the cancel (409). The cancel used to be
    recorded before that refusal: the run then went on and was still marked canceled, failed,
    and its version not rolled out."""
    from monitoring.errors import RunNotCancelableError
    from monitoring.retrain.models import CancelRequest

    launcher = _UnstoppableLauncher()
    rolled: list[str] = []
    trig = RetrainTrigger(StateStore(tmp_path / "state"), launcher,
                          default_model="movie-recommender",
                          after_run=lambda run: rolled.append(run.run_id)).start()
    try:
        decision = trig.handle_manual(ManualRequest(reason="drift on region"))
        assert decision.started and launcher.started.wait(timeout=60)
        with pytest.raises(RunNotCancelableError, match="cannot stop a run"):
            trig.cancel(decision.run_id, CancelRequest(reason="broken logging"))
        launcher.release.set()
        assert trig.wait_idle(timeout=60)
    finally:
        trig.close(timeout=5)
    run = trig.store.load_run(decision.run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert rolled == [decision.run_id]
