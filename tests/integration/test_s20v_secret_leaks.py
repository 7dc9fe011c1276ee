"""Secrets stay out of what ``marquee`` prints: each test gives a secret a distinctive value,
drives the real command into its error path and greps its whole output for the value.

Before, a password inside a URI came back verbatim from: a settings validation error (pydantic
echoes the input), the S3 store's error (botocore quotes the endpoint URL whole), the drift
check's Pushgateway failure line (which the ``--json`` summary repeats) and a local pipeline
run's step log and error line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

from marquee.store import LocalStore

SECRET = "S3CRET-v20"


def marquee(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The installed ``marquee`` with home ``home``, no other MARQUEE_* or AWS_* but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MARQUEE_", "AWS_"))}
    return subprocess.run([str(Path(sys.executable).parent / "marquee"), *args],
                          env={**clean, "MARQUEE_HOME": str(home), "COLUMNS": "200", **env},
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize(("var", "value", "field"), [
    ("MARQUEE_STORE_URI", f"ftp://mlops:{SECRET}@files/b", "store_uri"),
    ("MARQUEE_S3_ENDPOINT_URL", f"minio://mlops:{SECRET}@minio:9000", "s3_endpoint_url"),
])
def test_an_invalid_setting_is_named_without_its_password(tmp_path: Path, var, value,
                                                          field) -> None:
    out = marquee(tmp_path, "registry", "list", **{var: value})
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: invalid settings: {field}: "), out.stderr
    assert SECRET not in out.stdout + out.stderr
    assert value.replace(SECRET, "***") in out.stderr  # still says which value was refused


def test_an_unreachable_s3_endpoint_is_named_without_its_password(tmp_path: Path) -> None:
    endpoint = f"http://mlops:{SECRET}@127.0.0.1:{free_port()}"  # nothing listens there
    out = marquee(tmp_path, "serve", "--bundle-uri", "s3://bundles/movie-recommender/1",
                  "--port", str(free_port()), MARQUEE_S3_ENDPOINT_URL=endpoint,
                  AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    assert out.returncode == 1, out.stdout + out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: S3 request for key 'movie-recommender/1/' in "
                           "s3://bundles failed: Could not connect"), out.stderr
    assert SECRET not in out.stdout + out.stderr
    assert endpoint.replace(SECRET, "***") in last


def test_a_refusing_pushgateway_is_named_without_its_password(tmp_path: Path) -> None:
    from monitoring.drift.scenarios import payload_table, write_bundle, write_payload_logs

    write_bundle(tmp_path / "bundle", n_reference=2_000)
    write_payload_logs(LocalStore(tmp_path / "store"),
                       payload_table(2_000, 4, "demographic", start_ts=1_740_787_200))
    gateway = f"http://ops:{SECRET}@127.0.0.1:{free_port()}"  # nothing listens there
    args = ["drift", "check", "--bundle", str(tmp_path / "bundle"),
            "--store", str(tmp_path / "store"), "--until", "2025-03-01T01:00:00Z",
            "--since", "1h", "--evidently", "never", "--no-embeddings"]
    out = marquee(tmp_path / "home", *args, "--json", MARQUEE_PUSHGATEWAY_URL=gateway)
    assert out.returncode == 1, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    assert summary["push_error"].startswith(
        f"the gauges were not pushed to {gateway.replace(SECRET, '***')} "), summary
    assert SECRET not in out.stdout + out.stderr

    published = marquee(tmp_path / "home", *args, MARQUEE_PUSHGATEWAY_URL=gateway)
    assert published.returncode == 1, published.stdout + published.stderr
    assert "error: the gauges were not pushed to " in published.stderr
    assert SECRET not in published.stdout + published.stderr
    written = [p for p in (tmp_path / "store").rglob("*") if p.is_file()
               and SECRET.encode() in p.read_bytes()]
    assert written == []  # the summary and report the check published


def test_a_pipeline_run_that_cannot_reach_its_registry_keeps_the_password_out(
        tmp_path: Path) -> None:
    """kfp.local logs each step's inputs, registry URI included, and MLflow's error quotes the
    URI whole: both reached the terminal, and the error line picked from the step's log."""
    registry = f"http://mlflow:{SECRET}@127.0.0.1:{free_port()}"  # nothing listens there
    config = {"retrieval": {"epochs": 1, "dim": 8, "batch_size": 256, "history_len": 10},
              "ranker": {"enabled": False}}
    out = marquee(tmp_path / "home", "pipeline", "run", "--local",
                  "--source", "synth:users=120,items=80,events=3000,seed=7",
                  "--config-json", json.dumps(config), MARQUEE_REGISTRY_URI=registry,
                  MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", OMP_NUM_THREADS="1")
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: pipeline 'marquee-training' failed in step "), last
    assert registry.replace(SECRET, "***") in out.stdout  # the step's log is still shown
    assert SECRET not in out.stdout + out.stderr
