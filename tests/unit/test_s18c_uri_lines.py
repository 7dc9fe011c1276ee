"""A bundle URI that the docs have users copy is printed whole, on one line.

``marquee pipeline run`` printed ``bundle <uri>`` through rich, which cuts any line at the
terminal's width (80 columns in a pipe): a URI longer than that came out in two pieces, and
``marquee registry show`` folded it inside its table. docs/DEPLOY.md has users copy the
``bundle_uri`` that ``registry show`` prints into a version's ``bundleUri``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from marquee.registry import Registry

TINY_CONFIG = {"retrieval": {"epochs": 2, "dim": 16, "batch_size": 256, "history_len": 20},
               "ranker": {"enabled": False}}
LONG_URI = ("s3://my-bucket/marquee/models/movie-recommender/"
            "20250101T000000Z-0123abcd-with-a-long-prefix-that-is-wider-than-the-terminal")


def _marquee(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(MARQUEE_HOME=str(home), COLUMNS="80", OMP_NUM_THREADS="1")
    return subprocess.run([str(Path(sys.executable).parent / "marquee"), *args], env=env,
                          capture_output=True, text=True, timeout=600)


def test_registry_show_prints_the_bundle_uri_whole(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    registry = Registry(f"sqlite:///{home / 'registry.db'}")
    registry.register(LONG_URI, {"ndcg_at_10": 0.31})

    shown = _marquee(home, "registry", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert f"bundle_uri {LONG_URI}" in shown.stdout.splitlines(), shown.stdout


def test_pipeline_run_prints_the_registered_bundle_uri_whole(tmp_path: Path) -> None:
    home = tmp_path / "a-home-directory-with-a-rather-long-name-so-the-uri-passes-80-columns"
    out = _marquee(home, "pipeline", "run", "--local",
                   "--source", "synth:users=120,items=80,events=2500,seed=7",
                   "--config-json", json.dumps(TINY_CONFIG))
    assert out.returncode == 0, out.stderr[-2000:]
    uri = Registry(f"sqlite:///{home / 'registry.db'}").get_version(1).bundle_uri
    assert len(f"bundle {uri}") > 80
    assert f"bundle {uri}" in out.stdout.splitlines(), out.stdout[-1500:]
