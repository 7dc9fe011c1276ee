"""The parts the closed loop adds, each on its own (fast; no training, no model server):
the automatic shadow rollout's decisions, the trigger's after-run step, the local Prometheus
and Alertmanager configuration derived from the repository's files, the router's upstream
registration, the drift reference in the pipeline's long layout, and the drift injector."""

from __future__ import annotations

import json
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from monitoring.retrain.models import DecisionKind, RunRecord, RunStatus
from tests.conftest import free_port, require_binary

MODEL = "movie-recommender"


def run_record(**kw: object) -> RunRecord:
    base = dict(run_id="rt-1", model=MODEL, reason="drift", source="webhook",
                status=RunStatus.SUCCEEDED, requested_at=datetime.now(timezone.utc),
                model_version="2", gate_decision="candidate")
    return RunRecord(**{**base, **kw})


def auto(tmp_path: Path, **kw: object):  # noqa: ANN201
    from monitoring.retrain.rollout import AutoRollout

    opts = dict(home=tmp_path, model_name=MODEL,
                router_url=f"http://127.0.0.1:{free_port()}")  # nobody listens there
    return AutoRollout(**{**opts, **kw})


# --- the automatic shadow rollout ---------------------------------------------------------------
@pytest.mark.parametrize(("run", "mode", "why"), [
    ({}, "none", "MARQUEE_RETRAIN_AUTO_ROLLOUT=none"),
    ({"model": "other-model"}, "shadow", "the router serves movie-recommender"),
    ({"gate_decision": "rejected"}, "shadow", "gate decision rejected"),
    ({"gate_decision": "promoted-first", "model_version": "1"}, "shadow",
     "already production"),
    ({"gate_decision": None}, "shadow", "no gate decision"),
])
def test_nothing_to_roll_out_is_recorded_as_skipped(tmp_path: Path, run: dict, mode: str,
                                                    why: str) -> None:
    d = auto(tmp_path, mode=mode)(run_record(**run))
    assert d.decision is DecisionKind.ROLLOUT_SKIPPED and d.source == "auto-rollout"
    assert why in d.detail and d.run_id == "rt-1"
    assert not (tmp_path / "rollouts").exists()


def test_unreachable_router_fails_the_rollout_not_the_run(tmp_path: Path) -> None:
    step = auto(tmp_path)
    run = run_record()
    d = step(run)
    assert d.decision is DecisionKind.ROLLOUT_FAILED
    assert "unreachable" in d.detail and step.router_url in d.detail
    assert run.rollout is None and step.children == []  # no server was started


def test_a_bad_rollout_override_is_refused_before_anything_starts(tmp_path: Path) -> None:
    d = auto(tmp_path, spec_overrides={"shadow": {"minRequest": 5}})(run_record())
    assert d.decision is DecisionKind.ROLLOUT_FAILED
    assert "spec.shadow.minRequest" in d.detail


def test_rollout_document_keeps_what_is_rolled_out() -> None:
    from monitoring.retrain.rollout import rollout_document
    from serving.rollout.spec import parse_rollout

    doc = rollout_document(MODEL, "7", {"strategy": "canary", "candidate": {"version": "1"},
                                        "intervalSeconds": 2, "shadow": {"minRequests": 50},
                                        "steps": [{"weight": 50}, {"weight": 100}]})
    r = parse_rollout(doc)
    assert (r.name, r.spec.strategy, r.spec.candidate.version) == ("retrain-shadow-v7",
                                                                   "shadow", "7")
    assert str(r.spec.baseline) == "@production" and r.spec.interval_seconds == 2
    assert r.spec.shadow.min_requests == 50 and r.spec.shadow.promote_to == "canary"
    assert [s.weight for s in r.spec.steps] == [50, 100]


class CandidateLauncher:
    name = "fake"

    def launch(self, request):  # noqa: ANN001, ANN201
        from monitoring.retrain.launcher import LaunchResult

        return LaunchResult(pipeline_run_id="p-1", model_version="2", gate_decision="candidate")


def test_trigger_runs_the_after_run_step_and_logs_its_decision(tmp_path: Path) -> None:
    from monitoring.retrain.models import ManualRequest
    from monitoring.retrain.state import StateStore
    from monitoring.retrain.trigger import RetrainTrigger

    seen: list[RunRecord] = []
    in_flight_then: list[object] = []

    def after(run: RunRecord):  # noqa: ANN202
        in_flight_then.append(store.read().in_flight)
        seen.append(run)
        run.rollout = "retrain-shadow-v2"
        from monitoring.retrain.models import Decision

        return Decision(time=datetime.now(timezone.utc), decision=DecisionKind.ROLLOUT_STARTED,
                        source="auto-rollout", model=run.model, run_id=run.run_id,
                        detail="started")

    store = StateStore(tmp_path / "retrain")
    trig = RetrainTrigger(store, CandidateLauncher(), default_model=MODEL,
                          after_run=after).start()
    try:
        started = trig.handle_manual(ManualRequest(reason="fresh data"))
        assert trig.wait_idle(timeout=10)
    finally:
        trig.close(timeout=5)
    assert [r.gate_decision for r in seen] == ["candidate"]
    assert in_flight_then == [None]  # the slot is free while the rollout starts
    kinds = [(d.decision.value, d.source) for d in store.decisions()]
    assert kinds == [("started", "manual"), ("rollout-started", "auto-rollout")]
    run = store.load_run(started.run_id or "")
    assert run.status is RunStatus.SUCCEEDED and run.rollout == "retrain-shadow-v2"


def test_a_crashing_after_run_step_is_recorded_and_the_run_stays_succeeded(
        tmp_path: Path) -> None:
    from monitoring.retrain.models import ManualRequest
    from monitoring.retrain.state import StateStore
    from monitoring.retrain.trigger import RetrainTrigger

    def after(run: RunRecord):  # noqa: ANN202
        raise OSError("disk full")

    store = StateStore(tmp_path / "retrain")
    trig = RetrainTrigger(store, CandidateLauncher(), default_model=MODEL,
                          after_run=after).start()
    try:
        started = trig.handle_manual(ManualRequest(reason="fresh data"))
        assert trig.wait_idle(timeout=10)
    finally:
        trig.close(timeout=5)
    last = store.decisions()[-1]
    assert last.decision is DecisionKind.ROLLOUT_FAILED and "disk full" in last.detail
    assert store.load_run(started.run_id or "").status is RunStatus.SUCCEEDED


def test_trigger_settings_default_to_a_shadow_rollout(monkeypatch: pytest.MonkeyPatch) -> None:
    from monitoring.retrain.config import TriggerSettings

    monkeypatch.delenv("MARQUEE_RETRAIN_AUTO_ROLLOUT", raising=False)
    assert TriggerSettings().auto_rollout == "shadow"
    monkeypatch.setenv("MARQUEE_RETRAIN_AUTO_ROLLOUT", "none")
    monkeypatch.setenv("MARQUEE_RETRAIN_ROLLOUT_SPEC", '{"intervalSeconds": 5}')
    ts = TriggerSettings()
    assert ts.auto_rollout == "none" and ts.rollout_spec == {"intervalSeconds": 5}


# --- Prometheus and Alertmanager for one machine -------------------------------------------------
def test_local_alertmanager_config_keeps_the_routes_and_points_receivers_here(
        tmp_path: Path) -> None:
    from monitoring.loop.configs import ALERTMANAGER_CONFIG, alertmanager_yaml

    amtool = require_binary("amtool")
    text = alertmanager_yaml("http://127.0.0.1:1234", tmp_path / "token",
                             "http://127.0.0.1:5678/oncall")
    cfg, original = yaml.safe_load(text), yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    assert cfg["inhibit_rules"] == original["inhibit_rules"]
    retrain = next(r for r in cfg["route"]["routes"] if r["receiver"] == "retrain-trigger")
    assert retrain["group_wait"] == "0s" and cfg["route"]["group_wait"] == "0s"
    assert retrain["matchers"] == ['retrain="true"'] and retrain["group_by"] == ["namespace", "model"]
    hooks = {r["name"]: r["webhook_configs"][0] for r in cfg["receivers"]}
    assert hooks["retrain-trigger"]["url"] == "http://127.0.0.1:1234/webhook"
    assert hooks["retrain-trigger"]["http_config"]["authorization"] == {
        "type": "Bearer", "credentials_file": str(tmp_path / "token")}
    assert hooks["oncall"]["url"] == "http://127.0.0.1:5678/oncall"
    (tmp_path / "token").write_text("t")
    path = tmp_path / "am.yml"
    path.write_text(text)
    out = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}",
                          "alertname=ModelDataDrift", "retrain=true", "model=" + MODEL],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "retrain-trigger,oncall", out.stdout + out.stderr


def test_rules_are_the_repository_file_unless_a_for_is_shortened(tmp_path: Path) -> None:
    from monitoring.loop.configs import ALERT_RULES, prometheus_yaml, rules_yaml

    promtool = require_binary("promtool")
    assert rules_yaml() == ALERT_RULES.read_text()
    short = yaml.safe_load(rules_yaml({"ClickThroughDrop": "5s"}))
    full = yaml.safe_load(ALERT_RULES.read_text())
    rules = {r["alert"]: r for g in short["groups"] for r in g["rules"]}
    before = {r["alert"]: r for g in full["groups"] for r in g["rules"]}
    assert rules["ClickThroughDrop"]["for"] == "5s"
    assert {k: v for k, v in rules.items() if k != "ClickThroughDrop"} == {
        k: v for k, v in before.items() if k != "ClickThroughDrop"}
    with pytest.raises(KeyError, match="NoSuchAlert"):
        rules_yaml({"NoSuchAlert": "1s"})
    (tmp_path / "rules.yaml").write_text(rules_yaml({"ClickThroughDrop": "5s"}))
    (tmp_path / "prometheus.yml").write_text(prometheus_yaml(
        {"drift": "127.0.0.1:1", "router": "127.0.0.1:2"}, "127.0.0.1:3",
        tmp_path / "rules.yaml"))
    out = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_oncall_sink_records_notifications() -> None:
    from monitoring.loop.oncall import OncallSink

    sink = OncallSink().start()
    try:
        httpx.post(sink.url, json={"alerts": [{"labels": {"alertname": "X"}}]}).raise_for_status()
        assert [a["labels"]["alertname"] for a in sink.alerts()] == ["X"]
    finally:
        sink.stop()


# --- the router learns where a new version's server is ------------------------------------------
def test_router_registers_an_upstream_for_a_version_started_later() -> None:
    from starlette.testclient import TestClient

    from serving.router.app import create_app
    from serving.router.settings import RouterSettings

    def server(request: httpx.Request) -> httpx.Response:
        inst = json.loads(request.content)["instances"][0]
        return httpx.Response(200, json={"predictions": [{
            "user_id": inst["user_id"], "items": [1, 2], "scores": [0.9, 0.8],
            "model_version": request.url.host, "request_id": "r"}]})

    settings = RouterSettings(upstreams={"1": "http://v1.test"}, baseline_version="1")
    with TestClient(create_app(settings, transport=httpx.MockTransport(server))) as c:
        refused = c.put("/admin/routing", json={"baseline": {"version": "2"}})
        assert refused.status_code >= 400 and "version" in refused.text
        bad = c.put("/admin/upstreams", json={"version": "2", "url": "not a url"})
        assert bad.status_code in (400, 422) and "url" in bad.json()["error"]
        ok = c.put("/admin/upstreams", json={"version": "2", "url": "http://v2.test/"})
        assert ok.status_code == 200 and ok.json() == {"1": "http://v1.test",
                                                       "2": "http://v2.test"}
        assert c.put("/admin/routing", json={"baseline": {"version": "2"}}).status_code == 200
        r = c.post("/recommend", json={"user_id": 3, "k": 2})
        assert r.status_code == 200 and r.json()["model_version"] == "v2.test"
        assert c.get("/admin/upstreams").json()["2"] == "http://v2.test"


# --- the drift reference in the pipeline's long layout ------------------------------------------
def long_predictions(users: int = 5, k: int = 4) -> pd.DataFrame:
    rows = []
    for u in range(1, users + 1):
        for rank in range(k, 0, -1):  # written in reverse on purpose
            rows.append({"user_id": u, "item_id": u * 100 + rank, "score": 1.0 / rank + u,
                         "rank": rank, "popularity": 3, "genres": "Drama"})
    return pd.DataFrame(rows)


def test_long_predictions_become_rank_ordered_lists() -> None:
    from monitoring.reference import predictions_as_lists

    lists = predictions_as_lists(pa.Table.from_pandas(long_predictions()))
    assert lists.column_names == ["user_id", "items", "scores"]
    assert lists.column("user_id").to_pylist() == [1, 2, 3, 4, 5]
    assert lists.column("items").to_pylist()[1] == [201, 202, 203, 204]
    scores = lists.column("scores").to_pylist()
    assert all(s == sorted(s, reverse=True) for s in scores)
    listed = pa.table({"items": [[1, 2]], "scores": [[0.5, 0.4]]})
    assert predictions_as_lists(listed) is listed
    with pytest.raises(Exception, match="user_id, item_id"):
        predictions_as_lists(pa.table({"x": [1]}))


def test_reference_lists_are_weighted_by_user_activity() -> None:
    from monitoring.reference import predictions_as_lists

    lists = predictions_as_lists(pa.Table.from_pandas(long_predictions()),
                                 activity={1: 0, 2: 1, 3: 0, 4: 3, 5: 0}, rows=4000)
    users = np.asarray(lists.column("user_id").to_pylist())
    assert set(users) == {2, 4}
    assert 0.7 < (users == 4).mean() < 0.8  # 3 of 4 requests come from user 4


# --- the drift injector -------------------------------------------------------------------------
def test_population_events_replay_a_segment_at_their_own_times() -> None:
    from monitoring.loop.traffic import Population

    users = pd.DataFrame({"user_id": [1, 2, 3], "age_bucket": ["18-24", "35-44", "18-24"],
                          "gender": ["F", "M", "M"], "occupation": ["student", "lawyer", "x"],
                          "region": ["US-1"] * 3})
    hold = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [10, 11, 20, 30],
                         "timestamp": [100, 200, 300, 400]})
    pop = Population(users, hold)
    assert pop.share({"occupation": ["student"]}) == 0.5
    events = pop.events({"age_bucket": ["18-24"]}, seed=3)
    assert sorted((e.user_id, e.ts) for e in events) == [(1, 100.0), (1, 200.0), (3, 400.0)]
    assert next(e for e in events if e.user_id == 1).future == frozenset({10, 11})
    assert len(pop.events()) == 4


def test_replayer_switches_population_while_running() -> None:
    """Against a stand-in router: every request carries the event's time as context.ts."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from monitoring.loop.traffic import Event, Replayer

    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if self.path == "/recommend":
                seen.append(body)
                out = {"request_id": "r", "items": [7, 8], "model_version": "1"}
                code = 200
            else:
                out, code = {}, 202
            data = json.dumps(out).encode()
            self.send_response(code)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        rep = Replayer(url, [Event(1, 1000.0, frozenset({7}))], rate=40).start()
        from tests.conftest import wait_until

        wait_until(lambda: len(seen) >= 5, timeout=10, what="normal requests")
        rep.switch([Event(2, 2000.0, frozenset())], "drift")
        wait_until(lambda: any(b["user_id"] == 2 for b in seen), timeout=10,
                   what="drifted requests")
        report = rep.stop()
    finally:
        server.shutdown()
    assert {(b["user_id"], b["context"]["ts"]) for b in seen} == {(1, 1000.0), (2, 2000.0)}
    assert report.errors == 0 and report.clicked_by_version["1"] >= 5
    assert [p for p, _ in rep.phases] == ["normal", "drift"]
