"""The controller carries on with a status edited by hand (session 23, helper B).

Session 22 made ``rollout status / history / report`` show a hand-edited status (``kubectl
edit modelrollout X --subresource=status``, ``<MARQUEE_HOME>/rollouts/<name>/status.json``),
but the controller itself still failed every tick on three of the same edits, so the rollout
stood where it was (no analysis, no ``maxDurationSeconds``, its routing not re-applied):

* a bare number as a version of the start decision (``candidateVersion: 2`` in YAML): the
  routing's version is text, a ValidationError each tick;
* a start time whose UTC form is outside years 1..9999 (``9999-12-31T23:00:00-05:00``): the
  routing's ``run`` (new in session 22) took it to UTC, an OverflowError each tick;
* a ``repeats`` that is not a number (``"many"``): the next folded "not yet" failed in int().

* a decision time without an offset (``2024-01-01T00:00:00``): compared with the controller's
  aware clock (``maxDurationSeconds``), a TypeError each tick; and the routing's ``run`` took
  it in the controller's local zone, so one restarted under another ``TZ`` would have sent
  another run, another routing epoch, and the router's stats of the step started over.

The real controller (file store) against a real ``marquee router`` on 127.0.0.1 with stand-in
model servers; the registry is the in-memory one of the controller tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.rollout.controller import Controller
from serving.rollout.sources import RouterAdmin, RouterStatsSource
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore
from tests.rollout.rollout_support import stand_in_model, start_router
from tests.rollout.test_rollout_controller import DictRegistry
from tests.stand_in_http import serving

NAME = "edited"


@pytest.fixture(scope="module")
def router_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("s23b-router")
    with serving(stand_in_model) as base, serving(stand_in_model) as cand:
        router = start_router({"1": base, "2": cand}, "1", tmp, tmp)
        try:
            yield router.url
        finally:
            router.stop()


@pytest.fixture
def store(tmp_path: Path) -> FileStatusStore:
    """Rollout ``edited``: a canary of version 2 that never has traffic enough to decide."""
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(parse_rollout({
        "apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
        "metadata": {"name": NAME},
        "spec": {"baseline": {"alias": "production"}, "candidate": {"version": "2"},
                 "strategy": "canary", "intervalSeconds": 60, "steps": [{"weight": 50}],
                 "analysis": {"minRequests": 100000,
                              "metrics": [{"name": "errorRate", "max": 0.05}]}}}))
    return store


def _controller(store: FileStatusStore, url: str) -> Controller:
    admin = RouterAdmin(url)
    return Controller(store, NAME, RouterStatsSource(admin), router=admin,
                      registry=DictRegistry(production="1"))


def _edit(store: FileStatusStore, change: Any) -> None:
    """Edit status.json as a person would: load the JSON, change it, write it back."""
    path = store.root / NAME / "status.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2))


def _routing(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/admin/routing", timeout=5.0, trust_env=False).json()


def test_a_version_written_as_a_number_is_that_version(store: FileStatusStore,
                                                        router_url: str) -> None:
    assert _controller(store, router_url).tick().phase == Phase.PROGRESSING
    before = _routing(router_url)

    def numbers(doc: dict[str, Any]) -> None:
        doc["decisions"][0]["statistics"].update(baselineVersion=1, candidateVersion=2)
    _edit(store, numbers)

    after = _controller(store, router_url).tick()  # before: ValidationError, every tick
    assert (after.baseline_version, after.candidate_version) == ("1", "2")
    assert after.phase == Phase.PROGRESSING and "candidate requests" in after.message
    routing = _routing(router_url)
    assert (routing["baseline"]["version"], routing["candidate"]["version"]) == ("1", "2")
    assert routing["epoch"] == before["epoch"], "the same versions made another routing"


def test_a_start_time_beyond_utc_range_still_routes_one_run(store: FileStatusStore,
                                                           router_url: str) -> None:
    _controller(store, router_url).tick()

    def far(doc: dict[str, Any]) -> None:
        doc["decisions"][0]["time"] = "9999-12-31T23:00:00-05:00"  # 10000-01-01 in UTC
    _edit(store, far)

    first = _controller(store, router_url).tick()  # before: OverflowError, every tick
    assert first.phase == Phase.PROGRESSING
    routing = _routing(router_url)
    assert routing["run"] == "9999-12-31T23:00:00.000000-05:00"
    _controller(store, router_url).tick()  # a restarted controller: the same run and epoch
    assert _routing(router_url)["epoch"] == routing["epoch"]


def test_a_naive_start_time_is_utc_whatever_the_controllers_zone(
        store: FileStatusStore, router_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _controller(store, router_url).tick()

    def naive(doc: dict[str, Any]) -> None:
        doc["decisions"][0]["time"] = "2024-01-01T00:00:00"
    _edit(store, naive)

    epochs = {}
    try:  # before: TypeError (naive minus aware), every tick
        for zone in ("UTC", "Asia/Tokyo"):  # the controller restarted with another TZ
            monkeypatch.setenv("TZ", zone)
            time.tzset()
            _controller(store, router_url).tick()
            routing = _routing(router_url)
            epochs[zone] = (routing["run"], routing["epoch"])
    finally:
        monkeypatch.undo()
        time.tzset()
    assert epochs["UTC"][0] == "2024-01-01T00:00:00.000000+00:00"
    assert epochs["Asia/Tokyo"] == epochs["UTC"], f"another zone, another run: {epochs}"


def test_repeats_edited_to_text_does_not_stop_the_rollout(store: FileStatusStore,
                                                          router_url: str) -> None:
    for _ in range(3):  # started, then "not yet" twice: folded into one with repeats 2
        status = _controller(store, router_url).tick()
    assert status.decisions[-1].statistics["repeats"] == 2

    def many(doc: dict[str, Any]) -> None:
        doc["decisions"][-1]["statistics"]["repeats"] = "many"
    _edit(store, many)

    status = _controller(store, router_url).tick()  # before: ValueError in int(), every tick
    assert status.phase == Phase.PROGRESSING
    assert status.decisions[-1].statistics["repeats"] == 2  # the edited count taken as one
    store.request(NAME, "abort")
    assert _controller(store, router_url).tick().phase == Phase.ROLLED_BACK
