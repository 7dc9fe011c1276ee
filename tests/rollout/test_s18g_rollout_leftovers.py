"""Rollout leftovers (helper G, session 18): two `rollout start` of one name at once, and the
routing an ended rollout keeps once ``production`` has moved since.

Entry points: ``FileStatusStore.create`` (what ``marquee rollout start`` calls) from two
threads at once, and the rollout manager and controller with a real file store and MLflow on
SQLite.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from serving.rollout.controller import MarqueeRegistry
from serving.rollout.manager import RolloutManager
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore, RolloutExists
from tests.rollout.test_hunt_rollout import Healthy
from tests.rollout.test_s18e_one_rollout_per_model import (
    MODEL,
    Admin,
    _doc,
    registry_and_r1,
)


# --- 1. create-if-absent is atomic -------------------------------------------------------------
def test_two_creates_of_one_name_at_once_one_wins_and_its_spec_stays(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: create checked that ``rollout.yaml`` did not exist, then wrote it. Two
    `rollout start` of one name that both passed the check both "created" it: the second
    spec replaced the first under the first one's controller, and neither was told. The two
    threads here are held together right after that check (both find no rollout), which is
    the interleaving that two processes hit by chance. Now exactly one create succeeds, the
    other gets RolloutExists, and the stored spec is the winner's."""
    store = FileStatusStore(tmp_path / "rollouts")
    both_checked = threading.Barrier(2, timeout=10)
    real_exists = Path.exists

    def exists(self: Path, *args: Any, **kw: Any) -> bool:
        found = real_exists(self, *args, **kw)
        if self.name == "rollout.yaml" and self.parent.parent == store.root:
            try:
                both_checked.wait()
            except threading.BrokenBarrierError:
                pass
        return found

    monkeypatch.setattr(Path, "exists", exists)
    results: dict[str, str] = {}

    def start(candidate: str) -> None:
        try:
            store.create(parse_rollout(_doc("shadow-v", candidate=candidate)))
        except RolloutExists:
            results[candidate] = "exists"
        else:
            results[candidate] = "created"

    threads = [threading.Thread(target=start, args=(c,)) for c in ("2", "3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    monkeypatch.undo()
    assert sorted(results.values()) == ["created", "exists"], results
    winner = next(c for c, r in results.items() if r == "created")
    stored = store.get("shadow-v")
    assert stored.rollout.spec.candidate.version == winner
    assert stored.status.phase == Phase.PENDING
    assert store.list() == ["shadow-v"]
    assert not [p.name for p in (store.root / "shadow-v").iterdir() if p.name.startswith(".")]


# --- 2. an ended rollout's routing follows production once it moved -------------------------
def test_after_a_rollback_the_kept_routing_follows_a_production_promoted_since(
        tmp_path: Path) -> None:
    """r1 (candidate 2) is rolled back: production is 1 again and the router on 1. A person
    then promotes version 3 (`marquee registry promote`, Registry.promote). Before: with no
    rollout running, the manager re-applied r1's final routing every few seconds, so every
    request still went to version 1 while the registry named 3 as production (and a router
    told by hand to serve 3 was put back on 1 within seconds). Now the kept routing follows
    the registry's production; it goes back with it, too."""
    from marquee.registry import Registry

    uri, store = registry_and_r1(tmp_path)
    admin = Admin()
    t = [0.0]
    mgr = RolloutManager(store, Healthy(), admin,  # type: ignore[arg-type]
                         lambda model: MarqueeRegistry(uri, model), clock=lambda: t[0])
    mgr.run_once()
    assert store.get("r1").status.phase == Phase.PROGRESSING
    store.request("r1", "abort")
    t[0] = 2.0
    mgr.run_once()
    assert store.get("r1").status.phase == Phase.ROLLED_BACK
    assert Registry(uri, MODEL).get_alias("production").version == 1
    assert admin.applied[-1].strategy == "single"
    assert admin.applied[-1].baseline.version == "1"

    Registry(uri, MODEL).promote(3)
    admin.applied.clear()
    t[0] = 10.0
    mgr.run_once()
    assert [(r.strategy, r.baseline.version, r.candidate) for r in admin.applied] == \
        [("single", "3", None)]
    assert store.get("r1").status.routing_error == ""

    Registry(uri, MODEL).set_alias("production", 1)  # production put back by hand
    admin.applied.clear()
    t[0] = 20.0
    mgr.run_once()
    assert [(r.strategy, r.baseline.version) for r in admin.applied] == [("single", "1")]
