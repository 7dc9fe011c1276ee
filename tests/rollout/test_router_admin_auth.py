"""The router's admin API with ``MARQUEE_ROUTER_ADMIN_TOKEN``: every ``/admin/*`` call needs
``Authorization: Bearer <token>``, the product API and the probes do not, and the rollout
controller's client (``RouterAdmin``) sends the token it finds in the same variable.

Before, anyone who reached the router's port (in the chart's default install: any pod) could
``PUT /admin/routing`` and move all traffic to any version, or ``PUT /admin/upstreams`` and send
a version's traffic to a server of their own. The router is the real ``marquee router`` process
on 127.0.0.1; its model server is never called (only the admin API and the probes are used).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from serving.rollout.sources import RouterAdmin, SourceError
from serving.router.schema import RoutingConfig
from tests.conftest import REPO, free_port
from tests.rollout.rollout_support import Proc, _env, start_router

TOKEN = "s3cret-admin-token"
UPSTREAMS = {"1": "http://127.0.0.1:9", "2": "http://127.0.0.1:10"}


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Proc:
    root = tmp_path_factory.mktemp("admin-auth")
    proc = start_router(UPSTREAMS, "1", root / "home", root, admin_token=TOKEN,
                        exposure_log_enabled=False)
    yield proc
    proc.stop()


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_admin_calls_without_the_token_are_refused_and_change_nothing(router: Proc) -> None:
    before = httpx.get(f"{router.url}/admin/routing", headers=_auth(TOKEN))
    assert before.status_code == 200, before.text
    canary = {"strategy": "canary", "baseline": {"version": "1"},
              "candidate": {"version": "2"}, "candidate_weight": 100}
    for headers in ({}, _auth("wrong"), {"authorization": "Basic " + TOKEN},
                    {"authorization": "Bearer"}, _auth(TOKEN + "x")):
        for method, path, body in (("PUT", "/admin/routing", canary),
                                   ("PUT", "/admin/upstreams",
                                    {"version": "1", "url": "http://127.0.0.1:11"}),
                                   ("GET", "/admin/routing", None),
                                   ("GET", "/admin/upstreams", None),
                                   ("GET", "/admin/stats", None)):
            r = httpx.request(method, f"{router.url}{path}", json=body, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.json()["code"] == "unauthorized"
            assert r.json()["field"] == "authorization"
            assert "MARQUEE_ROUTER_ADMIN_TOKEN" in r.json()["error"]
            assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{router.url}/admin/routing", headers=_auth(TOKEN)).json() == before.json()
    assert httpx.get(f"{router.url}/admin/upstreams",
                     headers=_auth(TOKEN)).json() == UPSTREAMS
    # the token never shows in what the router answers or logs
    assert TOKEN not in router.log.read_text()


def test_product_api_and_probes_need_no_token(router: Proc) -> None:
    assert httpx.get(f"{router.url}/readyz").status_code == 200
    assert httpx.get(f"{router.url}/healthz").status_code == 200
    assert httpx.get(f"{router.url}/metrics").status_code == 200
    # /recommend is not refused for authorization: it reaches the (absent) model server
    r = httpx.post(f"{router.url}/recommend", json={"user_id": 1, "k": 3})
    assert r.status_code == 502 and r.json()["code"] == "upstream_failed", r.text


def test_the_controllers_client_sends_the_token_from_the_environment(
        router: Proc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_ROUTER_ADMIN_TOKEN", TOKEN)
    admin = RouterAdmin(router.url)
    current = admin.routing()
    assert current is not None and current["baseline"]["version"] == "1"
    shadow = RoutingConfig(strategy="shadow", baseline={"version": "1"},
                           candidate={"version": "2"}, shadow_sample_rate=1.0)
    applied = admin.apply(shadow)
    assert applied["strategy"] == "shadow" and applied["candidate"]["version"] == "2"
    assert admin.stats(0, 2e9).epoch == applied["epoch"]
    admin.apply(RoutingConfig(baseline={"version": "1"}))  # back as it was
    admin.close()

    monkeypatch.delenv("MARQUEE_ROUTER_ADMIN_TOKEN")
    unauthenticated = RouterAdmin(router.url)
    with pytest.raises(SourceError, match="401"):
        unauthenticated.routing()
    with pytest.raises(SourceError, match="401.*MARQUEE_ROUTER_ADMIN_TOKEN"):
        unauthenticated.apply(shadow)
    with pytest.raises(SourceError, match="401"):
        unauthenticated.stats(0, 2e9)
    unauthenticated.close()
    assert RouterAdmin(router.url, token=TOKEN).routing()["strategy"] != "shadow"


def test_a_blank_token_is_refused_at_start(tmp_path: Path) -> None:
    env = _env(tmp_path, "MARQUEE_ROUTER_", admin_token="  ", upstreams='{"1": "http://127.0.0.1:9"}')
    out = subprocess.run([sys.executable, "-m", "marquee.cli", "router", "--port",
                          str(free_port()), "--host", "127.0.0.1", "--baseline", "1"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "admin_token" in out.stdout + out.stderr and "blank" in out.stdout + out.stderr


def test_without_a_token_the_router_warns_that_its_admin_api_is_open(tmp_path: Path) -> None:
    proc = start_router({"1": "http://127.0.0.1:9"}, "1", tmp_path / "home", tmp_path,
                        exposure_log_enabled=False)
    try:
        assert httpx.get(f"{proc.url}/admin/routing").status_code == 200
    finally:
        proc.stop()
    assert "admin API" in proc.log.read_text() and "MARQUEE_ROUTER_ADMIN_TOKEN" in proc.log.read_text()


def test_the_trigger_s_local_rollout_sends_the_token_its_controller_gets(
        router: Proc, tmp_path: Path) -> None:
    """A retrain trigger with rolloutTarget local reads the routing and registers the new
    version's model server on the admin API (then starts a controller with the same
    environment). Without the token it was refused, and the rollout failed."""
    from monitoring.retrain.rollout import AutoRollout

    def step(env: dict[str, str]) -> AutoRollout:
        return AutoRollout(home=tmp_path, model_name="movie-recommender", router_url=router.url,
                           env=env)

    with_token = step({"MARQUEE_ROUTER_ADMIN_TOKEN": TOKEN})
    assert with_token._check_router()["baseline"]["version"] == "1"
    with_token._announce("3", "http://127.0.0.1:12")
    upstreams = httpx.get(f"{router.url}/admin/upstreams", headers=_auth(TOKEN)).json()
    assert upstreams["3"] == "http://127.0.0.1:12"
    with pytest.raises(RuntimeError, match="401"):
        step({})._check_router()
