"""The router's per-version series stay bounded over months of routings (session 21, helper J).

Every version a router was ever routed to (``PUT /admin/routing``, one or two new versions per
rollout) left ``marquee_router_requests_total`` / ``_errors_total`` series and an entry in
``Router._served_metrics`` for the life of the process. Now the versions of the routing in
force plus the last ``metrics_retired_versions`` routed before are exported; a version is not
dropped while requests assigned under a routing that names it are still being answered.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from serving.router.app import create_app
from serving.router.core import Router
from serving.router.schema import RecommendRequest, RoutingConfig
from serving.router.settings import RouterSettings
from serving.router.upstream import make_upstream

BASE = 7100  # versions 7100.. : labels no other test uses (the registry is process-wide)


def _answer(request: httpx.Request) -> httpx.Response:
    inst = json.loads(request.content)["instances"][0]
    version = request.url.host.removeprefix("v").removesuffix(".test")
    if int(version) < BASE + 100 and version.endswith("5"):  # these fail: error series too
        return httpx.Response(500, json={"error": "injected"})
    items = list(range(1, inst["k"] + 1))
    return httpx.Response(200, json={"predictions": [{
        "user_id": inst["user_id"], "items": items, "scores": [1.0] * len(items),
        "model_version": version, "request_id": "x", "cold_start": False,
        "fallback": False}]})


async def _handler(request: httpx.Request) -> httpx.Response:
    return _answer(request)


def _settings(**kw: Any) -> RouterSettings:
    return RouterSettings(upstream_url_template="http://v{version}.test",
                          baseline_version=str(BASE), **kw)


def _versions_on_metrics(c: TestClient) -> dict[str, dict[str, float]]:
    """model_version label -> {metric name: summed value}, for this test's versions only."""
    out: dict[str, dict[str, float]] = {}
    text = c.get("/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name not in ("marquee_router_requests", "marquee_router_errors"):
            continue
        for s in family.samples:
            v = s.labels.get("model_version", "")
            if not s.name.endswith("_total") or not any(
                    p.isdigit() and int(p) >= BASE for p in v.split("+")):
                continue
            per = out.setdefault(v, {})
            per[s.name] = per.get(s.name, 0.0) + s.value
    return out


def test_request_and_error_series_of_old_versions_are_dropped_over_many_routings() -> None:
    kept = 3
    with TestClient(create_app(_settings(metrics_retired_versions=kept),
                               transport=httpx.MockTransport(_handler))) as c:
        for i in range(40):  # 40 rollouts: each routes a new candidate, then promotes it
            base, cand = str(BASE + i), str(BASE + i + 1)
            strategy = "interleave" if i % 4 == 3 else "canary"
            r = c.put("/admin/routing", json={
                "strategy": strategy, "baseline": {"version": base},
                "candidate": {"version": cand}, "candidate_weight": 50, "salt": f"s{i}"})
            assert r.status_code == 200, r.text
            for u in range(1, 9):
                c.post("/recommend", json={"user_id": u, "k": 3})
            r = c.put("/admin/routing", json={"strategy": "single",
                                              "baseline": {"version": cand}})
            assert r.status_code == 200, r.text
        router = c.app.state.router
        last = str(BASE + 40)
        for u in range(1, 6):
            assert c.post("/recommend", json={"user_id": u, "k": 3}).status_code == 200
        series = _versions_on_metrics(c)
        # the version in force + `kept` earlier ones (an interleave's "a+b" label is one)
        assert len(series) <= kept + 1, sorted(series)
        assert last in series
        assert len({key[1] for key in router._served_metrics}) <= kept + 1
        # what the routing in force counts is still right
        assert REGISTRY.get_sample_value("marquee_router_requests_total", {
            "variant": "baseline", "model_version": last, "code": "200"}) == 5.0
        # the previous routing's versions are still there (late scrapes, dashboards)
        assert str(BASE + 39) in series
        # a version routed again starts its series afresh and counts right
        r = c.put("/admin/routing", json={"strategy": "canary", "baseline": {"version": last},
                                          "candidate": {"version": str(BASE)},
                                          "candidate_weight": 100, "salt": "again"})
        assert r.status_code == 200, r.text
        for u in range(1, 4):
            assert c.post("/recommend", json={"user_id": u, "k": 3}).json()["variant"] == \
                "candidate"
        assert _versions_on_metrics(c)[str(BASE)]["marquee_router_requests_total"] == 3.0


def test_a_version_is_kept_while_requests_routed_to_it_are_in_flight() -> None:
    """A request assigned under an old routing is answered after many routings have passed:
    it counts under its own version, in a series still exported; once answered, the
    version's series go at the next routing."""
    release = asyncio.Event()
    slow = str(BASE + 500)

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == f"v{slow}.test" and \
                json.loads(request.content)["instances"][0]["user_id"] == 2:
            await release.wait()
        return _answer(request)

    def value(version: str) -> float | None:
        return REGISTRY.get_sample_value("marquee_router_requests_total",
                                         {"variant": "baseline", "model_version": version,
                                          "code": "200"})

    async def scenario() -> None:
        settings = _settings(metrics_retired_versions=1)
        upstream = make_upstream(settings, httpx.MockTransport(handler))
        router = Router(settings, upstream, inline_shadow=True)
        try:
            router.apply(RoutingConfig(baseline={"version": slow}))
            await router.recommend(RecommendRequest(user_id=1, k=3))
            pending = asyncio.create_task(router.recommend(RecommendRequest(user_id=2, k=3)))
            await asyncio.sleep(0.05)
            assert not pending.done()
            for i in range(1, 8):
                v = str(BASE + 500 + i)
                router.apply(RoutingConfig(baseline={"version": v}))
                await router.recommend(RecommendRequest(user_id=3, k=3))
            assert value(slow) == 1.0  # still exported while its request is answered
            release.set()
            body = await pending
            assert body["model_version"] == slow
            assert value(slow) == 2.0  # counted in the same series, not one made anew
            assert value(str(BASE + 502)) is None  # not waited for: dropped meanwhile
            router.apply(RoutingConfig(baseline={"version": str(BASE + 600)}))
            assert value(slow) is None  # answered: dropped like any old version
            assert value(str(BASE + 507)) == 1.0  # the last one before is kept
            assert value(str(BASE + 502)) is None
        finally:
            await upstream.aclose()

    asyncio.run(scenario())
