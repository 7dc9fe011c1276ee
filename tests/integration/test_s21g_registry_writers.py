"""Two writers at once on one SQLite registry (one MARQUEE_HOME): the embedded default.

Each race is forced: processes held at a start gate, or a hook that stops one writer at the
point where the other used to slip in, and lets it go when the other is done or has waited
a few seconds (then it is blocked on the registry's lock, which is the fix).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kfp.dsl import Artifact, Dataset, Metrics, Model

from marquee.registry import Registry
from tests.pipeline.conftest import SYNTH, TINY_CONFIG

ROOT = Path(__file__).resolve().parents[2]
HOLD_SECONDS = 3.0  # how long a held writer waits for the other to get past it

_OPEN_AT_THE_GATE = """
import json, sys, time
from pathlib import Path
import mlflow  # noqa: F401 - imported before the gate: the processes open the registry together
from marquee.registry import Registry
registry, gate = Registry(sys.argv[1]), Path(sys.argv[2])
Path(sys.argv[3]).touch()
while not gate.exists():
    time.sleep(0.005)
try:
    print(json.dumps([v.version for v in registry.list_versions()]))
except Exception as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
"""


def test_processes_opening_a_new_sqlite_registry_at_once_all_work(tmp_path: Path) -> None:
    """Before: MLflow creates and migrates the tables of a new database when a process opens
    it; three processes doing it together (two `marquee pipeline run` on a fresh home: their
    evaluate steps) each failed ("duplicate column name: step", "table _alembic_tmp_metrics
    already exists") and left a half-migrated registry.db that no process could open again.
    Now the opening is serialized by an flock on registry.db.lock."""
    uri = f"sqlite:///{tmp_path / 'home' / 'registry.db'}"
    gate = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT_THE_GATE, uri, str(gate), str(r)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for r in ready]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline \
            and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    gate.touch()  # all three past their imports: they meet at the new database together
    results = [p.communicate(timeout=180) for p in procs]
    errors = [err.strip().splitlines()[-1] for (out, err), p in zip(results, procs)
              if p.returncode != 0]
    assert errors == []
    assert [json.loads(out.strip().splitlines()[-1]) for out, _ in results] == [[], [], []]
    assert Registry(uri, create=False).list_versions() == []  # and it opens afterwards


def _registry_with_versions(tmp_path: Path, n: int) -> Registry:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    for i in range(1, n + 1):
        assert registry.register(f"file:///bundles/{i}", {"ndcg_at_10": 0.1 * i}) == i
    return registry


def test_two_promotions_at_once_leave_previous_on_the_production_they_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: ``promote`` read the aliases, then moved ``previous`` and ``production``. Two
    promotions at once (a rollout controller promoting while someone runs ``marquee registry
    promote``) both read production=1; the second to finish set previous=1 over the first's
    production, which vanished from the rollback chain (production=2, previous=1, version 3
    promoted a moment ago forgotten). Now a promotion holds the registry's lock: the second
    sees the first's production and makes it ``previous``."""
    registry = _registry_with_versions(tmp_path, 3)
    registry.promote(1)
    b_done = threading.Event()
    held: list[bool] = []
    set_alias = Registry.set_alias

    def holding_set_alias(self: Registry, alias: str, version: int | str) -> None:
        if threading.current_thread().name == "A" and not held:
            held.append(True)  # A has read production=1; B promotes now, or waits for A
            b_done.wait(HOLD_SECONDS)
        set_alias(self, alias, version)

    monkeypatch.setattr(Registry, "set_alias", holding_set_alias)
    results: dict[str, object] = {}

    def promote(name: str, version: int) -> None:
        try:
            results[name] = Registry(registry.tracking_uri).promote(version)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[name] = exc
        if name == "B":
            b_done.set()

    a = threading.Thread(target=promote, args=("A", 2), name="A")
    a.start()
    while not held and a.is_alive():
        time.sleep(0.01)
    b = threading.Thread(target=promote, args=("B", 3), name="B")
    b.start()
    a.join(60)
    b.join(60)
    first, second = sorted((results["A"], results["B"]), key=lambda p: p.previous == 1,
                           reverse=True)  # type: ignore[union-attr]
    assert first.previous == 1  # type: ignore[union-attr]
    assert second.previous == first.production  # type: ignore[union-attr]
    aliases = {a: Registry(registry.tracking_uri).get_alias(a) for a in ("production", "previous")}
    assert aliases["production"].version == second.production  # type: ignore[union-attr]
    assert aliases["previous"].version == first.production  # type: ignore[union-attr]


def _evaluated(root: Path, home: Path) -> dict[str, object]:
    """ingest → … → evaluate on a fresh home: a report whose gate says promoted-first."""
    from components.factory import build_components

    c = build_components()

    def art(cls, name):  # noqa: ANN001, ANN202
        return cls(name=name, uri=str(root / name))

    ds, ok, st = art(Dataset, "raw"), art(Dataset, "validated"), art(Metrics, "s")
    c.ingest.python_func(source=SYNTH, dataset=ds, home=str(home))
    c.validate.python_func(dataset=ds, validated=ok, stats=st)
    tr, va, te = (art(Dataset, n) for n in ("train", "val", "test"))
    c.split.python_func(dataset=ok, train=tr, val=va, test=te, mode="user_temporal",
                        test_frac=0.2, val_frac=0.1, seed=1)
    ref = art(Dataset, "reference")
    c.features.python_func(dataset=ok, train=tr, reference=ref, max_rows=500, seed=1)
    bp = art(Artifact, "best_params")
    c.tune.python_func(dataset=ok, train=tr, val=va, best_params=bp, n_trials=0)
    model, stats = art(Model, "model"), art(Metrics, "train_stats")
    c.train.python_func(dataset=ok, train=tr, val=va, best_params=bp, model=model, stats=stats,
                        config_json=json.dumps(TINY_CONFIG), seed=1)
    scores, report = art(Metrics, "scores"), art(Artifact, "report")
    c.evaluate.python_func(dataset=ok, train=tr, val=va, test=te, model=model, scores=scores,
                           report=report, tolerance=0.05, home=str(home))
    assert json.loads(Path(report.path).read_text())["gate"]["decision"] == "promoted-first"
    return dict(dataset=ok, model=model, reference=ref, report=report, best_params=bp,
                register=c.register)


def test_two_runs_that_found_no_production_register_one_first_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the register step checked "still no production?", then registered, then
    promoted. Two runs on one fresh home (the retrain trigger's and an on-call engineer's
    `marquee retrain --local`) both passed the check before either promoted: both versions
    were registered "promoted-first", and the second became production over the first
    without ever being gated against it. Now the check, the registration and the promotion
    are one turn under the registry's lock: the second run finds the first's production and
    fails its register step, registering nothing."""
    home = tmp_path / "home"
    for var in ("MARQUEE_STORE_URI", "MARQUEE_REGISTRY_URI", "MARQUEE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MARQUEE_HOME", str(home))
    run = _evaluated(tmp_path / "run", home)
    register_fn = run.pop("register").python_func  # type: ignore[attr-defined]
    a_registered, b_checked = threading.Event(), threading.Event()
    register, get_alias = Registry.register, Registry.get_alias

    def holding_register(self: Registry, *args: object, **kwargs: object) -> int:
        number = register(self, *args, **kwargs)
        if threading.current_thread().name == "A":
            a_registered.set()  # registered, not yet promoted: B checks now, or waits for A
            b_checked.wait(HOLD_SECONDS)
        return number

    def noting_get_alias(self: Registry, alias: str):  # noqa: ANN202
        found = get_alias(self, alias)
        if threading.current_thread().name == "B":
            b_checked.set()
        return found

    monkeypatch.setattr(Registry, "register", holding_register)
    monkeypatch.setattr(Registry, "get_alias", noting_get_alias)
    outcome: dict[str, object] = {}

    def step(name: str) -> None:
        try:
            outcome[name] = register_fn(
                registered=Artifact(name="registered", uri=str(tmp_path / f"registered-{name}")),
                run_id=f"run-{name}", home=str(home), **run)
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            outcome[name] = exc

    a = threading.Thread(target=step, args=("A",), name="A")
    a.start()
    while not a_registered.is_set() and a.is_alive():
        a_registered.wait(0.05)
    b = threading.Thread(target=step, args=("B",), name="B")
    b.start()
    a.join(120)
    b.join(120)
    assert outcome["A"] == 1
    assert isinstance(outcome["B"], RuntimeError), outcome["B"]
    assert "version 1 became production after this run's evaluation found none" in str(
        outcome["B"])
    versions = Registry(f"sqlite:///{home / 'registry.db'}").list_versions()
    assert [(v.version, v.aliases, v.gate_decision) for v in versions] == [
        (1, ["production"], "promoted-first")]
