"""The router's admin API: bodies within the router's limit, versions that name a version.

``PUT /admin/routing`` and ``PUT /admin/upstreams`` read the whole body before looking at it
(Starlette's ``request.body()``), however large: with the admin API open (no admin token, the
default) anyone who reached the router could make it hold a body of any size in memory. A
body over the router's limit is now a 413 naming ``body``, like ``POST /recommend``, and the
routing and upstreams stay as they were.

A version in ``PUT /admin/routing`` or ``PUT /admin/upstreams`` was any non-empty text. With
``MARQUEE_ROUTER_UPSTREAM_URL_TEMPLATE`` (the chart sets one) the router builds the model
server's URL from it, so ``1@127.0.0.1:9/#`` sent production traffic to a host the template
never names, and ``2 x`` was accepted (200) with every ``/recommend`` failing after. A version
is now letters, digits, '.', '_' and '-' (at most 64), else a 422 naming the field, with
nothing changed.

The router is the real ``marquee router`` process on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.router.app import MAX_BODY_BYTES
from tests.rollout.rollout_support import start_router

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = "http://movie-recommender-v{version}-predictor.marquee.svc.cluster.local"


@pytest.fixture()
def router_url(tmp_path: Path) -> Iterator[str]:
    router = start_router({"1": "http://127.0.0.1:9"}, "1", tmp_path / "home", tmp_path,
                          upstream_url_template=TEMPLATE, exposure_log_enabled=False)
    try:
        yield router.url
    finally:
        router.stop()


def _oversized_registration() -> bytes:
    # valid JSON, well past the limit: only its size is wrong
    return (b'{"version": "2", "url": "http://127.0.0.1:8082", "note": "'
            + b"x" * (4 * MAX_BODY_BYTES) + b'"}')


@pytest.mark.parametrize("path", ["/admin/upstreams", "/admin/routing"])
@pytest.mark.parametrize("chunked", [False, True])
def test_an_admin_body_over_the_limit_is_a_413_naming_body(router_url: str, path: str,
                                                           chunked: bool) -> None:
    body = _oversized_registration()
    content = iter([body[i:i + 16384] for i in range(0, len(body), 16384)]) if chunked \
        else body
    before_upstreams = httpx.get(f"{router_url}/admin/upstreams", timeout=5).json()
    before_routing = httpx.get(f"{router_url}/admin/routing", timeout=5).json()

    r = httpx.put(f"{router_url}{path}", content=content, timeout=30,
                  headers={"content-type": "application/json"})

    assert r.status_code == 413, r.text
    assert r.json()["field"] == "body"
    assert str(MAX_BODY_BYTES) in r.json()["error"]
    assert httpx.get(f"{router_url}/admin/upstreams", timeout=5).json() == before_upstreams
    assert httpx.get(f"{router_url}/admin/routing", timeout=5).json() == before_routing


def test_an_admin_body_within_the_limit_still_works(router_url: str) -> None:
    r = httpx.put(f"{router_url}/admin/upstreams", timeout=5,
                  json={"version": "2", "url": "http://127.0.0.1:8082"})
    assert r.status_code == 200, r.text
    assert r.json()["2"] == "http://127.0.0.1:8082"


_NOT_VERSIONS = ["1@127.0.0.1:9/#", "2 x", "2/../../admin", "2\r\nX-Injected: 1", "x" * 65]


@pytest.mark.parametrize("version", _NOT_VERSIONS)
def test_a_routing_version_that_is_no_version_is_a_422_naming_it(router_url: str,
                                                                 version: str) -> None:
    before = httpx.get(f"{router_url}/admin/routing", timeout=5).json()
    r = httpx.put(f"{router_url}/admin/routing", timeout=5, json={
        "strategy": "canary", "baseline": {"version": "1"}, "candidate": {"version": version},
        "candidate_weight": 50})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "candidate.version"
    assert httpx.get(f"{router_url}/admin/routing", timeout=5).json() == before


@pytest.mark.parametrize("version", _NOT_VERSIONS)
def test_an_upstream_version_that_is_no_version_is_a_422_naming_it(router_url: str,
                                                                   version: str) -> None:
    before = httpx.get(f"{router_url}/admin/upstreams", timeout=5).json()
    r = httpx.put(f"{router_url}/admin/upstreams", timeout=5,
                  json={"version": version, "url": "http://127.0.0.1:8082"})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "version"
    assert httpx.get(f"{router_url}/admin/upstreams", timeout=5).json() == before


def test_a_version_through_the_template_still_routes(router_url: str) -> None:
    r = httpx.put(f"{router_url}/admin/routing", timeout=5, json={
        "strategy": "canary", "baseline": {"version": "1"},
        "candidate": {"version": "20260101T000000Z-ab12cd34"}, "candidate_weight": 50})
    assert r.status_code == 200, r.text
    assert r.json()["candidate_url"] == TEMPLATE.format(version="20260101T000000Z-ab12cd34")


@pytest.mark.parametrize(("args", "env", "field"), [
    (["--upstream", "1=http://127.0.0.1:9", "--baseline", "1@127.0.0.1:9/#"], {},
     "baseline_version"),
    (["--baseline", "1"], {"MARQUEE_ROUTER_UPSTREAMS": '{"1": "http://127.0.0.1:9", '
                                                      '"2 x": "http://127.0.0.1:9"}'},
     "upstreams.2 x"),
], ids=["baseline", "upstreams"])
def test_the_routers_own_versions_follow_the_version_rule(
        tmp_path: Path, args: list[str], env: dict[str, str], field: str) -> None:
    """The operator's versions (--baseline, --upstream, MARQUEE_ROUTER_UPSTREAMS) go into the
    same URLs, labels and routing file as the admin API's: the same rule, refused at start-up
    naming the setting, before anything listens."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    out = subprocess.run([sys.executable, "-m", "marquee.cli", "router", "--host", "127.0.0.1",
                          "--port", "9", "--routing-file", "none", "--no-logs", *args],
                         env={**base, "MARQUEE_HOME": str(tmp_path / "home"), **env}, cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "invalid settings" in out.stderr and field in out.stderr, out.stderr
