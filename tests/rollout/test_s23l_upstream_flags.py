"""A model server's ``cold_start`` and ``fallback`` are JSON booleans (session 23, helper L).

The router read them with ``bool()``: a model server answering ``"fallback": "false"`` (a
string) had its list served to the client as ``"fallback": true`` and ``"cold_start": true``.
Now a flag that is not a JSON boolean makes the answer invalid, like an item id that is not
an integer: a 502 naming the variant, counted as that variant's ``bad_response``. A flag
that is absent or null is False (the project's own KServe and BentoML servers always send
booleans: ``serving.runtime.service``).

A real ``marquee router`` on 127.0.0.1 in front of a stand-in model server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.rollout.rollout_support import start_router
from tests.stand_in_http import serving

BAD_FLAGS: dict[str, dict[str, Any]] = {
    "string false": {"cold_start": "false", "fallback": "false"},
    "string true": {"cold_start": False, "fallback": "true"},
    "number 0": {"cold_start": 0, "fallback": False},
    "number 1": {"cold_start": True, "fallback": 1},
    "a list": {"cold_start": [], "fallback": False},
}
GOOD_FLAGS: list[tuple[dict[str, Any], dict[str, bool]]] = [
    ({"cold_start": True, "fallback": False}, {"cold_start": True, "fallback": False}),
    ({"cold_start": False, "fallback": True}, {"cold_start": False, "fallback": True}),
    ({}, {"cold_start": False, "fallback": False}),  # a server without such flags
    ({"cold_start": None, "fallback": None}, {"cold_start": False, "fallback": False}),
]


class _Model:
    """A KServe V1 stand-in whose prediction carries ``flags`` (set between requests)."""

    def __init__(self) -> None:
        self.flags: dict[str, Any] = {}

    def __call__(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        inst = json.loads(body)["instances"][0]
        return 200, {"predictions": [{"user_id": inst["user_id"], "items": [3, 4],
                                      "scores": [0.9, 0.8], "model_version": "1",
                                      **self.flags}]}


def _bad_responses(c: httpx.Client) -> float:
    for line in c.get("/metrics").text.splitlines():
        if (line.startswith("marquee_router_errors_total{")
                and 'reason="bad_response"' in line and 'variant="baseline"' in line):
            return float(line.split()[-1])
    return 0.0


def test_flags_that_are_not_json_booleans_are_an_invalid_answer(tmp_path: Path) -> None:
    model = _Model()
    with serving(model) as url:
        router = start_router({"1": url}, "1", tmp_path, tmp_path)
        try:
            with httpx.Client(base_url=router.url, timeout=10.0, trust_env=False) as c:
                for what, flags in BAD_FLAGS.items():
                    model.flags = flags
                    got = c.post("/recommend", json={"user_id": 7, "k": 2})
                    assert got.status_code == 502, (
                        f"{what}: served as {got.text} (status {got.status_code})")
                    assert got.json()["variant"] == "baseline", (what, got.text)
                    assert "invalid body" in got.json()["error"], (what, got.text)
                assert _bad_responses(c) == len(BAD_FLAGS)

                for flags, expected in GOOD_FLAGS:
                    model.flags = flags
                    got = c.post("/recommend", json={"user_id": 7, "k": 2})
                    assert got.status_code == 200, (flags, got.text)
                    body = got.json()
                    assert {k: body[k] for k in expected} == expected, (flags, body)
                    assert body["items"] == [3, 4]
                assert _bad_responses(c) == len(BAD_FLAGS)  # the good ones counted nowhere
        finally:
            router.stop()
