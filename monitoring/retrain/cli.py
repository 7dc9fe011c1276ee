"""``marquee trigger`` (the webhook service), ``marquee retrain`` and ``marquee incidents``.

``marquee retrain --reason TEXT`` asks the running trigger (``MARQUEE_RETRAIN_URL``) so that
on-call requests and alerts share one decision path. Without a token, or with no trigger
answering there, it starts nothing and says so: a dropped port-forward must not turn into a
training on the on-call engineer's machine beside the cluster's. ``--local`` takes the same
decision in this process instead, against the state under ``<home>/retrain``, and runs the
pipeline in the foreground. ``marquee retrain --cancel RUN --reason TEXT`` asks the trigger to
stop its run in flight (nothing it trained is rolled out).
"""

from __future__ import annotations

import logging
import sys
from typing import Optional

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from marquee.errors import MarqueeError, error_text, unwind_on_sigterm
from marquee.settings import Settings
from monitoring.errors import MonitoringError, MonitoringInputError
from monitoring.retrain.config import TriggerSettings, make_trigger, state_dir
from monitoring.retrain.models import (
    CancelRequest,
    Decision,
    ManualRequest,
    RunRecord,
    RunStatus,
)
from monitoring.retrain.state import StateStore
from monitoring.retrain.trigger import RUN_ID

__all__ = ["trigger", "retrain", "incidents"]

EXIT_REFUSED = 1


def _fail(console: Console, exc: MarqueeError) -> None:
    """Print the error and exit: 2 for bad input (MonitoringInputError), else 1."""
    typer.secho(f"error: {exc.message}", fg="red", err=True)
    raise SystemExit(getattr(exc, "exit_code", 1))


def trigger(
    port: Optional[int] = typer.Option(None, help="Port (default MARQUEE_RETRAIN_PORT, 8095)."),
    launcher: Optional[str] = typer.Option(
        None, help="kfp-local | kubeflow | command (default MARQUEE_RETRAIN_LAUNCHER, auto)."),
    log_level: str = typer.Option("info", help="Log level."),
) -> None:
    """Run the Alertmanager retrain webhook on settings.bind_host."""
    import uvicorn

    from monitoring.retrain.app import create_app

    console = Console(stderr=True)
    settings = Settings()
    overrides = {k: v for k, v in {"port": port, "launcher": launcher}.items() if v is not None}
    # before the trigger starts: it logs what it finds in its state (a corrupt file) then
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        ts = TriggerSettings(**overrides)
        token = ts.read_token()
        trig = make_trigger(settings, ts).start()
    except MarqueeError as exc:
        _fail(console, exc)
    rollout = (f"shadow rollout of candidates via {ts.router_url}"
               if ts.auto_rollout == "shadow" else "no automatic rollout")
    console.print(f"retrain trigger on http://{settings.bind_host}:{ts.port} "
                  f"(launcher {trig.launcher.name}, cooldown {ts.cooldown_seconds:.0f}s, "
                  f"{rollout}, state {state_dir(settings)})")
    # uvicorn re-raises SIGTERM once it has shut down; with the default handler the process
    # would die there, before the `finally` that stops what the trigger started (candidate
    # model servers, rollout controllers)
    unwind_on_sigterm()
    try:
        uvicorn.run(create_app(trig, token), host=settings.bind_host, port=ts.port,
                    log_level=log_level.lower(), access_log=False)
    finally:
        trig.close(timeout=5)


def _print_decision(console: Console, d: Decision) -> None:
    colour = "green" if d.started else "yellow"
    console.print(f"[{colour}]{d.decision.value}[/{colour}]: {escape(d.detail)}")


def _retrain_through_trigger(console: Console, ts: TriggerSettings,
                             req: ManualRequest | CancelRequest, cancel: str | None = None
                             ) -> None:
    """Ask the trigger at ``ts.url`` to start a run (or to cancel run ``cancel``); without a
    token or an answer, change nothing and exit."""
    nothing = "nothing was canceled" if cancel else \
        "nothing was started (--local decides and trains on this machine instead)"
    try:
        token = ts.read_token()
    except MonitoringInputError as exc:
        typer.secho(f"error: {exc.message}: the trigger at {ts.url} needs it; {nothing}",
                    fg="red", err=True)
        raise SystemExit(2) from None
    try:
        decision = _ask_service(ts.url, token, req, cancel)
    except (httpx.ConnectError, httpx.ConnectTimeout):
        typer.secho(f"error: no trigger answers at {ts.url} (MARQUEE_RETRAIN_URL; a "
                    f"port-forward down?); {nothing}", fg="red", err=True)
        raise SystemExit(1) from None
    except httpx.InvalidURL as exc:
        typer.secho(f"error: --url / MARQUEE_RETRAIN_URL {ts.url!r} is not a valid URL "
                    f"({exc}); {nothing}", fg="red", err=True)
        raise SystemExit(2) from None
    except httpx.HTTPError as exc:
        # connected, then no answer (a timeout, a port-forward whose pod went away): the
        # request may have reached the trigger, so whether it acted is not known here
        what = "canceled the run" if cancel else "started a run"
        typer.secho(f"error: the trigger at {ts.url} did not answer ({type(exc).__name__}: "
                    f"{error_text(exc)}); it may or may not have {what}: check `marquee "
                    "incidents`", fg="red", err=True)
        raise SystemExit(1) from None
    except MarqueeError as exc:
        _fail(console, exc)
    _print_decision(console, decision)
    if cancel:
        return
    if not decision.started:
        raise SystemExit(EXIT_REFUSED)
    console.print(f"follow it with `marquee incidents` (run {decision.run_id})")


def retrain(
    reason: str = typer.Option(..., "--reason", "-r", help="Why (recorded with the run)."),
    model: Optional[str] = typer.Option(None, help="Registered model (default settings)."),
    force: bool = typer.Option(False, help="Skip the cooldown (never the one-run limit)."),
    url: Optional[str] = typer.Option(None, help="Trigger URL (default MARQUEE_RETRAIN_URL)."),
    local: bool = typer.Option(
        False, "--local", help="Decide and train in this process (state under "
        "<home>/retrain, this machine's settings, no automatic rollout) instead of asking "
        "the trigger."),
    cancel: Optional[str] = typer.Option(
        None, "--cancel", metavar="RUN", help="Instead of starting a run, stop the trigger's "
        "run in flight RUN (from `marquee incidents`): it ends failed with --reason, and "
        "nothing it trained is rolled out."),
) -> None:
    """Start a retraining run through the trigger's decision path (or cancel one)."""
    console = Console()
    settings = Settings()
    try:
        if cancel is not None and (local or force or model):
            raise ValueError("--cancel takes only --reason (and --url): it stops the "
                             "trigger's run, with no --local, --force or --model")
        if cancel is not None and not RUN_ID.fullmatch(cancel):
            raise ValueError(f"--cancel: {cancel!r} is not a run id (like "
                             "rt-20260101T000000Z-0a1b2c, as `marquee incidents` lists them)")
        ts = TriggerSettings(**({"url": url} if url else {}))
        req = CancelRequest(reason=reason, requested_by=_whoami()) if cancel is not None \
            else ManualRequest(reason=reason, model=model, force=force,
                               requested_by=_whoami())
    except (MarqueeError, ValueError) as exc:
        typer.secho(f"error: {error_text(exc)}", fg="red", err=True)
        raise SystemExit(2) from None

    if not local:
        _retrain_through_trigger(console, ts, req, cancel)
        return
    assert isinstance(req, ManualRequest)
    console.print(f"[yellow]--local: deciding in this process (state "
                  f"{state_dir(settings)})[/yellow]")
    try:
        # no automatic rollout from this short-lived process: it could not keep the
        # candidate's server and the rollout controller running after it exits
        trig = make_trigger(settings, ts, after_run=False).start()
    except MarqueeError as exc:
        _fail(console, exc)
    try:
        try:
            decision = trig.handle_manual(req)
        except MarqueeError as exc:  # e.g. an unreadable state file (StateCorruptError)
            _fail(console, exc)
        _print_decision(console, decision)
        if not decision.started:
            raise SystemExit(EXIT_REFUSED)
        with console.status(f"run {decision.run_id}: training ({trig.launcher.name})…"):
            trig.wait_idle()
        run = trig.store.load_run(decision.run_id or "")
    finally:
        trig.close(timeout=5)
    _print_run(console, run)
    if run.status is not RunStatus.SUCCEEDED:
        raise SystemExit(1)
    if run.gate_decision == "candidate" and run.model_version:
        console.print(f"version {run.model_version} passed the gate; roll it out with "
                      f"`marquee rollout start --strategy shadow --candidate "
                      f"{run.model_version}` (the trigger service does this by itself)")


def _whoami() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _ask_service(url: str, token: str, req: ManualRequest | CancelRequest,
                 cancel: str | None = None) -> Decision:
    from urllib.parse import quote

    path = f"/runs/{quote(cancel, safe='')}/cancel" if cancel is not None else "/retrain"
    resp = httpx.post(url.rstrip("/") + path, json=req.model_dump(mode="json"),
                      headers={"Authorization": f"Bearer {token}"},
                      timeout=90.0 if cancel is not None else 10.0)  # a cancel waits for the stop
    if cancel is not None and resp.status_code == 202:
        return Decision.model_validate(resp.json())
    if cancel is None and resp.status_code in (202, 409):
        return Decision.model_validate(resp.json())
    raise MonitoringError(_refusal(url, resp))


def _refusal(url: str, resp: httpx.Response) -> str:
    """What a trigger that answered with an error said: its ``message``, else the body."""
    try:
        message = resp.json().get("message", resp.text)
    except (ValueError, AttributeError):  # not JSON, or JSON that is not an object
        message = resp.text
    return f"trigger at {url} answered {resp.status_code}: {message}"


def _print_run(console: Console, run: RunRecord) -> None:
    colour = "green" if run.status is RunStatus.SUCCEEDED else "red"
    console.print(f"run {escape(run.run_id)}: [{colour}]{run.status.value}[/{colour}]"
                  + (f", version {escape(run.model_version)}" if run.model_version else "")
                  + (f", gate {escape(run.gate_decision)}" if run.gate_decision else "")
                  + (f" — {escape(run.error)}" if run.error else ""))


def incidents(
    alertmanager_url: Optional[str] = typer.Option(
        None, help="Alertmanager (default settings.alertmanager_url)."),
    limit: int = typer.Option(10, min=1, max=200, help="Recent runs and decisions to show."),
    all_alerts: bool = typer.Option(False, "--all", help="Include silenced and inhibited."),
) -> None:
    """List firing alerts (with runbook links) and recent retraining runs."""
    from monitoring.retrain.incidents import fetch_alerts, render_incidents

    console = Console()
    settings = Settings()
    am = alertmanager_url or settings.alertmanager_url
    alerts = None
    if am:
        try:
            alerts = fetch_alerts(am, include_suppressed=all_alerts)
            source = am
        except MarqueeError as exc:
            source = f"unavailable: {exc.message}"
    else:
        source = "no Alertmanager configured (MARQUEE_ALERTMANAGER_URL)"

    runs, decisions, problem, runs_source = _recent(settings, limit)
    render_incidents(console, alerts, runs, decisions, source, runs_source)
    if problem is not None:  # the trigger can decide nothing: that is an incident too
        typer.secho(f"error: {problem}", fg="red", err=True)
    if (am and alerts is None) or problem is not None:
        raise SystemExit(1)


def _recent(settings: Settings, limit: int
            ) -> tuple[list[RunRecord], list[Decision], str | None, str]:
    """Runs, decisions, why the trigger cannot decide (an unreadable state file) and where
    the runs come from: the running trigger when it answers, else the local state (said in
    the table's title, so that a port-forward that dropped does not read as "no run
    started"). A trigger that answers but refuses (a wrong token, an error) is a problem
    too: the local runs shown instead are this machine's, not the trigger's."""
    ts = TriggerSettings()
    refused = None
    local_because = f"no trigger answers at {ts.url}"
    try:
        token = ts.read_token()
        base, auth = ts.url.rstrip("/"), {"Authorization": f"Bearer {token}"}
        resp = httpx.get(base + "/runs", params={"limit": limit}, headers=auth, timeout=5.0)
        if resp.status_code == 200:
            try:
                body = resp.json()
                runs = [RunRecord.model_validate(r) for r in body["runs"]]
                decisions = [Decision.model_validate(d) for d in body["decisions"]]
            except (ValueError, TypeError, KeyError) as exc:  # not the trigger's /runs
                refused = (f"{ts.url} answered 200 with no runs and decisions in it "
                           f"({error_text(exc)}): is it the retrain trigger?")
            else:
                ready = httpx.get(base + "/readyz", timeout=5.0)
                problem = None if ready.status_code == 200 else \
                    f"trigger at {ts.url} is not ready: {ready.json().get('reason', ready.text)}"
                return runs, decisions, problem, f"from the trigger at {ts.url}"
        else:
            refused = _refusal(ts.url, resp)
    except MarqueeError:  # no token to ask the trigger with
        local_because = "no trigger token (MARQUEE_RETRAIN_TOKEN[_FILE])"
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, KeyError, AttributeError):
        pass
    store = StateStore(state_dir(settings))
    problem = store.problem()
    if refused is not None:
        problem = (f"{refused}; the runs and decisions shown are this machine's "
                   f"({store.root}), not the trigger's") + (f"; {problem}" if problem else "")
    return (store.runs(limit), store.decisions(limit), problem,
            f"this machine's, in {store.root}: {local_because}")
