"""``marquee rollout``: start, watch, promote, abort and review rollouts.

    marquee rollout start -f rollout.yaml            # create it and run the controller
    marquee rollout start --strategy canary --candidate 2
    marquee rollout status [NAME]                     # phase, step, weights, metrics, decisions
    marquee rollout promote NAME | abort NAME         # picked up at the controller's next tick
    marquee rollout history NAME                      # every decision with its statistics
    marquee rollout report NAME [-o FILE]             # the same as one HTML page with a chart
    marquee rollout run NAME                          # (re)start the controller of a rollout
                                                      # (local; in Kubernetes: `controller`)
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
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from serving.rollout.display import usable, utc

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
    except ValueError as exc:  # a name the file store refuses ("a/b", ".x"): one line too
        raise _fail(f"{exc} (see `marquee rollout status`)") from None


def _get_status(store: StatusStore, name: str) -> Any:
    """A rollout's status alone, its spec not parsed (``_get``'s errors otherwise)."""
    from serving.rollout.store import RolloutNotFound, RolloutUnreadable

    try:
        return store.get_status(name)
    except RolloutNotFound:
        raise _fail(f"no rollout named {name!r} (see `marquee rollout status`)") from None
    except RolloutUnreadable as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:
        raise _fail(f"{exc} (see `marquee rollout status`)") from None


def _log_in_utc() -> None:
    """Log lines stamped in UTC and saying so, as the decisions are (``basicConfig``: a
    process that configured logging already keeps its own)."""
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s",
                                  "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)


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
    _log_in_utc()
    admin, source = _admin_and_source(settings, router_url, replicas)
    registry = MarqueeRegistry(settings.resolved_registry_uri,
                               _get(store, name).rollout.spec.model_name,
                               create=settings.registry_uri is None)
    controller = Controller(store, name, source, admin, registry)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    seen: list[Any] = [0, None]  # decisions shown, and the time of the last one shown

    def show(status: RolloutStatus) -> None:
        ds, first = status.decisions, seen[0]
        if 0 < first <= len(ds) and ds[first - 1].time != seen[1]:
            first -= 1  # the last one shown was folded into a newer "not yet" (×repeats)
        for d in ds[first:]:
            rep = d.statistics.get("repeats")
            typer.echo(f"{utc(d.time, '%H:%M:%SZ')} {d.phase.value:<11} step {d.step} "
                       f"{d.outcome.value + (f' ×{rep}' if rep else ''):<12} {d.reason}")
        seen[:] = [len(ds), ds[-1].time if ds else None]

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


def _version_ref(ref: str) -> dict[str, str]:
    """``--baseline``, ``--candidate``: a registry version number, else an alias
    (``@production`` too)."""
    return {"version": ref} if ref.isdigit() else {"alias": ref.removeprefix("@")}


@app.command()
def start(
    file: Annotated[Path | None, typer.Option("-f", "--file", help="ModelRollout YAML.")] = None,
    strategy: Annotated[str | None, typer.Option(
        help="shadow, canary, ab or interleave (instead of -f).")] = None,
    candidate: Annotated[str | None, typer.Option(
        help="Candidate version or alias (needed with --strategy; with -f it replaces the "
        "file's).")] = None,
    baseline: Annotated[str | None, typer.Option(
        help="Baseline version or alias (default: the production alias; with -f it replaces "
        "the file's).")] = None,
    name: Annotated[str | None, typer.Option(help="Rollout name (default from the file).")] = None,
    interval: Annotated[float | None, typer.Option(help="Analysis interval, seconds.")] = None,
    detach: Annotated[bool, typer.Option(help="Only create it; run the controller elsewhere.")] = False,
    router: RouterOpt = DEFAULT_ROUTER,
    router_replicas: ReplicasOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Create a rollout (from a file or flags) and run its controller until it ends. Refused
    while another rollout of the same model is active. With --namespace: --detach (the
    cluster's controller runs it)."""
    from serving.rollout.spec import SpecError, load_rollout, parse_rollout
    from serving.rollout.store import RolloutExists, RolloutNotFound, rollout_in_the_way

    if (file is None) == (strategy is None):
        raise typer.BadParameter("give either -f rollout.yaml or --strategy with --candidate",
                                 param_hint="-f / --strategy")
    if file is None and candidate is None:
        raise typer.BadParameter("--strategy needs --candidate VERSION",
                                 param_hint="--candidate")
    if namespace and not detach:
        # The cluster's controller (the chart's Deployment, elected by its Lease) runs every
        # ModelRollout of the namespace; a second one here, outside the election, would act
        # beside it (routing, aliases).
        raise typer.BadParameter(
            "the cluster's rollout controller runs the rollout: add --detach (only create "
            f"it), then follow it with `marquee rollout status NAME --namespace {namespace}`",
            param_hint="--namespace without --detach")
    try:
        if file is not None:
            rollout = load_rollout(file)
        else:
            doc: dict[str, Any] = {
                "apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
                "metadata": {"name": name or f"{strategy}-v{candidate.removeprefix('@')}"},
                "spec": {"baseline": _version_ref(baseline or "production"),
                         "candidate": _version_ref(candidate), "strategy": strategy}}
            rollout = parse_rollout(doc, "flags")
        # Flags given with -f replace the file's values (none is silently ignored).
        if name or interval is not None or (file is not None and (candidate or baseline)):
            body = rollout.model_dump(by_alias=True, exclude_none=True, mode="json")
            if name:
                body["metadata"]["name"] = name
            if interval is not None:  # 0 too: the spec refuses it, it is not "not given"
                body["spec"]["intervalSeconds"] = interval
            if candidate is not None:
                body["spec"]["candidate"] = _version_ref(candidate)
            if baseline is not None:
                body["spec"]["baseline"] = _version_ref(baseline)
            rollout = parse_rollout(body, "flags")
    except SpecError as exc:
        from marquee.errors import error_text

        raise _fail(error_text(exc)) from None  # one line, a YAML parser's message too
    store = _store(namespace)
    try:
        store.get(rollout.name)
    except RolloutNotFound:  # a new rollout: none of its model may be running
        other = rollout_in_the_way(store, rollout.spec.model_name)
        if other is not None:
            # a local rollout left by a stopped controller ends only when one ticks it again
            unattended = "" if namespace else (
                f" (with no controller running it, `marquee rollout run {other.name}` then "
                f"applies the abort)")
            raise _fail(f"rollout {other.name} of model {rollout.spec.model_name} is "
                        f"{other.status.phase.value}; one rollout of a model at a time: wait "
                        f"for it to end or `marquee rollout abort {other.name}`{unattended}, "
                        f"then start {rollout.name}") from None
    except Exception:  # noqa: BLE001 - an unreadable one is reported below, by name
        pass
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
    port: Annotated[int, typer.Option(min=1, max=65535,
                                      help="Port of /healthz, /readyz and /metrics.")] = 8080,
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
    _log_in_utc()
    store = _store(namespace)
    held = None
    if isinstance(store, FileStatusStore):  # no leader election here: one process per store
        try:
            held = store.manager_lock().__enter__()
        except ControllerBusy as exc:
            raise _fail(f"{exc}: another `marquee rollout controller` runs these "
                        "rollouts") from None
    try:
        admin, source = _admin_and_source(settings, router, router_replicas)
        leader = _leader_lease(namespace, lease)
        registries: dict[str, MarqueeRegistry] = {}

        def registry(model_name: str) -> MarqueeRegistry:  # each rollout's own model
            if model_name not in registries:
                registries[model_name] = MarqueeRegistry(
                    settings.resolved_registry_uri, model_name,
                    create=settings.registry_uri is None)
            return registries[model_name]

        manager = RolloutManager(store, source, admin, registry,
                                 leading=leader.leading if leader is not None else None)
        bind = host or settings.bind_host
        try:
            health = serve_health(bind, port, lambda: manager.ready,
                                  lambda: manager.alive(stall_seconds))
        except OSError as exc:  # the port is taken, or the address is not this machine's
            admin.close()
            raise _fail(f"cannot serve /healthz on {bind}:{port}: "
                        f"{exc.strerror or exc}") from None
    except BaseException:
        if held is not None:  # not left locked for whoever runs the store next
            held.__exit__(None, None, None)
        raise
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
    """Run (or resume after a restart) the controller of an existing rollout (a local
    store; in Kubernetes the cluster's `marquee rollout controller` runs every rollout)."""
    if namespace:
        raise typer.BadParameter(
            "in Kubernetes the cluster's rollout controller runs every ModelRollout of the "
            f"namespace; run it with `marquee rollout controller --namespace {namespace}` "
            "(it takes the leader Lease, so it never acts beside another replica)",
            param_hint="--namespace")
    store = _store(namespace)
    _get(store, name)
    final = _run_controller(store, name, router, router_replicas)
    typer.echo(f"rollout {name}: {final.phase.value}: {final.message}")
    if final.phase.value in ("RolledBack", "Failed"):
        raise typer.Exit(code=1)


def _num(x: Any, unit: str = "", signed: bool = False) -> str:
    """A figure for the table: ``n/a`` when it is missing or not a finite number (a rollout
    that has not ticked, a check that could not be measured, a status edited by hand)."""
    if not usable(x):
        return "n/a"
    return (str(x) if isinstance(x, int) and not signed else f"{x:{'+' if signed else ''}.4g}"
            ) + unit


def _figures(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """What the last analysis measured, per strategy: shadow agreement, both variants'
    traffic, the A/B mSPRT and SRM, the interleaving wins (rows of plain text)."""
    rows: list[tuple[str, str]] = []
    if stats.get("metricsUnavailable"):
        rows.append(("metrics", f"unavailable: {stats['metricsUnavailable']}"))
    checks = stats.get("checks")
    checks = checks if isinstance(checks, dict) else {}  # free-form JSON: maybe not an object
    shown = [f"{k} {_num(v)}" + (f" (95% {_num(checks[k + 'Interval'][0])}.."
                                  f"{_num(checks[k + 'Interval'][1])})"
                                  if isinstance(checks.get(k + "Interval"), list)
                                  and len(checks[k + "Interval"]) == 2 else "")
             for k, v in checks.items() if not k.endswith(("Skipped", "Interval"))]
    if shown:
        rows.append(("metrics", ", ".join(shown)))
    sh = stats.get("shadow")
    if isinstance(sh, dict):
        rows.append(("mirrored", f"{_num(sh.get('mirrored'))} (errors {_num(sh.get('errors'))}"
                                 f", dropped {_num(sh.get('dropped'))})"))
        rows.append(("agreement", f"top-k overlap {_num(sh.get('topk_overlap_mean'))}, RBO "
                                  f"{_num(sh.get('rbo_mean'))}, Kendall tau "
                                  f"{_num(sh.get('kendall_tau_mean'))}"))
        rows.append(("latency p99", f"candidate {_num(sh.get('latency_p99_ms'), ' ms')} · "
                                    f"baseline {_num(sh.get('baseline_latency_p99_ms'), ' ms')}"))
    for variant in ("baseline", "candidate"):
        v = stats.get(variant)
        if isinstance(v, dict):
            rows.append((variant, f"{_num(v.get('requests'))} requests, {_num(v.get('errors'))} "
                                  f"errors (rate {_num(v.get('errorRate'))}), p99 "
                                  f"{_num(v.get('latencyP99Ms'), ' ms')}, CTR "
                                  f"{_num(v.get('clickThroughRate'))} "
                                  f"({_num(v.get('clickedExposures'))}/"
                                  f"{_num(v.get('exposures'))} lists), users "
                                  f"{_num(v.get('users'))}"))
    srm = stats.get("srm")
    if isinstance(srm, dict):
        rows.append(("srm", f"p {_num(srm.get('p_value'))}, chi2 {_num(srm.get('chi2'))}"
                            + (" MISMATCH" if srm.get("mismatch") else "")))
    m = stats.get("msprt")
    if isinstance(m, dict):
        rows.append(("msprt", f"CTR candidate {_num(m.get('rate_b'))} vs baseline "
                              f"{_num(m.get('rate_a'))}, difference "
                              f"{_num(m.get('difference'), signed=True)} "
                              f"in [{_num(m.get('ci_low'), signed=True)}, "
                              f"{_num(m.get('ci_high'), signed=True)}], "
                              f"always-valid p {_num(m.get('p_value'))} "
                              f"(alpha {_num(m.get('alpha'))}, unit {m.get('unit', 'n/a')})"))
    il = stats.get("interleave")
    if isinstance(il, dict):
        rows.append(("interleave", f"{_num(il.get('impressions'))} lists: candidate wins "
                                   f"{_num(il.get('candidate_wins'))}, baseline wins "
                                   f"{_num(il.get('baseline_wins'))}, ties "
                                   f"{_num(il.get('ties'))}"))
    st = stats.get("signTest")
    if isinstance(st, dict):
        rows.append(("signTest", f"candidate share {_num(st.get('share_b'))} of "
                                 f"{_num(st.get('n'))}, always-valid p {_num(st.get('p_value'))}"
                                 f" (alpha {_num(st.get('alpha'))})"))
    window = _window(stats.get("window"))
    if window:
        rows.append(("window", window))
    return rows


def _window(w: Any) -> str | None:
    """The analysis window as UTC times (None when it holds no usable pair of unix seconds:
    missing, not numbers, or out of the range a date can hold)."""
    if not isinstance(w, dict) or not (usable(w.get("since")) and usable(w.get("until"))):
        return None
    try:
        since = datetime.fromtimestamp(w["since"], timezone.utc)
        until = datetime.fromtimestamp(w["until"], timezone.utc)
    except (OverflowError, OSError, ValueError):  # e.g. -1e308: no such date
        return None
    return f"{utc(since)} → {utc(until)} UTC ({_num(w['until'] - w['since'], ' s')})"


def _status_table(name: str, stored: Any) -> Any:
    from rich.markup import escape
    from rich.table import Table

    s, spec = stored.status, stored.rollout.spec
    t = Table(title=escape(f"rollout {name}"), show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    t.add_row("strategy", spec.strategy)
    t.add_row("versions", escape(f"baseline {s.baseline_version or spec.baseline} → candidate "
                                 f"{s.candidate_version or spec.candidate}"))
    t.add_row("phase", s.phase.value)
    t.add_row("step", f"{s.step}/{len(spec.steps)}" if spec.steps else str(s.step))
    t.add_row("weights", f"baseline {s.weights.baseline}% · candidate {s.weights.candidate}%"
              + (" (decided; NOT applied)" if s.routing_error else ""))
    if s.routing_error:
        t.add_row("routing", escape(f"not applied: {s.routing_error}"))
    t.add_row("failed checks", f"{s.failed_checks}/{spec.analysis.failure_limit}")
    last = s.last_decision
    if last is not None:
        t.add_row("last analysis", f"{utc(last.time)} UTC")
        for field, value in _figures(last.statistics):
            t.add_row(field, escape(value))
    t.add_row("message", escape(s.message))
    return t


def _decisions_table(name: str, decisions: list[Any], title: str) -> Any:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title))
    for col in ("time (UTC)", "phase", "step", "outcome", "reason"):
        t.add_column(col)
    colour = {"Successful": "green", "Failed": "red", "Inconclusive": "yellow"}
    for d in decisions:
        rep = d.statistics.get("repeats")
        t.add_row(utc(d.time), d.phase.value, str(d.step),
                  f"[{colour[d.outcome.value]}]{d.outcome.value}[/]"
                  + (escape(f" ×{rep}") if rep else ""),  # hand-edited: may hold "[/]"
                  escape(d.reason))
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
    from rich.markup import escape

    store = _store(namespace)
    names = [name] if name else store.list()
    # One unreadable rollout is its own error line (exit 1 at the end): the others are shown.
    # One whose spec is refused (edited by hand: the controller froze it) is shown from its
    # status alone, after its error line: on call needs its phase, weights and message.
    readable: dict[str, Any] = {}
    statuses: dict[str, Any] = {}
    for n in names:
        try:
            readable[n] = _get(store, n)
            statuses[n] = readable[n].status
        except typer.Exit as failed:
            try:
                statuses[n] = store.get_status(n)
            except Exception:  # noqa: BLE001 - unreadable too: its error line is printed
                if name:
                    raise failed from None
    end = typer.Exit(code=1) if len(readable) < len(names) else None
    if output == "json":
        # the table's pending command too (a script polls for an abort it asked for)
        typer.echo(json.dumps({n: {**status.to_dict(), "pendingCommand": store.pending_command(n)}
                               for n, status in statuses.items()}, indent=2))
    else:
        console = Console()
        if not names:
            console.print("no rollouts")
        for n, status in statuses.items():
            if n in readable:
                console.print(_status_table(n, readable[n]))
            else:
                console.print(escape(f"rollout {n}: phase {status.phase.value}, weights "
                                     f"baseline {status.weights.baseline}% · candidate "
                                     f"{status.weights.candidate}%; {status.message}"),
                              highlight=False)
            console.print(_decisions_table(n, status.decisions[-5:], "last decisions"))
            pending = store.pending_command(n)
            if pending:
                console.print(f"pending command: [bold]{pending}[/] (next controller tick)")
    if end is not None:
        raise end


@app.command()
def history(name: str, output: Annotated[OutputFormat, typer.Option(
                "-o", "--output", help="table or json.")] = "table",
            namespace: NamespaceOpt = None) -> None:
    """Every decision of a rollout, with its statistics in JSON output."""
    from rich.console import Console

    status = _get_status(_store(namespace), name)  # no spec needed: shown when it is refused
    if output == "json":
        typer.echo(json.dumps(status.to_dict()["decisions"], indent=2))
        return
    Console().print(_decisions_table(name, status.decisions, f"rollout {name}: decisions"))


@app.command()
def report(name: str, output: Annotated[str | None, typer.Option(
               "-o", "--output", help="HTML file to write (default rollout-NAME.html here; "
               "- for stdout).")] = None,
           namespace: NamespaceOpt = None) -> None:
    """A rollout as one self-contained HTML page: the candidate's traffic over time, each
    analysis with its statistics, every decision."""
    from marquee.durable import write_text_atomic
    from serving.rollout.report import report_html
    from serving.rollout.store import ROLLOUT_UNUSABLE

    store = _store(namespace)
    status = _get_status(store, name)  # no spec needed: a frozen rollout is reported too
    spec, refused = None, None
    try:
        spec = store.get(name).rollout.spec
    except ROLLOUT_UNUSABLE as exc:  # the spec no longer parses: said on the page
        refused = str(exc)
    page = report_html(name, status, spec, spec_error=refused,
                       pending_command=store.pending_command(name))
    # character references for what is not ASCII: the same page whatever the locale, on
    # stdout too (a latin-1 or cp1252 stdout cannot encode the page's arrows, and would not
    # write the UTF-8 its <meta charset> declares)
    page = page.encode("ascii", "xmlcharrefreplace").decode("ascii")
    if output == "-":
        typer.echo(page, nl=False)
        return
    path = Path(output or f"rollout-{name}.html")
    try:
        write_text_atomic(path, page)
    except OSError as exc:  # a directory, no permission, a full disk: the old file stays
        raise _fail(f"cannot write {path}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {path} (rollout {name}: {status.phase.value}, "
               f"{len(status.decisions)} decisions)")


def _command(name: str, command: str, namespace: str | None) -> None:
    from serving.rollout.status import Phase

    store = _store(namespace)
    # an abort needs no spec: it also stops a rollout whose spec was edited into one the
    # controller refuses (frozen); a promote does (the spec names the model whose aliases move)
    status = _get(store, name).status if command == "promote" else _get_status(store, name)
    if status.phase.terminal:
        raise _fail(f"rollout {name} already ended ({status.phase.value})")
    if command == "promote" and status.phase == Phase.PENDING:
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
    """Roll back: all traffic to the baseline, aliases restored. Also ends a rollout frozen
    on a spec the controller refuses (it needs only the status)."""
    _command(name, "abort", namespace)
