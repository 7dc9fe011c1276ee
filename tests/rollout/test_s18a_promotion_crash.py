"""A rollout controller that dies between two steps of a promotion or a rollback, and is
started again (helper A, session 18).

The registry is the real one (MLflow on SQLite) and the router a real ``marquee router`` on
127.0.0.1. The controller's process "dies" after a given number of effects (alias writes and
routing PUTs): from then on every write of that controller fails, as nothing more of a killed
process reaches the registry or the router. A new controller over the same status store, the
same registry and the same router then ticks the rollout to its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from marquee.registry import Registry
from serving.rollout.controller import Controller, MarqueeRegistry
from serving.rollout.sources import RouterAdmin
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore
from tests.rollout.test_hunt_rollout import Healthy, _doc
from tests.rollout.rollout_support import Proc, start_router
from tests.rollout.test_rollout_controller import Clock

MODEL = "movie-recommender"
_WRITES = ("set_registered_model_alias", "delete_registered_model_alias")


class Died(BaseException):
    """The process is gone (SIGKILL): not an error anything in it could handle."""


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    root = tmp_path_factory.mktemp("s18a-router")
    proc = start_router({"1": "http://127.0.0.1:9", "2": "http://127.0.0.1:10"}, "1",
                        root / "home", root, exposure_log_enabled=False)
    yield proc
    proc.stop()


def _dies_after(controller: Controller, effects: int) -> None:
    """Let ``effects`` alias writes or routing PUTs through, then fail every later one."""
    left = {"n": effects}

    def dying(real):  # noqa: ANN001, ANN202
        def effect(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if left["n"] <= 0:
                raise Died()
            left["n"] -= 1
            return real(*args, **kwargs)
        return effect

    client = controller.registry.registry.client  # type: ignore[union-attr]
    for method in _WRITES:
        setattr(client, method, dying(getattr(client, method)))
    router = controller.router
    router.apply = dying(router.apply)  # type: ignore[union-attr, method-assign]


def _setup(tmp_path: Path) -> tuple[str, FileStatusStore]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    registry = Registry(uri, MODEL)
    for v in (1, 2):
        registry.register(f"file:///bundles/{v}", {"ndcg_at_10": 0.1})
    registry.set_alias("production", 1)
    registry.set_alias("candidate", 2)  # what the pipeline's gate names
    store = FileStatusStore(tmp_path / "rollouts")
    store.create(parse_rollout(_doc(steps=[{"weight": 100}], analysis={
        "minRequests": 50, "metrics": [{"name": "errorRate", "max": 0.05}]})))
    return uri, store


def _controller(uri: str, store: FileStatusStore, router: Proc) -> Controller:
    return Controller(store, "r1", Healthy(), router=RouterAdmin(router.url),
                      registry=MarqueeRegistry(uri, MODEL), clock=Clock())


@pytest.mark.parametrize("effects", [0, 1, 2, 3, 4, 5])
def test_a_promotion_cut_short_by_a_dead_controller_ends_consistent(
        tmp_path: Path, router: Proc, effects: int) -> None:
    """The promoting tick puts all traffic on the candidate, writes ``previous`` (the old
    production), ``production`` (the candidate), removes ``candidate``, then routes again.
    Before: a controller that died after moving ``production`` left ``candidate`` on the new
    production version for good (the restarted one saw production moved and did nothing
    more), so 'registry list' and a server started on the ``candidate`` alias named the
    production model as the next one to try."""
    uri, store = _setup(tmp_path)
    first = _controller(uri, store, router)
    first.tick()
    assert first.tick().phase == Phase.PROMOTING
    _dies_after(first, effects)
    try:
        first.tick()
    except Died:
        pass
    again = _controller(uri, FileStatusStore(store.root), router)
    for _ in range(3):
        final = again.tick()
    assert final.phase == Phase.SUCCEEDED, final.message
    assert Registry(uri, MODEL)._aliases() == {"production": 2, "previous": 1}
    assert [v.aliases for v in Registry(uri, MODEL).list_versions()] == [["previous"],
                                                                         ["production"]]
    routing = RouterAdmin(router.url).routing()
    assert routing is not None and routing["strategy"] == "single", routing
    assert routing["baseline"]["version"] == "2", routing


def test_promoting_again_after_a_promotion_cut_short_finishes_it(tmp_path: Path) -> None:
    """``Registry.promote`` (also what the pipeline's register step calls) run again after
    a process died between moving ``production`` and removing ``candidate``: before, it saw
    production in place and returned, leaving ``candidate`` on the production version."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    registry = Registry(uri, MODEL)
    for v in (1, 2, 3):
        registry.register(f"file:///bundles/{v}", {"ndcg_at_10": 0.1})
    registry.set_alias("previous", 1)
    registry.set_alias("production", 2)
    registry.set_alias("candidate", 3)
    # the first attempt moved previous and production, then the process died
    registry.set_alias("previous", 2)
    registry.set_alias("production", 3)
    promotion = Registry(uri, MODEL).promote(3)
    assert promotion.production == 3 and promotion.previous == 2
    assert Registry(uri, MODEL)._aliases() == {"production": 3, "previous": 2}
