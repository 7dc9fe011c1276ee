"""Where the controller reads what happened: the router's own stats, or Prometheus.

Both answer one question — what did each variant see between ``since`` and ``until`` — as a
:class:`~serving.router.schema.WindowStats`. :class:`PrometheusSource` is used when
``MARQUEE_PROMETHEUS_URL`` is set (it survives router restarts and sees every replica);
otherwise :class:`RouterStatsSource` asks the router's ``GET /admin/stats``.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import httpx

from marquee.errors import redact_uri
from serving.router.schema import (
    InterleaveWindow,
    RoutingConfig,
    ShadowWindow,
    VariantWindow,
    WindowStats,
)
from serving.router.settings import admin_headers

__all__ = ["MetricsSource", "RouterStatsSource", "PrometheusSource", "RouterAdmin",
           "SourceError", "resolve_all"]


class SourceError(RuntimeError):
    """The analysis source could not be read (this tick is skipped, not failed). The message
    names the router or Prometheus URL, whose password is masked: it is logged and kept in the
    rollout's status. ``answer``: from :meth:`RouterAdmin.apply`, the answer of a replica that
    did take the routing while another refused it (None: none took it)."""

    def __init__(self, message: str, answer: dict[str, Any] | None = None) -> None:
        super().__init__(redact_uri(message))
        self.answer = answer


@runtime_checkable
class MetricsSource(Protocol):
    def window(self, since: float, until: float) -> WindowStats: ...


Resolver = Callable[[str, int], list[tuple[str, int]]]


def resolve_all(host: str, port: int) -> list[tuple[str, int]]:
    """Every address ``host`` resolves to (a headless Service: one per ready pod), sorted."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SourceError(f"router replicas {host!r}: cannot resolve: {exc}") from None
    return sorted({(info[4][0], port) for info in infos})


class RouterAdmin:
    """The router's admin API: apply routing, read window statistics.

    ``replicas_url``: a URL whose host name resolves to every router replica (in Kubernetes
    the router's headless Service). Routing is then applied to each replica in turn, not to
    whichever one a load-balanced Service picks; reads still go to ``url``. ``token``: the
    router's admin token (default: ``MARQUEE_ROUTER_ADMIN_TOKEN``, as the router reads it).
    """

    def __init__(self, url: str, timeout: float = 5.0,
                 transport: httpx.BaseTransport | None = None, *,
                 replicas_url: str | None = None, resolve: Resolver = resolve_all,
                 token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False,
                                   transport=transport, headers=admin_headers(token))
        self.replicas_url = replicas_url.rstrip("/") if replicas_url else None
        self.resolve = resolve

    def _targets(self) -> list[str]:
        if self.replicas_url is None:
            return [self.url]
        u = httpx.URL(self.replicas_url)
        port = u.port or (443 if u.scheme == "https" else 80)
        targets = [str(u.copy_with(host=host, port=p)).rstrip("/")
                   for host, p in self.resolve(u.host, port)]
        if not targets:
            raise SourceError(f"router replicas {self.replicas_url}: no address")
        return targets

    def apply(self, config: RoutingConfig) -> dict[str, Any]:
        """PUT the routing to the router (every replica with ``replicas_url``); a replica
        that refuses or cannot be reached is a :class:`SourceError` naming it, after the
        others have been tried. The answer is the routing in force, with its ``epoch``: the
        one the stats of this routing carry."""
        body = config.model_dump_json()
        answers, failed = [], []
        for target in self._targets():
            try:
                r = self.client.put(f"{target}/admin/routing", content=body,
                                    headers={"content-type": "application/json"})
            except httpx.HTTPError as exc:
                failed.append(f"router {target} unreachable: {exc}")
                continue
            if r.status_code != 200:
                failed.append(f"router {target} refused the routing ({r.status_code}): {r.text}")
                continue
            answers.append(r.json())
        if failed:
            raise SourceError("; ".join(failed), answers[0] if answers else None)
        return answers[0]

    def routing(self) -> dict[str, Any] | None:
        try:
            r = self.client.get("/admin/routing")
        except httpx.HTTPError as exc:
            raise SourceError(f"router {self.url} unreachable: {exc}") from None
        if r.status_code == 401:
            raise SourceError(f"router {self.url} refused the admin call (401): {r.text}")
        return r.json() if r.status_code == 200 else None

    def stats(self, since: float, until: float) -> WindowStats:
        try:
            r = self.client.get("/admin/stats", params={"since": since, "until": until})
        except httpx.HTTPError as exc:
            raise SourceError(f"router stats unavailable: {exc}") from None
        if r.status_code != 200:
            raise SourceError(f"router stats unavailable ({r.status_code}): {r.text[:300]}")
        return WindowStats.model_validate(r.json())

    def close(self) -> None:
        self.client.close()


class RouterStatsSource:
    def __init__(self, admin: RouterAdmin) -> None:
        self.admin = admin

    def window(self, since: float, until: float) -> WindowStats:
        return self.admin.stats(since, until)


class PrometheusSource:
    """PromQL over the router's ``marquee_router_*`` metrics (``increase`` over the window)."""

    def __init__(self, url: str, timeout: float = 10.0, selector: str = "",
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.selector = selector  # extra label matchers, e.g. 'namespace="marquee"'
        self.client = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False,
                                   transport=transport)

    def _query(self, promql: str, at: float) -> list[dict[str, Any]]:
        try:
            r = self.client.get("/api/v1/query", params={"query": promql, "time": at})
            body = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SourceError(f"prometheus {self.url}: {exc}") from None
        if r.status_code != 200 or body.get("status") != "success":
            raise SourceError(f"prometheus {self.url}: {body.get('error', r.text)}")
        return body["data"]["result"]

    def _by(self, promql: str, at: float, label: str = "variant") -> dict[str, float]:
        out: dict[str, float] = {}
        for row in self._query(promql, at):
            value = float(row["value"][1])
            if math.isfinite(value):
                out[row["metric"].get(label, "")] = value
        return out

    def _scalar(self, promql: str, at: float) -> float | None:
        rows = self._query(promql, at)
        if not rows:
            return None
        value = float(rows[0]["value"][1])
        return value if math.isfinite(value) else None

    def _m(self, name: str, extra: str = "") -> str:
        matchers = ",".join(x for x in (self.selector, extra) if x)
        return f"{name}{{{matchers}}}" if matchers else name

    def window(self, since: float, until: float) -> WindowStats:
        w = f"{max(1, math.ceil(until - since))}s"

        def inc(name: str, by: str = "variant", extra: str = "") -> dict[str, float]:
            return self._by(f"sum by ({by}) (increase({self._m(name, extra)}[{w}]))", until, by)

        def p99(name: str, by: str = "variant") -> dict[str, float]:
            return self._by(f"1000 * histogram_quantile(0.99, sum by (le, {by}) "
                            f"(increase({self._m(name + '_bucket')}[{w}])))", until, by)

        requests = inc("marquee_router_requests_total")
        errors = inc("marquee_router_errors_total")
        upstream_ok = inc("marquee_router_upstream_duration_seconds_count")
        latency = p99("marquee_router_request_duration_seconds")
        upstream_latency = p99("marquee_router_upstream_duration_seconds")
        exposures = inc("marquee_router_exposures_total")
        clicked = inc("marquee_router_clicked_exposures_total")
        impressions, clicks, watches = (inc("marquee_router_feedback_total",
                                            extra=f'event="{event}"')
                                        for event in ("impression", "click", "watch"))
        users = inc("marquee_router_assigned_users_total")
        sums = {term: inc(f"marquee_router_ab_user_{term}_total")
                for term in ("lists_squared", "clicked_squared", "lists_clicked")}
        names = set(requests) | set(errors) | set(upstream_ok) | set(exposures)
        variants: dict[str, VariantWindow] = {}
        for v in names:
            # Under interleave a side's requests_total counts only the lists it served alone
            # (the other side failed), its errors_total every failed call: its calls are the
            # answered upstream calls plus the errors. Elsewhere requests_total counts them all.
            n = max(requests.get(v, 0.0), upstream_ok.get(v, 0.0) + errors.get(v, 0.0))
            variants[v] = VariantWindow(
                requests=round(n), errors=round(errors.get(v, 0.0)),
                latency_p99_ms=latency.get(v, upstream_latency.get(v)),
                exposures=round(exposures.get(v, 0.0)),
                clicked_exposures=round(clicked.get(v, 0.0)),
                impressions=round(impressions.get(v, 0.0)), clicks=round(clicks.get(v, 0.0)),
                watches=round(watches.get(v, 0.0)), users=round(users.get(v, 0.0)),
                exposures_sq=sums["lists_squared"].get(v, 0.0),
                clicked_sq=sums["clicked_squared"].get(v, 0.0),
                exposures_clicked=sums["lists_clicked"].get(v, 0.0))

        shadow_codes = inc("marquee_router_shadow_requests_total", by="code")
        mirrored = sum(shadow_codes.values())
        shadow_p99 = p99("marquee_router_shadow_duration_seconds")

        def mean(name: str) -> float | None:
            return self._scalar(f"sum(increase({self._m(name + '_sum')}[{w}])) / "
                                f"sum(increase({self._m(name + '_count')}[{w}]))", until)

        def gauge(name: str) -> dict[str, float]:
            return self._by(f"max by (variant) ({self._m(name)})", until)

        cov, gini = (gauge("marquee_router_shadow_coverage_ratio"),
                     gauge("marquee_router_shadow_exposure_gini_ratio"))
        shadow = ShadowWindow(
            mirrored=round(mirrored), errors=round(mirrored - shadow_codes.get("200", 0.0)),
            dropped=round(self._scalar(
                f"sum(increase({self._m('marquee_router_shadow_dropped_total')}[{w}]))",
                until) or 0.0),
            latency_p99_ms=shadow_p99.get("candidate"),
            baseline_latency_p99_ms=shadow_p99.get("baseline"),
            topk_overlap_mean=mean("marquee_router_shadow_topk_overlap_ratio"),
            rbo_mean=mean("marquee_router_shadow_rank_biased_overlap_ratio"),
            kendall_tau_mean=mean("marquee_router_shadow_kendall_tau_ratio"),
            coverage_baseline=cov.get("baseline"), coverage_candidate=cov.get("candidate"),
            gini_baseline=gini.get("baseline"), gini_candidate=gini.get("candidate"))
        wins = inc("marquee_router_interleave_wins_total")
        back = inc("marquee_router_interleave_win_reversals_total")
        interleave = InterleaveWindow(
            impressions=round(exposures.get("interleaved", 0.0)),
            baseline_wins=max(0, round(wins.get("baseline", 0.0) - back.get("baseline", 0.0))),
            candidate_wins=max(0, round(wins.get("candidate", 0.0) - back.get("candidate", 0.0))),
            ties=max(0, round(wins.get("tie", 0.0) - back.get("tie", 0.0))))
        return WindowStats(since=since, until=until, variants=variants, shadow=shadow,
                           interleave=interleave)
