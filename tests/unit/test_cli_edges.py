"""Edges of the command line found by a bug hunt: each of these ended with a traceback, a
hang, exit code 0 on a meaningless run, a misleading message, or a refusal spread over
several lines; or it silently replaced or misplaced what a user had stored."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.unit.test_cli_errors import marquee as run_marquee

NOBODY = "http://127.0.0.1:9"  # nothing listens on the discard port
marquee = functools.partial(run_marquee, timeout=60)


def last_line(out: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    return out.stderr.strip().splitlines()[-1]


@pytest.fixture()
def interactions(tmp_path: Path) -> Path:
    import pandas as pd

    path = tmp_path / "interactions.parquet"
    pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 2], "item_id": [1, 2, 3, 1, 2, 3],
                  "timestamp": [1, 2, 3, 1, 2, 3]}).to_parquet(path)
    return path


# marquee traffic ----------------------------------------------------------------------------
def test_replay_with_zero_concurrency_is_refused_not_a_hang(tmp_path: Path,
                                                            interactions: Path) -> None:
    """Before: ``--concurrency 0`` waited for ever on a semaphore that never opens."""
    out = marquee(tmp_path, "traffic", "replay", "--router", NOBODY, "--interactions",
                  str(interactions), "--requests", "2", "--concurrency", "0")
    assert out.returncode == 2
    assert last_line(out).startswith("Error: Invalid value for '--concurrency'")


@pytest.mark.parametrize("option", [
    ("--concurrency", "-1"),      # before: ValueError traceback from asyncio.Semaphore
    ("--position-bias", "-1"),    # before: ValueError traceback from ClickModel
    ("--relevant-click", "2"),    # before: ValueError traceback
    ("--noise-click", "nan"),     # before: ValueError traceback
    ("--k", "0"),                 # before: every request sent, every one refused
    ("--requests", "0"),          # before: an empty replay, exit 0
    ("--duration", "-1"),         # before: an empty replay, exit 0
    ("--output", "yaml"),         # before: silently a table
])
def test_replay_option_values_out_of_range_are_usage_errors(
        interactions: Path, option: tuple[str, str]) -> None:
    from serving.replay.cli import app

    result = CliRunner().invoke(app, ["replay", "--router", NOBODY, "--interactions",
                                      str(interactions), "--requests", "2", *option])
    assert result.exit_code == 2, (result.output, result.exception)
    assert f"Invalid value for '{option[0]}'" in result.output or \
        f"Invalid value for '-o' / '{option[0]}'" in result.output


@pytest.mark.parametrize(("name", "content"), [
    ("interactions.parquet", b"not parquet at all"),
    ("interactions.csv", b"\xff\xfe\x00 binary"),
    ("interactions.csv", b'user_id,item_id\n1,"2\n'),
])
def test_an_unreadable_interactions_file_is_one_error_line(tmp_path: Path, name: str,
                                                           content: bytes) -> None:
    """Before: pyarrow's or pandas' traceback."""
    bad = tmp_path / name
    bad.write_bytes(content)
    out = marquee(tmp_path, "traffic", "users", "--interactions", str(bad))
    assert out.returncode == 1
    assert last_line(out).startswith(f"error: interactions='{bad}': not a readable Parquet or "
                                     "CSV table: ")


# settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("variable", "value", "line"), [
    ("MARQUEE_HOME", "", "error: invalid settings: home: Value error, must not be empty"),
    ("MARQUEE_MODEL_NAME", "", "error: invalid settings: model_name: Value error, must not "
                               "be empty (got '')"),
    ("MARQUEE_BIND_HOST", "", "error: invalid settings: bind_host: Value error, must not be "
                              "empty (got '')"),
])
def test_an_empty_setting_is_named(tmp_path: Path, variable: str, value: str, line: str) -> None:
    """Before: an empty MARQUEE_HOME put a new, empty registry in the working directory and
    answered "no versions"; an empty model name failed inside MLflow ("Missing value for
    required parameter 'name'"); an empty bind host would bind every interface."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = marquee(tmp_path / "home", "registry", "list", cwd=cwd, **{variable: value})
    assert out.returncode == 2
    assert last_line(out).startswith(line)
    assert list(cwd.iterdir()) == []  # no registry.db left in the working directory


@pytest.mark.parametrize("name", ["Movie Recommender", 'movie"recommender', "-movie", "m" * 129])
def test_a_model_name_the_store_and_registry_cannot_hold_is_named(tmp_path: Path,
                                                                   name: str) -> None:
    """Before: "Movie Recommender" trained the whole pipeline and failed in its register step
    (the bundle name rule), and a quote broke MLflow's filter in `registry list`."""
    out = marquee(tmp_path, "registry", "list", MARQUEE_MODEL_NAME=name)
    assert out.returncode == 2
    assert last_line(out) == ("error: invalid settings: model_name: String should match "
                              "pattern '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' "
                              f"(got {name!r})")


def test_a_malformed_s3_endpoint_is_named(tmp_path: Path) -> None:
    """Before: botocore's ``ValueError: Invalid endpoint: notaurl`` traceback."""
    out = marquee(tmp_path, "registry", "list", MARQUEE_S3_ENDPOINT_URL="notaurl")
    assert out.returncode == 2
    assert last_line(out) == ("error: invalid settings: s3_endpoint_url: Value error, "
                              "s3_endpoint_url must be an http:// or https:// URL "
                              "(got 'notaurl')")


def test_an_empty_s3_endpoint_means_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart documents an empty endpoint as "AWS S3"; before, '' reached botocore
    (``Invalid endpoint:``)."""
    from marquee.settings import Settings

    monkeypatch.setenv("MARQUEE_S3_ENDPOINT_URL", "")
    assert Settings().s3_endpoint_url is None


# bundles named by a local path --------------------------------------------------------------
def test_a_local_path_without_a_bundle_is_not_called_an_invalid_key(tmp_path: Path) -> None:
    """Before, with a store given, an absolute path was taken as a store key: "invalid
    object key '/…': a key must be relative", about keys the user never typed
    (``marquee drift check -b /path``, ``marquee skew check -b /path``)."""
    from marquee.bundle import fetch_bundle
    from marquee.errors import BundleNotFoundError
    from marquee.store import LocalStore

    missing = tmp_path / "no-bundle"
    with pytest.raises(BundleNotFoundError, match=f"no bundle at {missing}"):
        fetch_bundle(str(missing), tmp_path / "dest", store=LocalStore(tmp_path / "store"))
    out = marquee(tmp_path, "skew", "check", "-b", str(missing), "--no-publish")
    assert out.returncode == 2
    assert last_line(out) == f"error: bundle='{missing}': no bundle at {missing}"


def test_a_drift_reference_that_is_not_parquet_is_one_error_line(tmp_path: Path) -> None:
    """Before: pyarrow's ArrowInvalid traceback, exit 1."""
    bad = tmp_path / "features.parquet"
    bad.write_text("not parquet")
    out = marquee(tmp_path, "drift", "check", "--reference", str(bad), "--no-publish",
                  "--no-embeddings", "--evidently", "never")
    assert out.returncode == 2
    assert last_line(out).startswith(f"error: not a readable Parquet file: Could not open "
                                     f"Parquet input source '{bad}'")


# registry -----------------------------------------------------------------------------------
def test_a_non_ascii_digit_is_not_a_version_number(tmp_path: Path) -> None:
    """Before: ``marquee registry show ²`` ended in ``ValueError: invalid literal for
    int()`` ('²'.isdigit() is true)."""
    from marquee.errors import InvalidReferenceError
    from marquee.registry import Registry

    with pytest.raises(InvalidReferenceError, match="is not a version number"):
        Registry(f"sqlite:///{tmp_path / 'r.db'}").get_version("²")


# rollout ------------------------------------------------------------------------------------
def _running_rollout(home: Path) -> object:
    from serving.rollout.spec import parse_rollout
    from serving.rollout.status import Phase
    from serving.rollout.store import FileStatusStore

    store = FileStatusStore(home / "rollouts")
    store.create(parse_rollout({
        "apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
        "metadata": {"name": "r1"},
        "spec": {"candidate": {"version": "2"}, "strategy": "canary"}}))
    status = store.get("r1").status
    store.save_status("r1", status.model_copy(update={"phase": Phase.PROGRESSING, "step": 1}))
    return store


def test_promote_does_not_replace_a_pending_abort(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """One command is pending per rollout: before, a promote after an abort (both before the
    next tick) overwrote the abort without a word, and the candidate went to production."""
    from serving.rollout.cli import app

    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    store = _running_rollout(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["abort", "r1"]).exit_code == 0
    r = runner.invoke(app, ["promote", "r1"])
    assert r.exit_code == 1, r.output
    assert "error: rollout r1 has an abort pending" in r.output
    assert store.pending_command("r1") == "abort"  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", [["status"], ["status", "r1"], ["history", "r1"]])
def test_an_unknown_rollout_output_format_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    """Before: ``-o yaml`` (or a typo of json) printed the table, exit 0."""
    from serving.rollout.cli import app

    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    _running_rollout(tmp_path)
    r = CliRunner().invoke(app, [*command, "-o", "yaml"])
    assert r.exit_code == 2 and "Invalid value for '-o' / '--output'" in r.output


def test_a_yaml_syntax_error_in_a_rollout_file_is_one_line(tmp_path: Path) -> None:
    """Before: PyYAML's message spread over six lines, the last of them a lone '^'."""
    bad = tmp_path / "rollout.yaml"
    bad.write_text("spec: [canary\n")
    out = marquee(tmp_path, "rollout", "start", "-f", str(bad))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: not valid YAML: ")
    assert "line 1, column 7" in lines[0]


@pytest.mark.parametrize(("args", "env"), [
    (("--model-version", "abc"), {}),
    (("--model-version", "0"), {}),
    ((), {"MARQUEE_SERVING_MODEL_VERSION": "production"}),
])
def test_a_model_version_that_is_not_a_number_is_named(tmp_path: Path, args: tuple[str, ...],
                                                       env: dict[str, str]) -> None:
    """Before: the value was looked up as an alias ("no version with alias 'abc'"), which
    sends the reader to the registry instead of to the flag."""
    out = marquee(tmp_path, "serve", "--runtime", "kserve", *args, **env)
    assert out.returncode == 2, out.stderr
    assert last_line(out).startswith("error: invalid settings: model_version:")
    assert "is not a version number (1, 2, …)" in last_line(out)


def test_a_holdout_file_without_the_columns_is_named_as_the_holdout(tmp_path: Path) -> None:
    """Before: ``--holdout`` was reported as ``interactions='…'``."""
    users = tmp_path / "users.csv"
    users.write_text("user_id,age\n1,30\n")
    out = marquee(tmp_path, "traffic", "replay", "--holdout", str(users), "--requests", "1")
    assert out.returncode == 1, out.stderr
    assert last_line(out).startswith(f"error: holdout='{users}': not an interactions table")
