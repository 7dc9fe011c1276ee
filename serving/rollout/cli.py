"""``marquee rollout``: start, watch, promote, abort and review rollouts.

    marquee rollout start -f rollout.yaml            # create it and run the controller
    marquee rollout start --strategy canary --candidate 2
    marquee rollout status [NAME]                     # phase, step, weights, metrics, decisions
    marquee rollout promote NAME | abort NAME         # picked up at the controller's next tick
    marquee rollout history NAME                      # every decision with its statistics
    marquee rollout run NAME                          # (re)start the controller of a rollout
    marquee rollout controller [--namespace NS]       # run every rollout (Kubernetes)

Rollouts live in ``<MARQUEE_HOME>/rollouts`` (or, with ``--namespace``, as ModelRollout objects
in Kubernetes). The controller talks to the router at ``--router`` and reads analysis from
Prometheus when ``MARQUEE_PROMETHEUS_URL`` is set, else from the router's own statistics.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from serving.rollout.status import RolloutStatus
    from serving.rollout.store import StatusStore

__all__ = ["app"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Start, watch, promote and abort rollouts.")

RouterOpt = Annotated[str, typer.Option(
    "--router", envvar="MARQUEE_ROUTER_URL", help="Router URL (admin API).")]
NamespaceOpt = Annotated[str | None, typer.Option(
    "--namespace", help="Keep rollouts as ModelRollout objects in this Kubernetes namespace.")]
ReplicasOpt = Annotated[str | None, typer.Option(
    "--router-replicas", envvar="MARQUEE_ROUTER_REPLICAS_URL",
    help="URL whose host resolves to every router replica (Kubernetes: the router's headless "
    "Service); routing is then applied to each replica.")]
DEFAULT_ROUTER = "http://127.0.0.1:8090"
OutputFormat = Literal["table", "json"]


def _store(namespace: str | None) -> StatusStore:
    from marquee.settings import Settings
    from serving.rollout.store import FileStatusStore, KubernetesStatusStore, load_kube_config

    if namespace:
        from kubernetes import client

        load_kube_config()
        return KubernetesStatusStore(client.CustomObjectsApi(), namespace)
    return FileStatusStore(Settings().home / "rollouts")


def _fail(message: str) -> typer.Exit:
    """A refused operation (no such rollout, one that already ended, a bad spec): one
    ``error:`` line on stderr and exit code 1, as every ``marquee`` command ends one."""
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(code=1)


def _get(store: StatusStore, name: str) -> Any:
    from serving.rollout.spec import SpecError
    from serving.rollout.store import RolloutNotFound, RolloutUnreadable

    try:
        return store.get(name)
    except RolloutNotFound:
        raise _fail(f"no rollout named {name!r} (see `marquee rollout status`)") from None
    except (RolloutUnreadable, SpecError) as exc:  # a damaged or newer file: one line
        raise _fail(str(exc)) from None


def _admin_and_source(settings: Any, router_url: str, replicas: str | None) -> tuple[Any, Any]:
    from serving.rollout.sources import PrometheusSource, RouterAdmin, RouterStatsSource

    admin = RouterAdmin(router_url, replicas_url=replicas)
    if settings.prometheus_url:
        return admin, PrometheusSource(settings.prometheus_url)
    if replicas:
        logging.getLogger("marquee.rollout").warning(
            "several router replicas but no MARQUEE_PROMETHEUS_URL: the analysis reads the "
            "stats of whichever replica %s answers from, not of all", router_url)
    return admin, RouterStatsSource(admin)


def _run_controller(store: StatusStore, name: str, router_url: str,
                    replicas: str | None = None) -> RolloutStatus:
    from marquee.settings import Settings
    from serving.rollout.controller import Controller, MarqueeRegistry
    from serving.rollout.store import ROLLOUT_UNUSABLE, ControllerBusy, FileStatusStore

    settings = Settings()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    admin, source = _admin_and_source(settings, router_url, replicas)
    registry = MarqueeRegistry(settings.resolved_registry_uri,
                               _get(store, name).rollout.spec.model_name)
    controller = Controller(store, name, source, admin, registry)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    seen = [0]

    def show(status: RolloutStatus) -> None:
        for d in status.decisions[seen[0]:]:
            typer.echo(f"{d.time:%H:%M:%S} {d.phase.value:<11} step {d.step} "
                       f"{d.outcome.value:<12} {d.reason}")
        seen[0] = len(status.decisions)

    try:
        if isinstance(store, FileStatusStore):
            with store.lock(name):
                return controller.run(stop, on_tick=show)
        return controller.run(stop, on_tick=show)
    except ControllerBusy as exc:
        raise _fail(f"{exc}: a controller is already running this rollout") from None
    except ROLLOUT_UNUSABLE as exc:  # gone or damaged mid-run
        raise _fail(f"rollout {name}: {exc}") from None
    finally:
        admin.close()


@app.command()
def start(
    file: Annotated[Path | None, typer.Option("-f", "--file", help="ModelRollout YAML.")] = None,
    strategy: Annotated[str | None, typer.Option(
        help="shadow, canary, ab or interleave (instead of -f).")] = None,
    candidate: Annotated[str | None, typer.Option(help="Candidate version (with --strategy).")] = None,
    baseline: Annotated[str, typer.Option(help="Baseline version or alias.")] = "production",
    name: Annotated[str | None, typer.Option(help="Rollout name (default from the file).")] = None,
    interval: Annotated[float | None, typer.Option(help="Analysis interval, seconds.")] = None,
    detach: Annotated[bool, typer.Option(help="Only create it; run the controller elsewhere.")] = False,
    router: RouterOpt = DEFAULT_ROUTER,
    router_replicas: ReplicasOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Create a rollout (from a file or flags) and run its controller until it ends."""
    from serving.rollout.spec import SpecError, load_rollout, parse_rollout
    from serving.rollout.store import RolloutExists

    if (file is None) == (strategy is None):
        raise typer.BadParameter("give either -f rollout.yaml or --strategy with --candidate",
                                 param_hint="-f / --strategy")
    if file is None and candidate is None:
        raise typer.BadParameter("--strategy needs --candidate VERSION",
                                 param_hint="--candidate")
    try:
        if file is not None:
            rollout = load_rollout(file)
        else:
            ref = {"version": baseline} if baseline.isdigit() else {"alias": baseline}
            doc: dict[str, Any] = {
                "apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
                "metadata": {"name": name or f"{strategy}-v{candidate}"},
                "spec": {"baseline": ref, "candidate": {"version": candidate},
                         "strategy": strategy}}
            rollout = parse_rollout(doc, "flags")
        if name or interval is not None:
            body = rollout.model_dump(by_alias=True, exclude_none=True, mode="json")
            if name:
                body["metadata"]["name"] = name
            if interval is not None:  # 0 too: the spec refuses it, it is not "not given"
                body["spec"]["intervalSeconds"] = interval
            rollout = parse_rollout(body, "flags")
    except SpecError as exc:
        from marquee.errors import error_text

        raise _fail(error_text(exc)) from None  # one line, a YAML parser's message too
    store = _store(namespace)
    try:
        store.create(rollout)
        typer.echo(f"rollout {rollout.name} created ({rollout.spec.strategy}, candidate "
                   f"{rollout.spec.candidate}, baseline {rollout.spec.baseline})")
    except RolloutExists:
        current = _get(store, rollout.name)
        if current.status.phase.terminal:
            raise _fail(f"rollout {rollout.name} already ended ({current.status.phase.value}); "
                        "pick another name") from None
        if current.rollout.spec != rollout.spec:
            raise _fail(f"rollout {rollout.name} exists with a different spec") from None
        typer.echo(f"rollout {rollout.name} exists ({current.status.phase.value}): resuming")
    if detach:
        return
    final = _run_controller(store, rollout.name, router, router_replicas)
    typer.echo(f"rollout {rollout.name}: {final.phase.value}: {final.message}")
    if final.phase.value in ("RolledBack", "Failed"):
        raise typer.Exit(code=1)


@app.command()
def controller(
    router: RouterOpt = DEFAULT_ROUTER,
    router_replicas: ReplicasOpt = None,
    namespace: NamespaceOpt = None,
    port: Annotated[int, typer.Option(help="Port of /healthz, /readyz and /metrics.")] = 8080,
    host: Annotated[str | None, typer.Option(help="Bind address (default MARQUEE_BIND_HOST).")] = None,
    lease: Annotated[str | None, typer.Option(
        "--lease", envvar="MARQUEE_ROLLOUT_LEASE",
        help="With --namespace: name of the coordination.k8s.io Lease that elects the one "
        "replica that acts; the others stand by. Empty: no leader election (one replica "
        "only).")] = "marquee-rollout-controller",
    stall_seconds: Annotated[float, typer.Option(
        "--stall-seconds", envvar="MARQUEE_ROLLOUT_STALL_SECONDS", min=1,
        help="/healthz answers 503 when no pass over the rollouts has ended for this long "
        "(a hung call), so the liveness probe restarts the pod; the rollouts resume from "
        "their stored status.")] = 600.0,
) -> None:
    """Run every rollout of the store (the Kubernetes controller's command)."""
    from marquee.settings import Settings
    from serving.rollout.controller import MarqueeRegistry
    from serving.rollout.manager import RolloutManager, serve_health

    from serving.rollout.store import ControllerBusy, FileStatusStore

    settings = Settings()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    store = _store(namespace)
    held = None
    if isinstance(store, FileStatusStore):  # no leader election here: one process per store
        try:
            held = store.manager_lock().__enter__()
        except ControllerBusy as exc:
            raise _fail(f"{exc}: another `marquee rollout controller` runs these "
                        "rollouts") from None
    admin, source = _admin_and_source(settings, router, router_replicas)
    leader = _leader_lease(namespace, lease)
    manager = RolloutManager(store, source, admin,
                             MarqueeRegistry(settings.resolved_registry_uri, settings.model_name),
                             leading=leader.leading if leader is not None else None)
    health = serve_health(host or settings.bind_host, port, lambda: manager.ready,
                          lambda: manager.alive(stall_seconds))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if leader is not None:
        leader.start()
    try:
        manager.run(stop)
    finally:
        if leader is not None:
            leader.stop()  # released: a standby takes over at its next try
        health.shutdown()
        admin.close()
        if held is not None:
            held.__exit__(None, None, None)


def _leader_lease(namespace: str | None, name: str | None) -> Any:
    """The Lease that elects the acting controller replica (Kubernetes only)."""
    if not namespace or not name:
        return None
    from kubernetes import client

    from serving.rollout.lease import LeaderLease
    from serving.rollout.store import load_kube_config

    load_kube_config()
    return LeaderLease(client.CoordinationV1Api(), namespace, name)


@app.command()
def run(name: str, router: RouterOpt = DEFAULT_ROUTER, router_replicas: ReplicasOpt = None,
        namespace: NamespaceOpt = None) -> None:
    """Run (or resume after a restart) the controller of an existing rollout."""
    store = _store(namespace)
    _get(store, name)
    final = _run_controller(store, name, router, router_replicas)
    typer.echo(f"rollout {name}: {final.phase.value}: {final.message}")
    if final.phase.value in ("RolledBack", "Failed"):
        raise typer.Exit(code=1)


def _status_table(name: str, stored: Any) -> Any:
    from rich.table import Table

    s, spec = stored.status, stored.rollout.spec
    t = Table(title=f"rollout {name}", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    t.add_row("strategy", spec.strategy)
    t.add_row("versions", f"baseline {s.baseline_version or spec.baseline} → candidate "
                          f"{s.candidate_version or spec.candidate}")
    t.add_row("phase", s.phase.value)
    t.add_row("step", f"{s.step}/{len(spec.steps)}" if spec.steps else str(s.step))
    t.add_row("weights", f"baseline {s.weights.baseline}% · candidate {s.weights.candidate}%"
              + (" (decided; NOT applied)" if s.routing_error else ""))
    if s.routing_error:
        t.add_row("routing", f"not applied: {s.routing_error}")
    t.add_row("failed checks", f"{s.failed_checks}/{spec.analysis.failure_limit}")
    last = s.last_decision
    if last is not None:
        checks = last.statistics.get("checks") or {}
        shown = {k: v for k, v in checks.items() if isinstance(v, (int, float))}
        if shown:
            t.add_row("metrics", ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
        for key in ("msprt", "signTest", "srm"):
            if key in last.statistics:
                p = last.statistics[key].get("p_value")
                t.add_row(key, f"p {p:.3g}" if isinstance(p, float) else "")
    t.add_row("message", s.message)
    return t


def _decisions_table(name: str, decisions: list[Any], title: str) -> Any:
    from rich.table import Table

    t = Table(title=title)
    for col in ("time", "phase", "step", "outcome", "reason"):
        t.add_column(col)
    colour = {"Successful": "green", "Failed": "red", "Inconclusive": "yellow"}
    for d in decisions:
        rep = d.statistics.get("repeats")
        t.add_row(f"{d.time:%Y-%m-%d %H:%M:%S}", d.phase.value, str(d.step),
                  f"[{colour[d.outcome.value]}]{d.outcome.value}[/]" + (f" ×{rep}" if rep else ""),
                  d.reason)
    return t


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(help="Rollout (default: all).")] = None,
    output: Annotated[OutputFormat, typer.Option("-o", "--output", help="table or json.")
                      ] = "table",
    namespace: NamespaceOpt = None,
) -> None:
    """Phase, step, weights, metrics and the last decisions of a rollout."""
    from rich.console import Console

    store = _store(namespace)
    names = [name] if name else store.list()
    if output == "json":
        typer.echo(json.dumps({n: _get(store, n).status.to_dict() for n in names}, indent=2))
        return
    console = Console()
    if not names:
        console.print("no rollouts")
    for n in names:
        stored = _get(store, n)
        console.print(_status_table(n, stored))
        console.print(_decisions_table(n, stored.status.decisions[-5:], "last decisions"))
        pending = store.pending_command(n)
        if pending:
            console.print(f"pending command: [bold]{pending}[/] (next controller tick)")


@app.command()
def history(name: str, output: Annotated[OutputFormat, typer.Option(
                "-o", "--output", help="table or json.")] = "table",
            namespace: NamespaceOpt = None) -> None:
    """Every decision of a rollout, with its statistics in JSON output."""
    from rich.console import Console

    stored = _get(_store(namespace), name)
    if output == "json":
        typer.echo(json.dumps(stored.status.to_dict()["decisions"], indent=2))
        return
    Console().print(_decisions_table(name, stored.status.decisions, f"rollout {name}: decisions"))


def _command(name: str, command: str, namespace: str | None) -> None:
    from serving.rollout.status import Phase

    store = _store(namespace)
    stored = _get(store, name)
    if stored.status.phase.terminal:
        raise _fail(f"rollout {name} already ended ({stored.status.phase.value})")
    if command == "promote" and stored.status.phase == Phase.PENDING:
        # Nothing is resolved or analysed before the first tick: refused, not queued (the
        # controller would refuse it too, in the status).
        raise _fail(f"rollout {name} has not started yet (Pending: no controller tick so far, "
                    "so no version resolved and nothing analysed); promote once `marquee "
                    f"rollout status {name}` shows it running, or abort it")
    if command == "promote" and store.pending_command(name) == "abort":
        # one pending command per rollout: a promote would silently replace the abort
        raise _fail(f"rollout {name} has an abort pending (the controller applies it at its "
                    "next tick); not replacing it with a promote")
    store.request(name, command)  # type: ignore[arg-type]
    typer.echo(f"{command} requested for {name}; the controller applies it at its next tick")


@app.command()
def promote(name: str, namespace: NamespaceOpt = None) -> None:
    """Promote the candidate now (skips remaining steps; ends a pause). Refused before the
    rollout's first tick (Pending)."""
    _command(name, "promote", namespace)


@app.command()
def abort(name: str, namespace: NamespaceOpt = None) -> None:
    """Roll back: all traffic to the baseline, aliases restored."""
    _command(name, "abort", namespace)
