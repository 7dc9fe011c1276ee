"""Defects found in the rollout controller, its spec and its statistics (helper C's hunt).

Each test goes through a public entry point (the controller with a real file store, the
spec parser, the ``marquee`` CLI as a process, the assignment function) and asserts what a
release owner relies on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from serving.router.schema import ShadowWindow, VariantWindow, WindowStats
from serving.rollout.controller import Controller
from serving.rollout.spec import SpecError, parse_rollout
from serving.rollout.status import Phase
from serving.rollout.store import FileStatusStore
from tests.conftest import REPO
from tests.rollout.test_rollout_controller import Clock, DictRegistry


def _doc(name: str = "r1", **spec: Any) -> dict[str, Any]:
    body = {"baseline": {"alias": "production"}, "candidate": {"version": "2"},
            "strategy": "canary", "intervalSeconds": 1, **spec}
    return {"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name}, "spec": body}


class BrokenCandidate:
    """The router's window when the candidate answers every request with an error: no
    latency is recorded for it (only successful requests have one), no mirrored list."""

    def window(self, since: float, until: float) -> WindowStats:
        return WindowStats(
            since=since, until=until,
            variants={"baseline": VariantWindow(requests=900, latency_p99_ms=10.0),
                      "candidate": VariantWindow(requests=100, errors=100)},
            shadow=ShadowWindow(mirrored=1000, errors=1000, baseline_latency_p99_ms=10.0))


# --- a check that cannot be measured never passes ------------------------------------------------
@pytest.mark.parametrize("strategy, metrics", [
    ("canary", [{"name": "latencyP99Ms", "max": 250}]),
    ("canary", [{"name": "latencyP99Ratio", "max": 2.0}]),
    ("shadow", [{"name": "topKOverlap", "min": 0.5}]),
    ("shadow", [{"name": "latencyP99Ms", "max": 250}]),
])
def test_a_candidate_that_fails_every_request_is_never_promoted(
        tmp_path: Path, strategy: str, metrics: list[dict[str, Any]]) -> None:
    """Before: a check whose value could not be computed (no successful candidate request,
    so no latency and no list to compare) counted as passed, and a candidate that errored on
    every request walked all canary steps into production."""
    store = FileStatusStore(tmp_path)
    store.create(parse_rollout(_doc(
        strategy=strategy, steps=[{"weight": 10}, {"weight": 100}],
        shadow={"minRequests": 100, "promoteTo": "canary"},
        analysis={"minRequests": 50, "metrics": metrics})))
    reg = DictRegistry(production="1")
    final = Controller(store, "r1", BrokenCandidate(), registry=reg,
                       clock=Clock()).run(max_ticks=8)
    assert final.phase in (Phase.PROGRESSING, Phase.SHADOWING), final.message
    assert final.step <= 1 and reg.aliases["production"] == "1"
    assert f"{metrics[0]['name']} not measurable" in final.message


# --- specs that could never finish are refused before anything is created -----------------------
def _marquee(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MARQUEE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "marquee.cli", "rollout", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("spec, field", [
    ({"steps": [{"weight": 0}, {"weight": 50}]}, "steps[0].weight"),
    ({"steps": [{"pause": {"seconds": 60}}, {"weight": 50}]}, "steps[0].pause"),
    ({"candidate": {"version": "v2"}}, "spec.candidate.version"),
    ({"baseline": {"version": "2"}, "candidate": {"version": "2"}}, "candidate: the same"),
])
def test_a_spec_that_can_never_finish_is_refused_naming_the_field(
        tmp_path: Path, spec: dict[str, Any], field: str) -> None:
    """Before: each was created, and then sat at a step with no candidate traffic until
    ``maxDurationSeconds`` (24 h) and failed, or failed at its first tick."""
    import yaml

    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(_doc("bad", **spec)))
    r = _marquee(tmp_path / "home", "start", "-f", str(path), "--detach")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0], r.stderr
    assert not (tmp_path / "home" / "rollouts" / "bad").exists()


def test_a_gate_before_the_first_step_is_still_allowed() -> None:
    """A pause without seconds needs no analysis (only `marquee rollout promote` opens it)."""
    rollout = parse_rollout(_doc(steps=[{"pause": {}}, {"weight": 10}, {"pause": {"seconds": 5}},
                                        {"weight": 100}]))
    assert len(rollout.spec.steps) == 4
    with pytest.raises(SpecError, match="candidate: the same"):
        parse_rollout(_doc(baseline={"alias": "production"}, candidate={"alias": "production"}))


# --- a transient failure does not kill `marquee rollout run` mid-promotion --------------------------
class FlakyRegistry(DictRegistry):
    """The registry is unreachable the first time the controller moves ``production``."""

    def __init__(self, **aliases: str) -> None:
        super().__init__(**aliases)
        self.failures = 1

    def promote(self, version: str) -> None:
        if self.failures:
            self.failures -= 1
            from marquee.errors import RegistryError

            raise RegistryError("registry unreachable: connection refused")
        super().promote(version)


class Healthy:
    def window(self, since: float, until: float) -> WindowStats:
        return WindowStats(since=since, until=until, variants={
            "baseline": VariantWindow(requests=900, latency_p99_ms=10.0),
            "candidate": VariantWindow(requests=100, latency_p99_ms=10.0)})


def test_the_controller_loop_retries_a_tick_that_failed(tmp_path: Path) -> None:
    """Before: the exception left ``Controller.run`` (the loop of ``marquee rollout start`` and
    ``run``), so the controller exited with the rollout in Promoting: all traffic on the
    candidate while the registry still named the baseline as production."""
    store = FileStatusStore(tmp_path)
    store.create(parse_rollout(_doc(intervalSeconds=0.01, steps=[{"weight": 100}],
                                    analysis={"minRequests": 50,
                                              "metrics": [{"name": "errorRate", "max": 0.05}]})))
    reg = FlakyRegistry(production="1")
    final = Controller(store, "r1", Healthy(), registry=reg, clock=Clock()).run(max_ticks=10)
    assert reg.failures == 0  # the failure did happen
    assert final.phase == Phase.SUCCEEDED and store.get("r1").status.phase == Phase.SUCCEEDED
    assert reg.aliases == {"production": "2", "previous": "1"}


# --- sticky assignment: a new salt reshuffles users, however long -----------------------------------
def test_salts_that_differ_after_64_bytes_still_reshuffle_users() -> None:
    """The salt defaults to the rollout name (up to 253 characters). Before: only its first 64
    bytes keyed the hash, so two rollouts whose names shared those bytes put exactly the same
    users on their candidates."""
    from serving.router.assignment import assign, bucket

    prefix = "movie-recommender-two-tower-retrieval-dim64-ranker-lightgbm-canary-"  # 67 bytes
    first, second = prefix + "v7", prefix + "v8"
    users = range(20_000)
    a = [assign(u, first, 10) for u in users]
    b = [assign(u, second, 10) for u in users]
    both = sum(x == y == "candidate" for x, y in zip(a, b))
    # Independent 10% splits share ~1% of users, never all of them.
    assert both < 0.03 * len(users) and a.count("candidate") > 0.08 * len(users)
    assert all(bucket(u, first) == bucket(u, first) for u in range(100))  # still sticky
    # Salts up to 64 bytes keep their buckets (running experiments do not reshuffle).
    assert bucket(42, "canary-v2") == 9841


# --- a damaged or newer status file: one clear line, never a traceback or "invalid settings" -------
@pytest.mark.parametrize("content, expected", [
    ('{"phase": "Progr', "damaged, not JSON"),
    ('{"phase": "Verifying", "step": 1}', "written by a newer one"),
    ('[1, 2]', "status is not a mapping"),
])
def test_an_unreadable_status_file_is_named_in_one_error_line(
        tmp_path: Path, content: str, expected: str) -> None:
    """Before: a traceback (JSONDecodeError), or ``error: invalid settings: phase: …`` with
    exit code 2, as if the user's MARQUEE_* settings were wrong, naming no file."""
    home = tmp_path / "home"
    store = FileStatusStore(home / "rollouts")
    store.create(parse_rollout(_doc()))
    path = home / "rollouts" / "r1" / "status.json"
    path.write_text(content)
    for args in (("status", "r1"), ("history", "r1"), ("abort", "r1")):
        r = _marquee(home, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, r.stderr)
        assert str(path) in lines[0] and expected in lines[0], lines[0]
    assert path.read_text() == content  # nothing overwritten
    assert store.pending_command("r1") is None


# --- `abort` is honoured in every phase, Promoting included ------------------------------------------
def test_abort_while_promoting_rolls_back_instead_of_being_dropped(tmp_path: Path) -> None:
    """Before: `marquee rollout abort` said "abort requested … applies it at its next tick"
    while the rollout was Promoting, and the next tick promoted the candidate anyway and
    silently deleted the abort, although the README says abort is honoured in every phase."""
    home = tmp_path / "home"
    store = FileStatusStore(home / "rollouts")
    store.create(parse_rollout(_doc(steps=[{"weight": 100}], analysis={
        "minRequests": 50, "metrics": [{"name": "errorRate", "max": 0.05}]})))
    reg = DictRegistry(production="1", previous="3")
    c = Controller(store, "r1", Healthy(), registry=reg, clock=Clock())
    c.tick()
    assert c.tick().phase == Phase.PROMOTING
    r = _marquee(home, "abort", "r1")
    assert r.returncode == 0, r.stderr
    final = c.tick()
    assert final.phase == Phase.ROLLED_BACK and final.message == "aborted by user"
    assert reg.aliases == {"production": "1", "previous": "3"}  # as before the rollout
    assert store.pending_command("r1") is None
    assert json.loads(_marquee(home, "status", "r1", "-o", "json").stdout)["r1"]["phase"] == \
        "RolledBack"


@pytest.mark.parametrize("spec, field", [
    ({"stickinessSalt": "s" * 254}, "spec.stickinessSalt"),
    ({"modelName": ""}, "spec.modelName"),
    ({"intervalSeconds": 86_401}, "spec.intervalSeconds"),
    ({"steps": [{"weight": 10}, {"pause": {"seconds": 604_801}}]}, "spec.steps.1.pause.seconds"),
])
def test_a_local_spec_is_held_to_the_bounds_of_the_crd(spec: dict[str, Any], field: str) -> None:
    """The same ModelRollout must be valid in a file and in Kubernetes: before, these were
    accepted locally although the chart's CRD refuses them."""
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse_rollout(_doc(**spec))
    crd = (REPO / "helm/marquee/templates/controller/crd-modelrollouts.yaml").read_text()
    assert "maxLength: 253" in crd and "maximum: 86400" in crd and "maximum: 604800" in crd
