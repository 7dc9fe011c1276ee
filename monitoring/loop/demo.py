"""The whole loop on one machine, step by step, for ``marquee demo``.

train → serve → replay traffic → inject drift → drift check → alert (Prometheus and
Alertmanager when installed, else the same webhook posted directly) → retrain → shadow →
canary → promote, then an HTML report. Every process is started through
:class:`~monitoring.loop.stack.LoopStack` and stopped at the end, also on Ctrl-C.

What each step shows comes from the part that owns it: the registry (versions, gate
decisions), the drift job's JSON summaries, Prometheus and Alertmanager (alert times), the
retrain trigger's decision log and run record, the rollout's persisted status (decisions with
their statistics), and the router's exposure and feedback logs (click-through per version).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from marquee.settings import Settings
from monitoring.drift.summary import worst_first
from monitoring.loop.procs import marquee_cmd, poll, stop_group
from monitoring.loop.stack import MODEL, LoopStack, find_binary

__all__ = ["DemoOptions", "DemoRecord", "run_demo", "direct_alert", "DEMO_ROLLOUT"]

#: The automatic rollout as the demo runs it: short intervals and sample sizes so that shadow,
#: canary and promotion fit in a minute at a modest request rate; the guardrails are the
#: production ones (errors, latency budget relaxed for a shared machine, click-through ratio).
DEMO_ROLLOUT: dict[str, Any] = {
    "intervalSeconds": 2,
    "shadow": {"sampleRate": 1.0, "minRequests": 60, "promoteTo": "canary"},
    "steps": [{"weight": 25}, {"weight": 50}, {"weight": 100}],
    "analysis": {"failureLimit": 2, "minRequests": 20,
                 "metrics": [{"name": "errorRate", "max": 0.05},
                             {"name": "latencyP99Ms", "max": 1000},
                             {"name": "clickThroughRatio", "min": 0.5}]},
    "limits": {"maxDurationSeconds": 900},
}


#: The model the demo trains: the full multi-stage recommender (two-tower retrieval, LightGBM
#: ranker, re-ranking), smaller than the defaults so that it trains twice (first version, then
#: the retrain on the alert), each after a short Optuna search around it, within the demo's
#: few minutes.
DEMO_CONFIG = json.dumps({
    "retrieval": {"epochs": 3, "dim": 32, "batch_size": 256, "history_len": 30},
    "ranker": {"enabled": True, "folds": 1, "n_estimators": 100}})


@dataclass
class DemoOptions:
    source: str = "movielens-100k"
    config: dict[str, Any] = field(default_factory=lambda: json.loads(DEMO_CONFIG))
    n_trials: int = 2
    tune_timeout_seconds: int = 90
    rate: float = 20.0
    segment: dict[str, list[str]] = field(default_factory=lambda: {"occupation": ["student"]})
    drift_window_seconds: int = 30
    drift_every_seconds: float = 2.0
    alerting: str = "auto"  # auto | prometheus | direct
    cooldown_seconds: float = 30.0
    rollout_spec: dict[str, Any] = field(default_factory=lambda: json.loads(
        json.dumps(DEMO_ROLLOUT)))
    timeout_seconds: float = 900.0  # any single wait


@dataclass
class DemoRecord:
    """Everything the report shows."""

    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    stamp: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ"))
    home: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    mode: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    baseline_version: str = ""
    new_version: str | None = None
    versions: list[dict[str, Any]] = field(default_factory=list)
    drift: dict[str, Any] = field(default_factory=dict)  # "normal" / "drifted" summaries
    alert: dict[str, Any] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    run: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    traffic: dict[str, Any] = field(default_factory=dict)
    services: list[dict[str, Any]] = field(default_factory=list)
    oncall: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcome: str = "incomplete"
    wall_seconds: float = 0.0


class DemoFailed(RuntimeError):
    pass


def direct_alert(summary: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The Alertmanager (v4) notification of ModelDataDrift for a drift check's summary, with
    the labels and annotations ``monitoring/prometheus/alerts.yaml`` gives it."""
    share = summary.get("drift_share", 0.0)
    version = str(summary.get("model_version", ""))
    starts = now or datetime.now(timezone.utc)
    labels = {"alertname": "ModelDataDrift", "severity": "warning", "retrain": "true",
              "model": MODEL, "model_version": version}
    fp = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    drifted = ", ".join(summary.get("drifted_features", []))
    annotations = {
        "summary": f"Serving data drifted from the training data of model version {version}: "
                   f"{share:.0%} of features drifted.",
        "description": f"The drift check found {share:.0%} of the monitored features drifted "
                       f"(threshold {summary.get('drift_share_threshold', 0):.0%}): {drifted}. "
                       "A retraining run has been requested automatically (retrain=true).",
        "runbook_url": "https://github.com/marquee-mlops/marquee/blob/main/monitoring/runbooks/"
                       "ModelDataDrift.md"}
    alert = {"status": "firing", "labels": labels, "annotations": annotations,
             "startsAt": starts.isoformat(), "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "marquee demo (no Prometheus)", "fingerprint": fp}
    return {"version": "4", "groupKey": '{}/{retrain="true"}:{model="%s"}' % MODEL,
            "truncatedAlerts": 0, "status": "firing", "receiver": "retrain-trigger",
            "groupLabels": {"model": MODEL}, "commonLabels": labels,
            "commonAnnotations": annotations, "externalURL": "", "alerts": [alert]}


class Demo:
    def __init__(self, settings: Settings, options: DemoOptions, console: Console) -> None:
        self.settings, self.opt, self.console = settings, options, console
        self.rec = DemoRecord(home=str(settings.home.resolve()))
        self.out_dir = settings.home.resolve() / "demo" / self.rec.stamp
        self.t0 = time.monotonic()
        self.n_steps = 9
        self.step_no = 0

    # presentation ---------------------------------------------------------------------------
    def _elapsed(self) -> str:
        return f"{time.monotonic() - self.t0:5.0f}s"

    @contextmanager
    def step(self, title: str) -> Iterator[dict[str, Any]]:
        self.step_no += 1
        self.console.rule(f"[bold]{self.step_no}/{self.n_steps}  {title}")
        entry: dict[str, Any] = {"step": title, "start_s": round(time.monotonic() - self.t0, 1)}
        t = time.monotonic()
        try:
            yield entry
        finally:
            entry["seconds"] = round(time.monotonic() - t, 1)
            self.rec.steps.append(entry)

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{self._elapsed()}[/dim]  {text}", highlight=False)

    def wait(self, what: str, check: Callable[[], Any], timeout: float | None = None,
             interval: float = 0.5) -> Any:
        with self.console.status(f"{what}…"):
            return poll(check, timeout=timeout or self.opt.timeout_seconds, interval=interval,
                        what=what)

    # pieces -----------------------------------------------------------------------------------
    def _state_env(self) -> dict[str, str]:
        """Where the demo's registry and store are, for every process it starts: the loop's
        have no other ``MARQUEE_*`` (:func:`~monitoring.loop.procs.clean_env`), so with
        ``MARQUEE_REGISTRY_URI`` set the first version was trained into that registry and
        then looked up by the model server in the home's ("no version 1")."""
        return {f"MARQUEE_{name.upper()}": value
                for name in ("registry_uri", "store_uri", "s3_endpoint_url")
                if (value := getattr(self.settings, name))}

    def registry(self):  # noqa: ANN201
        from marquee.registry import Registry

        return Registry(self.settings.resolved_registry_uri, self.settings.model_name)

    def _train(self) -> tuple[str, str]:
        """A first version (production) through the training pipeline, as a child process."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log = self.out_dir / "train.log"
        cmd = marquee_cmd("pipeline", "run", "--source", self.opt.source, "--n-trials",
                          str(self.opt.n_trials), "--config-json", json.dumps(self.opt.config),
                          "--param", f"tune_timeout_seconds={self.opt.tune_timeout_seconds}")
        env = {**os.environ, **self._state_env(),
               "MARQUEE_HOME": str(self.settings.home.resolve()),
               "COLUMNS": "120"}
        with open(log, "wb") as fh, self.console.status(
                "training pipeline (kfp.local): ingest → validate → split → features → tune → "
                f"train → evaluate → register  (log {escape(str(log))})"):
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout=self.opt.timeout_seconds)
            except BaseException:
                stop_group(proc)  # the pipeline's running step too
                raise
        if code != 0:
            raise DemoFailed(f"the training pipeline failed (exit {code}); see {log}:\n"
                             + log.read_text(errors="replace")[-2000:])
        prod = self.registry().get_alias("production")
        if prod is None:
            raise DemoFailed(f"training finished but no production version; see {log}")
        return str(prod.version), prod.tags.get("pipeline_run_id", "")

    def _drift_check(self, since: float, label: str) -> dict[str, Any] | None:
        """One published ``marquee drift check`` over [since, now) against production."""
        cmd = marquee_cmd("drift", "check", "--bundle", "production", "--since", f"{since:.3f}",
                          "--evidently", "never", "--no-embeddings", "--json")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                             env={**self.stack.env(), "COLUMNS": "120"})
        if out.returncode not in (0, 3):
            self.say(f"[yellow]drift check ({label}) failed (exit {out.returncode}): "
                     f"{escape(out.stdout[-300:] + out.stderr[-300:])}[/yellow]")
            return None
        summary = json.loads(out.stdout)
        self.rec.drift[label] = summary
        drifted = summary["drifted_features"]
        colour = "red" if summary["drift_detected"] else "green"
        self.say(f"drift check on the {label} window ({summary['window']['rows']} requests): "
                 f"[{colour}]{'drift' if summary['drift_detected'] else 'no drift'}[/{colour}] — "
                 f"{len(drifted)}/{len(summary['features'])} features drifted "
                 f"(share {summary['drift_share']:.0%}, alert at "
                 f"{summary['drift_share_threshold']:.0%})")
        top = sorted(summary["features"], key=lambda f: worst_first(
            f["drifted"], f["method"], f["score"], f["threshold"]))[:6]
        t = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
        for col in ("feature", "method", "score", "threshold", ""):
            t.add_column(col)
        for f in top:
            t.add_row(f["name"], f["method"],
                      "n/a" if f["score"] is None else f"{f['score']:.3f}",
                      f"{f['threshold']:g}", "[red]DRIFT[/red]" if f["drifted"] else "")
        for p in summary["prediction"]:
            if not p.get("skipped") and p.get("score") is not None:
                t.add_row(f"prediction {p['name']}", p["method"], f"{p['score']:.3f}",
                          f"{p['threshold']:g}", "[red]DRIFT[/red]" if p["drifted"] else "")
        self.console.print(t)
        if summary.get("outputs", {}).get("report_html"):
            self.say(f"report {escape(summary['outputs']['report_html'])}")
        return summary

    def _post_alert_directly(self, trigger_url: str, summary: dict[str, Any] | None) -> str:
        """Without Prometheus/Alertmanager: the ModelDataDrift notification, as Alertmanager
        would send it, to the trigger's webhook (same path, same token)."""
        body = direct_alert(summary or {})
        r = httpx.post(f"{trigger_url}/webhook", json=body, timeout=10, trust_env=False,
                       headers={"Authorization": f"Bearer {self.stack.token}"})
        r.raise_for_status()
        alert = body["alerts"][0]
        self.rec.alert.update({"alertname": "ModelDataDrift", "labels": alert["labels"],
                               "summary": alert["annotations"]["summary"],
                               "runbook_url": alert["annotations"]["runbook_url"],
                               "fired_at": alert["startsAt"], "via": "direct webhook"})
        return str(alert["startsAt"])

    def _record_decisions(self) -> None:
        from monitoring.loop.waits import decisions

        since = self.rec.started
        self.rec.decisions = [d.model_dump(mode="json") for d in decisions(self.settings.home)
                              if d.time >= since]

    # the scenario -----------------------------------------------------------------------------
    def run(self) -> DemoRecord:
        from monitoring.loop.traffic import Population, Replayer

        opt, rec = self.opt, self.rec
        rec.machine = {"host": socket.gethostname(), "cpus": os.cpu_count(),
                       "python": platform.python_version(), "platform": platform.platform(),
                       "load_average_start": [round(x, 2) for x in os.getloadavg()]}
        prom_ok = find_binary("prometheus") is not None and find_binary("alertmanager") is not None
        if opt.alerting == "prometheus" and not prom_ok:
            raise DemoFailed("prometheus/alertmanager are not installed "
                             "(scripts/install-sysdeps.sh)")
        rec.mode = "prometheus" if opt.alerting != "direct" and prom_ok else "direct"

        with self.step("train: the first version (or production from an earlier run)") as st:
            prod = self.registry().get_alias("production")
            run_id = prod.tags.get("pipeline_run_id", "") if prod else ""
            if prod is not None and (self.settings.runs_dir / run_id).is_dir():
                version = str(prod.version)
                self.say(f"production is version {version} (from an earlier run); "
                         "it is the baseline this time")
                st["trained"] = False
            else:
                version, run_id = self._train()
                st["trained"] = True
                self.say(f"[green]registered version {version}[/green] as production "
                         f"(pipeline run {run_id})")
            rec.baseline_version = version
            population = Population.from_run(self.settings.runs_dir / run_id)
            self.say(f"replay population: {len(population.users)} users, "
                     f"{len(population.holdout)} held-out events")
            problem = population.segment_problem(opt.segment)
            if problem is not None:  # the drift step would replay nothing and wait for ever
                raise DemoFailed(f"--segment: {problem}")

        with LoopStack(self.settings.home, env={
                **self._state_env(),
                "MARQUEE_GATE_TOLERANCE": str(self.settings.gate_tolerance)}) as stack:
            self.stack = stack
            replayer: Replayer | None = None
            try:
                replayer = self._loop(stack, population, prom_ok)
            finally:
                if replayer is not None:
                    replayer.stop()
                    rec.traffic = replayer.report.summary()
                    rec.traffic["phases"] = [{"phase": p, "at": datetime.fromtimestamp(
                        t, timezone.utc).isoformat()} for p, t in replayer.phases]
                rec.services = [{"name": s.name, "pid": s.pid, "url": s.url,
                                 "ready_seconds": round(s.ready_seconds or 0, 1),
                                 "log": str(s.log_path)} for s in stack.services]
                if stack.oncall is not None:
                    rec.oncall = stack.oncall.alerts()
                self._record_decisions()
                n = len(stack.services)
                with self.console.status(f"stopping {n} processes (and what the trigger "
                                         "started)…"):
                    stack.stop()
                self.say(f"stopped {n} processes")
        rec.machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        rec.wall_seconds = round(time.monotonic() - self.t0, 1)
        return rec

    def _loop(self, stack: LoopStack, population, prom_ok: bool):  # noqa: ANN001, ANN202, C901
        from monitoring.loop.traffic import Replayer
        from monitoring.loop.waits import (
            parse_time,
            wait_alert_firing,
            wait_alertmanager_alert,
            wait_decision,
            wait_prometheus_ready_for_alerts,
        )

        opt, rec = self.opt, self.rec
        base = rec.baseline_version
        with self.step(f"serve: model server of version {base}, router, retrain trigger"
                       + (", Prometheus, Alertmanager" if rec.mode == "prometheus" else "")):
            server = stack.model_server(base)
            stack.ready(server)
            router = stack.router({base: server.url}, baseline=base)
            trigger = stack.trigger(router.url, pipeline_params={
                "source": opt.source, "n_trials": opt.n_trials, "config_json": opt.config,
                "tune_timeout_seconds": opt.tune_timeout_seconds},
                rollout_spec=opt.rollout_spec, cooldown_seconds=opt.cooldown_seconds)
            am = prom = None
            if rec.mode == "prometheus":
                am = stack.alertmanager(trigger.url)
            stack.ready(router, trigger, *([am] if am else []))
            for s in stack.services:
                self.say(f"{s.name:<14} pid {s.pid:<7} {s.url}  (ready in "
                         f"{s.ready_seconds:.1f}s)")
            if rec.mode == "direct":
                self.say("[yellow]Prometheus/Alertmanager not installed "
                         "(scripts/install-sysdeps.sh): the drift check's verdict will be posted "
                         "to the trigger's webhook directly — the same path Alertmanager "
                         "takes[/yellow]")
                rec.notes.append("Prometheus and Alertmanager were not installed: the alert "
                                 "was posted to the retrain webhook directly.")

        with self.step(f"replay traffic: held-out events at {opt.rate:g} requests/s"):
            replayer = Replayer(router.url, population.events(seed=1), rate=opt.rate,
                                keep_lists=True).start()
            normal_from = time.time()
            window = opt.drift_window_seconds
            self.say(f"normal traffic; the drift job starts once a full {window}s window of "
                     "it exists (as the CronJob would find in production)")
            if rec.mode == "prometheus":
                self.wait(f"{window}s of normal traffic",
                          lambda: time.time() - normal_from >= window, timeout=window + 30)
                drift = stack.drift_exporter(since=f"{window}s", every=opt.drift_every_seconds)
                stack.ready(drift)
                assert am is not None
                prom = stack.prometheus({"drift": drift, "router": router, "trigger": trigger},
                                        am)
                stack.ready(prom)
                self.say(f"drift exporter pid {drift.pid} (every {opt.drift_every_seconds:g}s "
                         f"over {window}s); Prometheus pid {prom.pid} {prom.url}")
                self.wait("Prometheus: targets up and Alertmanager listed",
                          lambda: wait_prometheus_ready_for_alerts(
                              prom.url, ["drift", "router", "trigger"], timeout=2) or True,
                          timeout=60)
            else:
                self.wait(f"{window}s of normal traffic",
                          lambda: time.time() - normal_from >= window, timeout=window + 30)
            snap = replayer.report
            self.say(f"{snap.requests} requests, {snap.errors} errors, click-through "
                     + ", ".join(f"v{base} {c:.2f}" for c in snap.ctr_by_version().values()))
            normal = self._drift_check(normal_from, "normal")
            if prom is not None:
                from monitoring.loop.waits import prometheus_alerts

                firing = [a["labels"]["alertname"] for a in prometheus_alerts(prom.url)
                          if a["state"] == "firing"]
                self.say("alerts firing in Prometheus: " + (", ".join(firing) or "none"))
                rec.drift["normal_alerts_firing"] = firing

        with self.step("inject drift: only one segment's users arrive"):
            seg = ", ".join(f"{k} in {v}" for k, v in opt.segment.items())
            drift_from = datetime.now(timezone.utc)
            replayer.switch(population.events(opt.segment, seed=2), "drift")
            self.say(f"traffic now comes only from users with {escape(seg)} "
                     f"({population.share(opt.segment):.0%} of held-out events normally)")
            rec.drift["segment"] = opt.segment

        with self.step("drift check → alert"
                       + (" (Prometheus → Alertmanager → webhook)" if prom else " (direct)")):
            if prom is not None:
                alert = self.wait("ModelDataDrift firing in Prometheus",
                                  lambda: wait_alert_firing(prom.url, "ModelDataDrift",
                                                            timeout=1, after=drift_from),
                                  interval=0.2)
                fired_at = alert["activeAt"]
                assert am is not None
                am_alert = wait_alertmanager_alert(am.url, "ModelDataDrift", timeout=30)
                rec.alert.update({"alertname": "ModelDataDrift", "labels": alert["labels"],
                                  "value": alert["value"],
                                  "summary": alert["annotations"].get("summary", ""),
                                  "description": alert["annotations"].get("description", ""),
                                  "runbook_url": alert["annotations"].get("runbook_url", ""),
                                  "fired_at": fired_at, "alertmanager_starts_at":
                                  am_alert["startsAt"], "via": "Prometheus → Alertmanager",
                                  "drift_to_alert_seconds": round(
                                      (parse_time(fired_at) - drift_from).total_seconds(), 1)})
                self.say(f"[red]ModelDataDrift firing[/red] ({fired_at}): "
                         f"{rec.alert['summary']}")
                self.say(f"Alertmanager startsAt {am_alert['startsAt']}, receivers "
                         + ", ".join(r["name"] for r in am_alert.get("receivers", [])))
            else:
                # a timeout of the window's size: a fixed 120 s failed every window over 240 s
                self.wait("a drifted window", lambda: time.time() - drift_from.timestamp()
                          >= opt.drift_window_seconds / 2,
                          timeout=opt.drift_window_seconds / 2 + 60)
                summary = self._drift_check(drift_from.timestamp(), "drifted")
                if not summary or not summary["drift_detected"]:
                    raise DemoFailed("the drift check did not flag the drifted window")
                fired_at = self._post_alert_directly(trigger.url, summary)
                self.say(f"[red]ModelDataDrift[/red] posted to {trigger.url}/webhook")
            started = self.wait("the trigger's decision", lambda: wait_decision(
                self.settings.home, "started", timeout=1,
                after=parse_time(fired_at).replace(microsecond=0)), interval=0.1)
            delta = (started.time - parse_time(fired_at)).total_seconds()
            rec.alert["pipeline_started_at"] = started.time.isoformat()
            rec.alert["alert_to_pipeline_start_seconds"] = round(delta, 3)
            rec.alert["run_id"] = started.run_id
            self.say(f"[green]retraining run {started.run_id} started[/green] "
                     f"{delta:.2f}s after the alert fired ({started.detail})")
            if prom is not None:
                self._drift_check(drift_from.timestamp(), "drifted")

        with self.step("retrain: the training pipeline through the trigger (kfp.local)"):
            replayer.switch(population.events(seed=3), "normal")
            self.say("the drifted segment's campaign is over: normal traffic again; the "
                     "alert resolves once the drift job's window holds normal traffic only")
            from monitoring.retrain.state import StateStore

            store = StateStore(self.settings.home / "retrain")
            t = time.monotonic()

            def finished():  # noqa: ANN202
                run = store.load_run(started.run_id)
                return run if run.status.value in ("succeeded", "failed") else None

            with self.console.status("") as status:
                def check():  # noqa: ANN202
                    status.update(f"retraining run {started.run_id}: "
                                  f"{time.monotonic() - t:.0f}s (kfp.local; log "
                                  f"{stack.service('trigger').log_path})")
                    return finished()

                run = poll(check, timeout=opt.timeout_seconds, interval=1.0,
                           what=f"run {started.run_id}")
            rec.run = run.model_dump(mode="json")
            if run.status.value != "succeeded":
                raise DemoFailed(f"retraining run {run.run_id} failed: {run.error}")
            info = self.registry().get_version(run.model_version)
            rec.new_version = str(info.version)
            if opt.source.startswith("movielens-100k"):
                rec.notes.append("The retraining run trained on the same MovieLens-100k "
                                 "snapshot (a static dataset), so the new version scores like "
                                 "the old one offline; in production it would include the "
                                 "interactions logged since the last run.")
            g = info.tags
            self.say(f"[green]registered version {info.version}[/green] in "
                     f"{(run.finished_at - run.started_at).total_seconds():.0f}s — gate "
                     f"[bold]{escape(str(run.gate_decision))}[/bold]: NDCG@10 "
                     f"{g.get('gate.candidate_ndcg_at_10', '?')} vs production "
                     f"{g.get('gate.production_ndcg_at_10', '?')}")

        with self.step("shadow → canary → promote: the trigger's automatic rollout"):
            decision = self.wait("the trigger's rollout decision", lambda: wait_decision(
                self.settings.home, ("rollout-started", "rollout-skipped", "rollout-failed"),
                timeout=1, after=started.time, source="auto-rollout"), interval=0.2)
            colour = "green" if decision.decision.value == "rollout-started" else "yellow"
            self.say(f"[{colour}]{decision.decision.value}[/{colour}]: {escape(decision.detail)}")
            if decision.decision.value == "rollout-started":
                self._follow_rollout(f"retrain-shadow-v{rec.new_version}")
            else:
                rec.notes.append(f"no rollout: {decision.detail}")

        with self.step("online quality per model version"):
            time.sleep(2.0)  # a last flush of the router's logs
            self._quality(replayer)
            if prom is not None:
                from monitoring.loop.waits import prometheus_alerts

                states = [a["state"] for a in prometheus_alerts(prom.url)
                          if a["labels"].get("alertname") == "ModelDataDrift"]
                rec.alert["state_at_end"] = states[0] if states else "resolved"
                self.say(f"ModelDataDrift now: {rec.alert['state_at_end']} (the drift job sees "
                         "normal traffic again)")
        with self.step("registry"):
            self._versions()
        return replayer

    def _follow_rollout(self, name: str) -> None:
        from serving.rollout.store import FileStatusStore

        store = FileStatusStore(self.settings.home / "rollouts")
        shown = 0
        deadline = time.monotonic() + self.opt.timeout_seconds
        with self.console.status(f"rollout {name}") as status:
            while True:
                stored = store.get(name)
                s = stored.status
                for d in s.decisions[shown:]:
                    colour = {"Successful": "green", "Failed": "red"}.get(d.outcome.value,
                                                                          "yellow")
                    self.say(f"rollout {d.phase.value:<11} step {d.step} "
                             f"[{colour}]{d.outcome.value:<12}[/{colour}] {escape(d.reason)}")
                shown = len(s.decisions)
                status.update(f"rollout {name}: {s.phase.value}, weights "
                              f"{s.weights.baseline}/{s.weights.candidate}, {escape(s.message)}")
                if s.phase.terminal:
                    break
                if time.monotonic() > deadline:
                    raise DemoFailed(f"rollout {name} did not finish in time ({s.phase.value})")
                time.sleep(0.5)
        self.rec.rollout = {"name": name, "spec": stored.rollout.model_dump(
            by_alias=True, exclude_none=True, mode="json")["spec"], "status": s.to_dict()}
        self.rec.outcome = s.phase.value
        colour = "green" if s.phase.value == "Succeeded" else "red"
        self.say(f"[{colour}]rollout {name}: {s.phase.value}[/{colour}] — {escape(s.message)}")
        if s.phase.value == "Succeeded":
            time.sleep(3.0)  # users on the new production for a moment

    def _quality(self, replayer) -> None:  # noqa: ANN001
        from marquee.store import open_store
        from monitoring.quality import RollingNDCG, click_through_by_version

        store = open_store(self.settings.resolved_store_uri, self.settings.s3_endpoint_url)
        since = f"{self.rec.started.timestamp():.3f}"
        ctr = click_through_by_version(store, since=since)
        ndcg = RollingNDCG(k=10, window=10_000)
        for _user, items, truth, version in list(replayer.report.responses):
            ndcg.add(version, items, truth)
        by_bundle = {v["bundle_version"]: str(v["version"]) for v in self._versions(show=False)}
        rows = {}
        for bundle_version, c in ctr.items():
            rows.setdefault(bundle_version, {}).update(
                {"exposures": c.exposures, "clicked": c.clicked, "ctr": c.ctr,
                 "ctr_interval": c.interval()})
        for bundle_version, q in ndcg.summary().items():
            rows.setdefault(bundle_version, {}).update({"ndcg_at_10": q["ndcg"],
                                                        "ndcg_lists": q["lists"]})
        t = Table(title="online quality (router logs; NDCG@10 on replayed ground truth)")
        for col in ("version", "bundle", "lists served", "click-through", "95% interval",
                    "NDCG@10"):
            t.add_column(col)
        for bundle_version, r in sorted(rows.items()):
            iv = r.get("ctr_interval")
            t.add_row(by_bundle.get(bundle_version, "?"), bundle_version,
                      str(r.get("exposures", "")),
                      f"{r['ctr']:.3f}" if r.get("ctr") is not None else "",
                      f"{iv[0]:.3f}–{iv[1]:.3f}" if iv else "",
                      f"{r['ndcg_at_10']:.4f}" if r.get("ndcg_at_10") is not None else "")
            r["registry_version"] = by_bundle.get(bundle_version)
        self.console.print(t)
        self.rec.quality = rows

    def _versions(self, show: bool = True) -> list[dict[str, Any]]:
        out = []
        for info in self.registry().list_versions():
            bundle = info.bundle_uri.rstrip("/").rsplit("/", 1)[-1]
            out.append({"version": info.version, "aliases": info.aliases,
                        "created": info.created.isoformat(), "bundle_version": bundle,
                        "bundle_uri": info.bundle_uri, "metrics": info.metrics,
                        "gate": info.gate_decision,
                        "gate_candidate_ndcg": info.tags.get("gate.candidate_ndcg_at_10"),
                        "gate_production_ndcg": info.tags.get("gate.production_ndcg_at_10"),
                        "pipeline_run_id": info.tags.get("pipeline_run_id")})
        if show:
            self.rec.versions = out
            t = Table(title=f"registry: {self.settings.model_name}")
            for col in ("version", "aliases", "ndcg@10", "recall@50", "gate", "pipeline run"):
                t.add_column(col)
            for v in out:
                m = v["metrics"]
                t.add_row(str(v["version"]), ",".join(v["aliases"]),
                          f"{m.get('ndcg_at_10', float('nan')):.4f}",
                          f"{m.get('recall_at_50', float('nan')):.4f}", escape(v["gate"] or ""),
                          escape(v["pipeline_run_id"] or ""))
            self.console.print(t)
        return out


def run_demo(settings: Settings, options: DemoOptions, console: Console | None = None
             ) -> tuple[DemoRecord, Path | None, str | None]:
    """Run the loop; returns the record, the local report path and its store URI."""
    from monitoring.loop.report import write_report

    console = console or Console()
    demo = Demo(settings, options, console)
    try:
        demo.run()
    except KeyboardInterrupt:
        demo.rec.outcome = "interrupted"
        demo.rec.notes.append("interrupted (Ctrl-C); every process was stopped")
        console.print("[yellow]interrupted: every process started was stopped[/yellow]")
    except Exception as exc:  # noqa: BLE001 - whatever ended the run, its report is written
        # a registry or store error, a webhook answering 4xx, a bug: the minutes of the run
        # so far are still reported (before, only these three kinds were, and the rest ended
        # in a traceback with no report at all)
        expected = isinstance(exc, (DemoFailed, TimeoutError, RuntimeError))
        what = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        demo.rec.outcome = "failed"
        demo.rec.notes.append(f"failed: {what}")
        console.print(f"[red]demo failed:[/red] {escape(what)}")
        if not expected:
            console.print_exception()
    finally:
        demo.rec.wall_seconds = round(time.monotonic() - demo.t0, 1)
    path, uri = write_report(settings, demo.rec, demo.out_dir)
    return demo.rec, path, uri
