"""The router's request path against model servers that answer oddly (session 23, helper J).

A real ``marquee router`` on 127.0.0.1 in front of stand-in model servers:

- a model server at an ``https://`` URL: the default upstream client (raw) cannot speak TLS,
  so every call to it was a 502, counted as that variant's failure (a rollout would roll a
  good candidate back for a URL scheme); https URLs now go through aiohttp;
- a model server that answers 200 with the list of another user than the one asked for:
  that list was served to the requester (another user's personalised recommendations);
- under interleaving, a side that answers alone without naming its version: the answer's
  ``model_version`` was empty, where every other answer names the routing's version.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.rollout.rollout_support import start_router
from tests.stand_in_http import serving


def _lists(body: bytes, *, offset: int = 0, user_shift: int = 0,
           version: str | None = "x") -> tuple[int, Any]:
    """A KServe V1 answer: k items from ``offset`` for the user asked about (plus
    ``user_shift``: another user's list), named ``version`` (None: no model_version)."""
    inst = json.loads(body)["instances"][0]
    user, k = inst["user_id"] + user_shift, inst["k"]
    pred: dict[str, Any] = {"user_id": user, "items": [offset + i + 1 for i in range(k)],
                            "scores": [1.0 / (i + 1) for i in range(k)]}
    if version is not None:
        pred["model_version"] = version
    return 200, {"predictions": [pred]}


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    return cert, key


def _route(client: httpx.Client, body: dict[str, Any]) -> None:
    r = client.put("/admin/routing", json=body)
    assert r.status_code == 200, r.text


def test_a_candidate_at_an_https_url_is_served_not_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Canary at 100% to a candidate behind https (its certificate trusted through
    ``SSL_CERT_FILE``, as a cluster's CA bundle would be): before, every request was a 502
    "model server URL unusable" and the candidate's error rate 100%."""
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the router's environment (start_router)
    with serving(lambda m, p, b: _lists(b)) as base, \
            serving(lambda m, p, b: _lists(b, offset=100, version="2"), tls=(cert, key)) as cand:
        router = start_router({"1": base, "2": cand}, "1", tmp_path, tmp_path)
        try:
            with httpx.Client(base_url=router.url, timeout=10.0, trust_env=False) as c:
                _route(c, {"strategy": "canary", "baseline": {"version": "1"},
                           "candidate": {"version": "2"}, "candidate_weight": 100})
                for user in range(1, 6):
                    r = c.post("/recommend", json={"user_id": user, "k": 3})
                    assert r.status_code == 200, r.text
                    body = r.json()
                    assert body["variant"] == "candidate"
                    assert body["items"] == [101, 102, 103] and body["model_version"] == "2"
                cand_stats = c.get("/admin/stats", params={"since": 0}).json()[
                    "variants"]["candidate"]
                assert cand_stats["requests"] == 5 and cand_stats["errors"] == 0
        finally:
            router.stop()


def test_another_users_list_is_refused_not_served(tmp_path: Path) -> None:
    """The model server answers 200 with the list of user u+1 (it says so: ``user_id``):
    before, user u was shown it and the request counted as a success."""
    with serving(lambda m, p, b: _lists(b, user_shift=1)) as base:
        router = start_router({"1": base}, "1", tmp_path, tmp_path)
        try:
            with httpx.Client(base_url=router.url, timeout=10.0, trust_env=False) as c:
                r = c.post("/recommend", json={"user_id": 42, "k": 3})
                assert r.status_code == 502, r.text
                err = r.json()
                assert err["variant"] == "baseline"
                assert "user_id 43" in err["error"] and "42" in err["error"], err
                stats = c.get("/admin/stats", params={"since": 0}).json()["variants"]
                assert stats["baseline"]["errors"] == 1 and stats["baseline"]["exposures"] == 0
        finally:
            router.stop()


def test_an_interleaving_side_answering_alone_without_a_version_is_named(
        tmp_path: Path) -> None:
    """Interleaving, the candidate failing, the baseline's answer naming no model_version:
    before, the answer's ``model_version`` was "" (a single routing answers "1")."""
    with serving(lambda m, p, b: _lists(b, version=None)) as base, \
            serving(lambda m, p, b: (500, {"error": "down"})) as cand:
        router = start_router({"1": base, "2": cand}, "1", tmp_path, tmp_path)
        try:
            with httpx.Client(base_url=router.url, timeout=10.0, trust_env=False) as c:
                single = c.post("/recommend", json={"user_id": 7, "k": 3}).json()
                assert single["model_version"] == "1"
                _route(c, {"strategy": "interleave", "baseline": {"version": "1"},
                           "candidate": {"version": "2"}})
                r = c.post("/recommend", json={"user_id": 7, "k": 3})
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["variant"] == "baseline" and body["items"] == [1, 2, 3]
                assert body["model_version"] == "1", body
        finally:
            router.stop()
