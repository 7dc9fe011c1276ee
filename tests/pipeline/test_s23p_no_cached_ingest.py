"""A Kubeflow run reads its source and the registry afresh: the steps that read what changes
between runs (ingest: the source; evaluate: the registry's production) and the one that writes
(register) are never served from Kubeflow's cache.

Before: every task of the compiled pipeline had ``enableCache: true`` (kfp's default). A
retraining run that the trigger submits with the same parameters as the last one (the same
``source=s3://bucket/events/`` prefix, now holding new events) got ingest's cached dataset,
so every later step's inputs were the cached artifacts too: the old model, trained on the old
data, with the old gate decision, was registered again as a new version."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from marquee.settings import Settings
from pipelines.cli import app
from pipelines.run import submit
from tests.pipeline.test_pipeline import RecordingClient

FRESH = ("ingest", "evaluate", "register")


def _caching(tasks: dict) -> dict[str, bool]:
    return {name: bool(tasks[name].get("cachingOptions", {}).get("enableCache", False))
            for name in tasks}


def test_compiled_pipeline_never_caches_the_steps_that_read_the_source_or_registry(tmp_path):
    out = tmp_path / "marquee-training.yaml"
    result = CliRunner().invoke(app, ["compile", "-o", str(out)])
    assert result.exit_code == 0, result.output
    caching = _caching(yaml.safe_load(out.read_text())["root"]["dag"]["tasks"])
    assert {name: caching[name] for name in FRESH} == dict.fromkeys(FRESH, False)


def test_a_submitted_run_reads_its_source_afresh(monkeypatch):
    """The retrain trigger submits through ``submit``: the pipeline it sends has no cached
    ingest either."""
    from google.protobuf import json_format

    monkeypatch.delenv("MARQUEE_GATE_TOLERANCE", raising=False)
    client = RecordingClient()
    submit(Settings(), {"source": "s3://events-bucket/events"}, client=client)
    tasks = json_format.MessageToDict(client.calls[0]["func"].pipeline_spec)["root"]["dag"][
        "tasks"]
    caching = _caching(tasks)
    assert {name: caching[name] for name in FRESH} == dict.fromkeys(FRESH, False)
