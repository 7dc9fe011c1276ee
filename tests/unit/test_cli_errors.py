"""The ``marquee`` entry point itself (not a sub-app through CliRunner): a bad command line
or a refused operation ends with click's usage text or one ``error: …`` line and a non-zero
exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def marquee(home: Path, *args: str, cwd: Path | None = None, timeout: float = 120,
            **env: str) -> subprocess.CompletedProcess:
    """The installed ``marquee`` with home ``home``, no other MARQUEE_* but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    return subprocess.run([str(Path(sys.executable).parent / "marquee"), *args],
                          env={**clean, "MARQUEE_HOME": str(home), **env}, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


@pytest.mark.parametrize(("args", "message"), [
    (("rollout", "history"), "Error: Missing argument 'name'."),
    (("retrain",), "Error: Missing option '--reason' / '-r'."),
    (("traffic", "replay"), "Error: Invalid value for --interactions: give --interactions "
                            "or --holdout"),
])
def test_a_usage_error_of_a_sub_command_is_a_usage_message(tmp_path: Path, args, message
                                                            ) -> None:
    out = marquee(tmp_path, *args)
    assert out.returncode == 2
    assert out.stderr.startswith(f"Usage: marquee {' '.join(args)} [OPTIONS]")
    assert out.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in out.stderr


def test_a_refused_operation_is_one_error_line(tmp_path: Path) -> None:
    out = marquee(tmp_path, "serve", "--runtime", "kserve", "--alias", "production")
    assert out.returncode == 1
    # (MLflow logs its creation of the empty registry before)
    assert out.stderr.strip().splitlines()[-1] == \
        "error: model 'movie-recommender' has no version with alias 'production'"
    assert "Traceback" not in out.stderr


def test_invalid_settings_name_the_field(tmp_path: Path) -> None:
    out = marquee(tmp_path, "serve", "--runtime", "nope", "--model-version", "1")
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: invalid settings: runtime: Input should be "
                                  "'kserve', 'bentoml' or 'payload-sink' (got 'nope')")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "rollout.yaml"
    out = marquee(tmp_path, "rollout", "start", "-f", str(missing))
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: {missing}: No such file or directory"


def test_submitting_without_a_kubeflow_host_says_how_to_give_one(tmp_path: Path) -> None:
    out = marquee(tmp_path, "pipeline", "submit")
    assert out.returncode == 1
    assert out.stderr.strip() == ("error: host=None: no Kubeflow host: pass --host or set "
                                  "MARQUEE_KUBEFLOW_HOST")


def test_a_bad_pipeline_argument_is_named_before_the_run_starts(tmp_path: Path) -> None:
    out = marquee(tmp_path, "pipeline", "run", "--local", "--config-json",
                  '{"retrieval": {"epochz": 2}}')
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "error: config_json='{\"retrieval\": {\"epochz\": 2}}': retrieval.epochz: Extra inputs "
        "are not permitted (got 2)")
    assert "Executing task" not in out.stdout  # kfp.local never started a step


@pytest.mark.parametrize(("param", "line"), [
    ("seed=1x", "error: seed='1x': must be an integer"),
    ("config_json={bad", "error: config_json='{bad': not JSON"),
    ("test_frac=1.5", "error: test_frac=1.5: must be in [0, 1)"),
])
def test_a_bad_param_value_is_one_error_line(tmp_path: Path, param: str, line: str) -> None:
    """``--param`` values that are not JSON stay strings, and the pipeline's parameter types
    and ranges judge them before any step (before: a JSONDecodeError traceback, or a run that
    failed in ``split`` after ingest and validate)."""
    out = marquee(tmp_path, "pipeline", "run", "--local", "--param", param)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith(line)
    assert "Traceback" not in out.stderr and "Executing task" not in out.stdout


@pytest.mark.parametrize(("args", "line"), [
    (("traffic", "replay", "--holdout", "h.parquet", "--order", "sideways"),
     "Invalid value for '--order'"),
    (("drift", "check", "--every", "-5"), "Invalid value for '--every'"),
    (("drift", "check", "--metrics-port", "99999"), "Invalid value for '--metrics-port'"),
    (("pipeline", "compile", "-o", "pipeline.txt"), "give a file name ending in .yaml"),
])
def test_bad_option_values_are_usage_errors(tmp_path: Path, args, line) -> None:
    out = marquee(tmp_path, *args)
    assert out.returncode == 2 and line in out.stderr and "Traceback" not in out.stderr


def test_refusals_are_one_error_line_on_stderr(tmp_path: Path) -> None:
    """Found by a bug bash: each of these ended with a traceback, a multi-line pydantic
    message, or an error on stdout wrapped over several lines by rich."""
    binary = tmp_path / "rollout.yaml"
    binary.write_bytes(b"\xff\xfe\x00 not text")
    users = tmp_path / "users.csv"
    users.write_text("user_id,age\n1,30\n")
    for args, line, code in [
        (("rollout", "start", "-f", str(binary)), f"error: {binary}: not a text file", 1),
        (("retrain", "--reason", "x", "--url", "notaurl"),
         "error: url: String should match pattern", 2),
        (("traffic", "users", "--interactions", str(users)),
         f"error: interactions='{users}': not an interactions table: no column item_id, "
         "timestamp", 1),
    ]:
        out = marquee(tmp_path, *args)
        assert out.returncode == code, (args, out.stderr)
        assert out.stderr.strip().splitlines()[-1].startswith(line), (args, out.stderr)
        assert "Traceback" not in out.stderr


def test_a_mistyped_sqlite_registry_is_named_not_created(tmp_path: Path) -> None:
    """MLflow creates a missing directory and an empty registry in it: a typo in
    MARQUEE_REGISTRY_URI answered "no versions" and left a new database behind."""
    missing = tmp_path / "no" / "such" / "dir"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    out = subprocess.run([str(Path(sys.executable).parent / "marquee"), "registry", "list"],
                         env={**env, "MARQUEE_HOME": str(tmp_path),
                              "MARQUEE_REGISTRY_URI": f"sqlite:///{missing}/r.db"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: registry_uri='sqlite:///{missing}/r.db': no such directory {missing}")
    assert not (tmp_path / "no").exists()


def test_serving_a_path_that_is_no_bundle_says_so(tmp_path: Path) -> None:
    """Before: 'invalid object key …: a key must be relative', about the store's keys."""
    (tmp_path / "data").mkdir()
    for path, tail in ((tmp_path / "data", "not a model bundle"),
                       (tmp_path / "missing", "not a model bundle (no such directory)")):
        out = marquee(tmp_path, "serve", "--runtime", "kserve", "--bundle-uri", str(path))
        assert out.returncode == 1
        assert out.stderr.strip().splitlines()[-1] == f"error: no bundle.json in {path}: {tail}"


def test_settings_and_data_refusals_read_as_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    exe = str(Path(sys.executable).parent / "marquee")
    out = subprocess.run([exe, "registry", "list"], capture_output=True, text=True, timeout=120,
                         env={**env, "MARQUEE_HOME": str(tmp_path),
                              "MARQUEE_STORE_URI": "http://x"})
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: invalid settings: store_uri: Value error, store_uri "
                                  "must be a directory or s3://bucket/prefix (got 'http://x')")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "interactions.csv").write_text("user_id,item_id\n1,2\n")
    out = marquee(tmp_path, "data", "validate", str(bad))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith(
        f"error: {bad}: data validation failed: ")
    assert "Traceback" not in out.stderr


def test_an_unparseable_json_setting_names_the_field_and_the_cause(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    out = subprocess.run([str(Path(sys.executable).parent / "marquee"), "router"],
                         capture_output=True, text=True, timeout=120,
                         env={**env, "MARQUEE_HOME": str(tmp_path),
                              "MARQUEE_ROUTER_UPSTREAMS": "{bad"})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        'error: invalid settings: error parsing value for field "upstreams" from source '
        '"EnvSettingsSource": Expecting property name enclosed in double quotes: line 1 '
        "column 2 (char 1)")


def test_a_registry_password_stays_out_of_errors(tmp_path: Path) -> None:
    """A registry URI may carry credentials (http://user:password@mlflow, postgresql://…): a
    failing registry call named the URI whole, password included, in its one error line."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = marquee(tmp_path, "registry", "list",
                  MARQUEE_REGISTRY_URI=f"http://ops:s3cret-pw@127.0.0.1:{port}",
                  MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    assert out.returncode == 1, out.stderr
    assert f"http://ops:***@127.0.0.1:{port}" in out.stderr.strip().splitlines()[-1]
    assert "s3cret-pw" not in out.stdout + out.stderr
