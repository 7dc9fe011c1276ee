"""Pipeline parameters are checked by the first step: a run started from the Kubeflow UI
(no client-side check) with a typo fails ingest, naming the parameter and the value, before
anything trains or is written to the store or registry. The CLI's run and submit take the
pipeline's own defaults and list every parameter in their help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marquee.settings import Settings
from pipelines.cli import app
from pipelines.logs import ANSI
from pipelines.training import build_pipeline
from tests.pipeline.conftest import SYNTH, TINY_CONFIG

TINY_SYNTH = "synth:users=60,items=40,events=800,seed=7"


def run_as_from_the_ui(home: Path, params: dict) -> RuntimeError:
    """The compiled pipeline run with kfp.local and ``params`` as they are, as the Kubeflow
    UI starts it: no ``check_arguments`` first. Returns kfp.local's failure."""
    import kfp.local

    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False),
                   pipeline_root=str(home / "runs"), raise_on_error=True)
    args = {"source": TINY_SYNTH, "config_json": json.dumps(TINY_CONFIG), "home": str(home),
            **params}
    with pytest.raises(RuntimeError) as failed:
        build_pipeline()(**args)
    return failed.value


@pytest.mark.parametrize(("params", "message"), [
    ({"store_uri": "s3://"}, "store_uri='s3://': store_uri must name a bucket"),
    ({"store_uri": "s3:///x"}, "store_uri='s3:///x': store_uri must name a bucket"),
    ({"s3_endpoint_url": "localhost:9000"},
     "s3_endpoint_url='localhost:9000': s3_endpoint_url must be an http:// or https:// URL"),
    ({"s3_endpoint_url": "ftp://x"}, "s3_endpoint_url='ftp://x': s3_endpoint_url must be"),
    ({"registry_uri": "mlflow:5000"}, "registry_uri='mlflow:5000': not an MLflow tracking URI"),
    ({"gate_tolerance": 1.5}, "gate_tolerance=1.5: must be from 0 to 1"),
    ({"reference_rows": 0}, "reference_rows=0: must be 1 or more"),
    ({"n_trials": -1}, "n_trials=-1: must be 0 or more"),
    ({"n_trials": 2, "tune_timeout_seconds": 0},
     "tune_timeout_seconds=0: must be 1 or more when n_trials=2"),
    ({"n_trials": 2, "val_frac": 0.0}, "val_frac=0.0: must be above 0 when n_trials=2"),
    ({"seed": -1}, "seed=-1: seed: Input should be greater than or equal to 0"),
    ({"split_mode": "weekly"}, "split_mode='weekly': use one of user_temporal"),
    ({"test_frac": 0.0}, "test_frac=0.0: must be above 0"),
])
def test_a_bad_parameter_fails_the_ingest_step_of_a_ui_run(home, capfd, params, message):
    """Before: these failed in split, tune, features, evaluate or register (after training),
    or not at all (n_trials=-1 skipped the search in silence)."""
    failure = run_as_from_the_ui(home, params)
    out = capfd.readouterr()
    assert "Inner task failed: 'ingest'" in ANSI.sub("", str(failure))
    assert f"InvalidArgumentError: {message}" in out.out + out.err
    settings = Settings(home=home)
    assert not (home / "store").exists()  # nothing published
    assert not Path(settings.resolved_registry_uri.removeprefix("sqlite:///")).exists()


def test_a_good_ui_run_passes_the_ingest_check_and_registers(home, capfd):
    """The checks refuse only what is wrong: a run with its own store, registry and
    tolerance given as parameters (as the UI form passes them) trains and registers."""
    import kfp.local

    from marquee.registry import Registry

    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False),
                   pipeline_root=str(home / "runs"), raise_on_error=True)
    registry_uri = f"sqlite:///{home / 'reg.db'}"
    task = build_pipeline()(source=TINY_SYNTH, config_json=json.dumps(TINY_CONFIG),
                            home=str(home), store_uri=str(home / "bundles"),
                            registry_uri=registry_uri, gate_tolerance=0.05, val_frac=0.0)
    info = Registry(registry_uri).get_version(int(task.output))
    assert info.aliases == ["production"] and info.tags["gate.tolerance"] == "0.05"


def marquee(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    return subprocess.run([sys.executable, "-m", "marquee.cli", *args], capture_output=True,
                          text=True, timeout=300, env={**base, "MARQUEE_HOME": str(home), **env})


@pytest.mark.parametrize(("param", "message"), [
    ("store_uri=s3:///x", "store_uri='s3:///x': store_uri must name a bucket"),
    ("registry_uri=mlflow:5000", "registry_uri='mlflow:5000': not an MLflow tracking URI"),
])
def test_cli_run_refuses_a_bad_store_or_registry_before_any_step(tmp_path, param, message):
    """Before: ``marquee pipeline run`` trained and failed in evaluate (registry) or register
    (store)."""
    home = tmp_path / "home"
    out = marquee(home, "pipeline", "run", "--local", "--source", SYNTH,
                  "--config-json", json.dumps(TINY_CONFIG), "--param", param)
    assert out.returncode == 1, out.stdout[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
    assert not (home / "runs").exists()  # no step ran


def test_settings_refuse_a_bucketless_s3_store(tmp_path):
    """Before: Settings accepted ``s3://``; the store refused it only in the register step."""
    home = tmp_path / "home"
    with pytest.raises(ValueError, match="store_uri must name a bucket"):
        Settings(store_uri="s3://")
    out = marquee(home, "pipeline", "run", "--local", "--source", SYNTH,
                  "--config-json", json.dumps(TINY_CONFIG), MARQUEE_STORE_URI="s3://")
    assert out.returncode == 2, out.stdout[-2000:]
    assert "store_uri must name a bucket" in out.stderr
    assert not (home / "runs").exists()


def pipeline_defaults() -> dict:
    return {name: spec.default
            for name, spec in build_pipeline().component_spec.inputs.items()}


def test_submit_and_run_take_the_pipelines_defaults(monkeypatch):
    """Before: ``marquee pipeline submit`` passed n_trials=4 while the pipeline (and
    ``marquee pipeline run``) default to 0. The Kubeflow client is a recording stand-in: no
    Kubeflow host is reachable from this machine."""
    import kfp

    calls = []

    class RecordingClient:
        def __init__(self, host):
            self.host = host

        def create_run_from_pipeline_func(self, pipeline_func, arguments, run_name,
                                          experiment_name):
            calls.append(arguments)
            return type("Run", (), {"run_id": "run-1"})()

    monkeypatch.setattr(kfp, "Client", RecordingClient)
    for var in ("MARQUEE_GATE_TOLERANCE", "MARQUEE_SEED", "MARQUEE_STORE_URI",
                "MARQUEE_REGISTRY_URI", "MARQUEE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(app, ["submit", "--host", "http://127.0.0.1:1"])
    assert result.exit_code == 0, result.output
    defaults = pipeline_defaults()
    for name in ("source", "split_mode", "n_trials", "config_json"):
        assert calls[0].get(name, defaults[name]) == defaults[name], name
    result = CliRunner().invoke(app, ["submit", "--host", "http://127.0.0.1:1",
                                      "--n-trials", "3"])
    assert result.exit_code == 0, result.output
    assert calls[1]["n_trials"] == 3


@pytest.mark.parametrize("command", ["run", "submit"])
def test_help_lists_every_pipeline_parameter_with_its_default(command):
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=120)
    assert result.exit_code == 0
    text = re.sub(r"\s+", " ", result.output)
    for name, default in pipeline_defaults().items():
        assert f"{name} = {json.dumps(default)}" in text, name
    assert "[default: 4]" not in text and "[default: 0]" not in text
