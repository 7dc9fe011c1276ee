"""benchmarks/quality.py says what it is fitting before its longest silent stretches
(session 21, K: long work shows progress).

The benchmark runs 16 minutes and logs each model as it is scored. Two stretches had no line
until they ended: the final refit of Marquee retrieval-only and full on the whole training
split (the two biggest fits of a split), and the cold-start run (a popularity and a Marquee
fit). Now a line names each before it starts. The functions run here on a small synthetic
dataset with the quick grids; the peers (implicit, LightFM, cornac) are left out of the split
to keep the test short (they log as before).
"""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

from recsys.data.synth import generate


@pytest.fixture(scope="module")
def quality():  # noqa: ANN201 - the benchmark script, imported as a module
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import quality
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return quality


@pytest.fixture(scope="module")
def data():  # noqa: ANN201
    return generate(300, 200, 6_000, seed=1)


def test_the_final_refit_is_announced_before_it_starts(  # noqa: ANN001
        quality, data, monkeypatch) -> None:
    lines: list[str] = []
    monkeypatch.setattr(quality, "PEERS", ())
    monkeypatch.setattr(quality, "ranker_objectives", lambda *a, **k: {})
    rows, info = quality.run_split("temporal", data, True, lines.append)
    announced = [i for i, line in enumerate(lines) if "fitting retrieval-only and full" in line]
    assert announced, lines
    scored = next(i for i, line in enumerate(lines) if line.startswith("  Marquee (")
                  and "retrieval 0." in line)
    assert announced[0] < scored  # said before the fits, not with their result
    assert lines[announced[0]] == (f"  Marquee ({info['chosen']}): fitting retrieval-only and "
                                   "full on the whole training split")
    assert {r.model for r in rows} == {"popularity", "Marquee retrieval-only", "Marquee full"}


def test_the_cold_start_run_is_announced_before_its_fits(quality, data) -> None:  # noqa: ANN001
    lines: list[str] = []
    config = quality.marquee_candidates(True)["sequential"]
    out = quality.run_cold(data, config, True, lines.append)
    assert lines[0] == (f"[cold] {out['users']} test users keep their first 0-4 training "
                        "events: fitting popularity and Marquee"), lines
    assert lines[1].startswith("  cold popularity: ndcg@10 "), lines
