"""A ``metric.*`` tag that someone set by hand in the MLflow UI (``n/a``, a note) is not a
number. Before: every reader of that version crashed with ``ValueError: could not convert
string to float`` — ``marquee registry list``/``show`` with a traceback, and through
``get_alias("production")`` the evaluate step of every later training run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from marquee.registry import Registry

NAME = "movie-recommender"


def _marquee(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    return subprocess.run([str(Path(sys.executable).parent / "marquee"), *args],
                          env={**env, "MARQUEE_HOME": str(home)}, capture_output=True,
                          text=True, timeout=120)


def test_a_hand_set_metric_tag_that_is_no_number_does_not_break_readers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    registry = Registry(f"sqlite:///{home / 'registry.db'}")
    version = registry.register("file:///bundles/v1", {"ndcg_at_10": 0.31})
    registry.promote(version)
    registry.client.set_model_version_tag(NAME, str(version), "metric.note", "n/a")  # MLflow UI

    production = registry.get_alias("production")
    assert production is not None and production.version == version
    assert production.metrics == {"ndcg_at_10": 0.31}  # the numbers; the note stays a tag
    assert production.tags["metric.note"] == "n/a"
    assert [v.version for v in registry.list_versions()] == [version]

    listed = _marquee(home, "registry", "list")
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr and "0.3100" in listed.stdout
    shown = _marquee(home, "registry", "show", "production")
    assert shown.returncode == 0, shown.stderr
    assert "metric.note" in shown.stdout and "n/a" in shown.stdout
