"""The training pipeline: compiled IR YAML, local runs with kfp.local, Kubeflow submission."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from marquee.errors import InvalidArgumentError
from marquee.registry import Registry
from marquee.settings import Settings
from pipelines.run import compile_pipeline, run_local, submit
from tests.pipeline.conftest import SYNTH, TINY_CONFIG

STEPS = {"ingest", "validate", "split", "features", "tune", "train", "evaluate", "register"}


def test_compiled_yaml_loads_back_with_every_component(tmp_path):
    from kfp import components

    path = compile_pipeline(tmp_path / "pipeline.yaml", base_image="registry.example/marquee:9")
    spec = yaml.safe_load(path.read_text())
    assert spec["pipelineInfo"]["name"] == "marquee-training"
    assert set(spec["root"]["dag"]["tasks"]) == STEPS
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/marquee:9"}
    # no run-time pip install: the image carries kfp and the project
    assert not any("pip install" in " ".join(e["container"].get("command", []))
                   for e in executors.values())
    # the registered version carries the Kubeflow run's id, which the retrain trigger follows
    register_params = spec["root"]["dag"]["tasks"]["register"]["inputs"]["parameters"]
    assert register_params["run_uid"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "marquee-training"
    assert {"source", "split_mode", "n_trials", "config_json"} <= set(loaded.component_spec.inputs)


def test_cli_compile(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    out = tmp_path / "p.yaml"
    result = CliRunner().invoke(app, ["compile", "-o", str(out), "--image", "img:1"])
    assert result.exit_code == 0, result.output
    assert "img:1" in out.read_text()


@pytest.mark.slow
def test_local_run_twice_on_movielens(home):
    """What `make demo` does: MovieLens-100k, first run → production, second gated against it."""
    settings = Settings()
    params = {"config_json": TINY_CONFIG, "reference_rows": 2000}
    first = run_local(settings, params)
    assert first.gate == "promoted-first" and first.version == 1
    second = run_local(settings, params)
    assert second.version == 2 and second.gate in ("candidate", "rejected")
    reg = Registry(settings.resolved_registry_uri)
    v1, v2 = reg.get_version(1), reg.get_version(2)
    for info in (v1, v2):
        for tag in ("metric.ndcg_at_10", "metric.recall_at_50", "metric.map_at_10",
                    "metric.coverage_at_10", "gate.decision"):
            assert tag in info.tags
        assert info.tags["pipeline_run_id"].startswith("marquee-training-")
        assert info.tags["pipeline_run_uid"]  # the run's id (Kubeflow: what get_run takes)
    assert v1.tags["pipeline_run_uid"] != v2.tags["pipeline_run_uid"]
    assert float(v2.tags["gate.production_ndcg_at_10"]) == pytest.approx(v1.metrics["ndcg_at_10"],
                                                                          rel=1e-4)
    assert v1.metrics["users_evaluated"] == 943  # every MovieLens user has held-out events


@pytest.mark.slow
def test_local_run_tunes_and_registers_the_multi_stage_model(home):
    """tune → train → register with the ranker on: the registered bundle is the multi-stage
    model, the study searched around ``config_json`` and train applied what it chose."""
    from marquee.bundle import fetch_bundle
    from recsys.recommender import Recommender

    base = {"retrieval": {"epochs": 2, "dim": 16, "batch_size": 256, "history_len": 20},
            "ranker": {"enabled": True, "folds": 1, "n_candidates": 50, "n_estimators": 20,
                       "early_stopping_rounds": 0}}
    settings = Settings()
    result = run_local(settings, {"source": SYNTH, "config_json": base, "n_trials": 2,
                                  "tune_timeout_seconds": 300, "reference_rows": 500})
    assert result.gate == "promoted-first"
    info = Registry(settings.resolved_registry_uri).get_version(result.version)
    tuned = json.loads(info.tags["best_params"])
    assert set(tuned) == {"retrieval", "ranker"}
    # the search behind it, in the registry too (session 20: only best_params was)
    assert info.tags["tuning.search"] == "ran" and info.tags["tuning.n_trials"] == "2"
    assert int(info.tags["tuning.completed"]) + int(info.tags["tuning.pruned"]) \
        + int(info.tags["tuning.failed"]) == 2
    assert float(info.tags["tuning.best_value"]) > 0
    # searched around the base (half to twice its size), not the library defaults
    assert tuned["retrieval"]["dim"] in (8, 16, 32)
    assert 1 <= tuned["retrieval"]["epochs"] <= 4
    params = json.loads(info.tags["params"])  # the configuration the bundle was trained with
    assert params["retrieval"]["dim"] == tuned["retrieval"]["dim"]
    assert params["ranker"]["objective"] == tuned["ranker"]["objective"]
    assert params["ranker"]["n_candidates"] == 50  # config_json kept where tune was silent
    path, _ = fetch_bundle(result.bundle_uri, home / "dl")
    rec = Recommender.load(path)
    assert rec.ranker is not None
    recs = rec.recommend([1, 2, 3], k=5)
    assert len(recs) == 15


@pytest.mark.integration
def test_pipeline_with_store_on_s3(home, s3_env, monkeypatch):
    """Bundle upload to a real S3-protocol server, registry entry, download, checksum check."""
    import boto3

    from marquee.bundle import fetch_bundle
    from recsys.recommender import Recommender

    monkeypatch.setenv("MARQUEE_STORE_URI", "s3://marquee-test/platform")
    monkeypatch.setenv("MARQUEE_S3_ENDPOINT_URL", s3_env)
    settings = Settings()
    result = run_local(settings, {"source": SYNTH, "config_json": TINY_CONFIG,
                                  "reference_rows": 500})
    assert result.bundle_uri.startswith("s3://marquee-test/platform/models/movie-recommender/")
    s3 = boto3.client("s3", endpoint_url=s3_env)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="marquee-test")["Contents"]]
    assert any(k.endswith("/bundle.json") for k in keys)
    assert any(k.endswith("/model/retrieval.safetensors") for k in keys)
    uri = Registry(settings.resolved_registry_uri).resolve("production")
    assert uri == result.bundle_uri
    info = Registry(settings.resolved_registry_uri).get_version(result.version)
    assert info.tags["tuning.search"] == "skipped (n_trials=0)"  # {} alone could not say
    path, manifest = fetch_bundle(uri, home / "dl", s3_endpoint_url=s3_env)
    assert manifest.files and all(len(d) == 64 for d in manifest.files.values())
    recs = Recommender.load(path).recommend([1, 2], k=5)
    assert len(recs) == 10
    # a tampered object in the bucket is refused on download
    key = next(k for k in keys if k.endswith("model/items.parquet"))
    s3.put_object(Bucket="marquee-test", Key=key, Body=b"tampered",
                  Metadata=s3.head_object(Bucket="marquee-test", Key=key)["Metadata"])
    with pytest.raises(Exception, match="items.parquet"):
        fetch_bundle(uri, home / "dl2", s3_endpoint_url=s3_env)


class RecordingClient:
    """Stands in for kfp.Client: no Kubeflow host is reachable from this machine."""

    def __init__(self):
        self.calls = []

    def create_run_from_pipeline_func(self, pipeline_func, arguments, run_name, experiment_name):
        self.calls.append(dict(func=pipeline_func, arguments=arguments, run_name=run_name,
                               experiment_name=experiment_name))

        class Run:
            run_id = "run-123"
        return Run()


def test_submit_builds_the_kubeflow_call(monkeypatch):
    monkeypatch.setenv("MARQUEE_PIPELINE_IMAGE", "registry.example/marquee:7")
    client = RecordingClient()
    run_id = submit(Settings(), {"n_trials": 8, "config_json": {"ranker": {"enabled": True}}},
                    client=client)
    assert run_id == "run-123"
    call = client.calls[0]
    assert call["experiment_name"] == "marquee"
    assert call["run_name"].startswith("marquee-training-")
    assert call["arguments"]["n_trials"] == 8
    assert json.loads(call["arguments"]["config_json"]) == {"ranker": {"enabled": True}}
    # nothing set explicitly: the pods' environment decides (never this machine's paths)
    assert "store_uri" not in call["arguments"] and "registry_uri" not in call["arguments"]
    assert "home" not in call["arguments"]
    from google.protobuf import json_format

    spec = json_format.MessageToDict(call["func"].pipeline_spec)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/marquee:7"}


def test_submit_passes_the_shared_store_and_registry_to_the_run(monkeypatch):
    """The retrain trigger in a cluster has MARQUEE_STORE_URI and MARQUEE_REGISTRY_URI from
    the chart: its runs must register there, not in a pod-local .marquee that dies with the
    pod."""
    monkeypatch.setenv("MARQUEE_STORE_URI", "s3://models-bucket/marquee")
    monkeypatch.setenv("MARQUEE_REGISTRY_URI", "http://marquee-mlflow:5000")
    monkeypatch.setenv("MARQUEE_S3_ENDPOINT_URL", "http://minio.minio:9000")
    client = RecordingClient()
    submit(Settings(), {"n_trials": 2}, client=client)
    args = client.calls[0]["arguments"]
    assert args["store_uri"] == "s3://models-bucket/marquee"
    assert args["registry_uri"] == "http://marquee-mlflow:5000"
    assert args["s3_endpoint_url"] == "http://minio.minio:9000"
    assert "home" not in args
    # a password in a URI would be shown to everyone who can see the run
    monkeypatch.setenv("MARQUEE_REGISTRY_URI", "postgresql://mlflow:s3cret@db:5432/mlflow")
    with pytest.raises(InvalidArgumentError, match="carries a password") as err:
        submit(Settings(), {}, client=RecordingClient())
    assert "s3cret" not in str(err.value) and "mlflow:***@db:5432" in str(err.value)


def test_submit_passes_the_gate_tolerance_and_seed_to_the_run(monkeypatch):
    """The chart's settings.gateTolerance and settings.seed (MARQUEE_GATE_TOLERANCE,
    MARQUEE_SEED, set for the retrain trigger) reach a Kubeflow run's evaluate (gate) and
    training steps as pipeline parameters; a value the caller passes wins. The client is a
    fake (RecordingClient): no Kubeflow host can run on this machine."""
    from google.protobuf import json_format

    monkeypatch.setenv("MARQUEE_GATE_TOLERANCE", "0.07")
    monkeypatch.setenv("MARQUEE_SEED", "11")
    client = RecordingClient()
    submit(Settings(), {"n_trials": 2}, client=client)
    call = client.calls[0]
    assert call["arguments"]["gate_tolerance"] == 0.07
    assert call["arguments"]["seed"] == 11
    # the parameters feed the gate and the training seed in the submitted pipeline
    tasks = json_format.MessageToDict(call["func"].pipeline_spec)["root"]["dag"]["tasks"]
    assert tasks["evaluate"]["inputs"]["parameters"]["tolerance"] == {
        "componentInputParameter": "gate_tolerance"}
    assert tasks["train"]["inputs"]["parameters"]["seed"] == {"componentInputParameter": "seed"}
    # the caller's own values are not overridden
    submit(Settings(), {"gate_tolerance": 0.0, "seed": 3}, client=client)
    assert client.calls[1]["arguments"]["gate_tolerance"] == 0.0
    assert client.calls[1]["arguments"]["seed"] == 3
    # not set: left to the pipeline's and the pods' defaults, as for the store
    monkeypatch.delenv("MARQUEE_GATE_TOLERANCE")
    monkeypatch.delenv("MARQUEE_SEED")
    submit(Settings(), {}, client=client)
    assert "gate_tolerance" not in client.calls[2]["arguments"]
    assert "seed" not in client.calls[2]["arguments"]


def test_submit_without_host_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("MARQUEE_KUBEFLOW_HOST", raising=False)
    with pytest.raises(InvalidArgumentError, match="MARQUEE_KUBEFLOW_HOST"):
        submit(Settings(), {})


def test_a_failed_step_ends_the_command_with_its_step_and_cause(home):
    """``marquee pipeline run`` with a source directory that holds no tables: the ingest step
    fails, and the command ends with one line naming the step and its cause (not kfp's
    traceback with colour codes), exit 1, nothing registered. (A directory that does not exist
    is refused before the run starts: tests/unit/test_s21i_pipeline_local_source.py.)"""
    import os
    import subprocess
    import sys

    empty = home / "empty-dataset"
    empty.mkdir(parents=True)
    out = subprocess.run([sys.executable, "-m", "marquee.cli", "pipeline", "run", "--local",
                          "--source", str(empty)],
                         env={**os.environ, "MARQUEE_HOME": str(home)}, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith(
        f"error: pipeline 'marquee-training' failed in step 'ingest': "
        f"recsys.data.errors.DataValidationError: {empty}: data validation failed: ")
    assert "Traceback" not in out.stderr  # the step's own is in its log, on stdout
    assert Registry(Settings(home=home).resolved_registry_uri,
                    "movie-recommender").list_versions() == []


@pytest.mark.parametrize(("params", "message"), [
    ({"config_json": "{bad"}, "config_json='{bad': not JSON"),
    ({"config_json": "[1]"}, "must be a JSON object"),
    ({"config_json": {"retrieval": {"epochz": 2}}},
     "retrieval.epochz: Extra inputs are not permitted"),
    ({"config_json": {"ranker": {"folds": "x"}}}, "ranker.folds: Input should be a valid integer"),
    ({"split_mode": "weekly"}, "split_mode='weekly': use one of user_temporal, temporal"),
    ({"n_trials": -1}, "n_trials=-1: must be 0 or more"),
    ({"epochs": 3}, "params=['epochs']: not parameters of the pipeline 'marquee-training'"),
    ({"test_frac": 1.5}, "test_frac=1.5: must be in [0, 1)"),
    ({"test_frac": 0.6, "val_frac": 0.4}, "test_frac + val_frac must be below 1"),
    ({"seed": "abc"}, "seed='abc': must be an integer"),
    ({"n_trials": True}, "n_trials=True: must be an integer"),
    ({"test_frac": "abc"}, "test_frac='abc': must be a number"),
    ({"source": 123}, "source=123: must be a string"),
    ({"tune_timeout_seconds": 0}, "tune_timeout_seconds=0: must be 1 or more"),
    ({"gate_tolerance": 1.5}, "gate_tolerance=1.5: must be from 0 to 1"),
    ({"gate_tolerance": float("nan")}, "gate_tolerance=nan: must be from 0 to 1"),
    ({"source": "synth:users=10,colour=red"}, "'colour=red' is not one of users=N"),
])
def test_bad_pipeline_arguments_fail_before_any_step_runs(home, params, message):
    """Locally and on submission alike: the parameters are checked before kfp starts, so a
    typo does not cost an ingest (or a cluster run) first."""
    settings = Settings()
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        run_local(settings, {"source": SYNTH, **params})
    assert not settings.runs_dir.exists()  # nothing was created, no step ran
    client = RecordingClient()
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        submit(settings, {"source": SYNTH, **params}, client=client)
    assert client.calls == []
