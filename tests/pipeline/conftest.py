"""Fixtures for the training pipeline tests: a tiny config and isolated Marquee homes."""

from __future__ import annotations

import json

import pytest

# Small enough that a whole pipeline run takes seconds; still a real two-tower model.
TINY_CONFIG = {"retrieval": {"epochs": 2, "dim": 16, "batch_size": 256, "history_len": 20},
               "ranker": {"enabled": False}}
SYNTH = "synth:users=300,items=200,events=8000,seed=7"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """An empty MARQUEE_HOME; settings built from the environment see it."""
    path = tmp_path / "home"
    monkeypatch.setenv("MARQUEE_HOME", str(path))
    for var in ("MARQUEE_STORE_URI", "MARQUEE_REGISTRY_URI", "MARQUEE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    return path


@pytest.fixture()
def tiny_config_json() -> str:
    return json.dumps(TINY_CONFIG)
