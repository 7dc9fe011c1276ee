"""Every reader of the registry, not only ``marquee registry …``: an MLflow server that does
not answer fails within seconds with one error line naming the (redacted) URI, and a
``sqlite:///`` registry path with a typo is named instead of being created empty.

Before: ``marquee drift check`` and ``marquee serve --alias production`` sat through MLflow's
7 retries with backoff (about 4 minutes) on a closed port; on a mistyped sqlite path they
created an empty registry and answered "no version with alias 'production'"."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from marquee.errors import InvalidArgumentError
from marquee.registry import Registry
from marquee.settings import Settings


def _closed_port() -> int:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _marquee(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The installed ``marquee``, with neither MARQUEE_* nor MLflow's HTTP settings but ``env``
    (so MLflow's own retry defaults would apply)."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("MARQUEE_", "MLFLOW_HTTP_REQUEST_"))}
    # 120 s: far below MLflow's ~4 minutes of retries, far above the seconds a refusal takes
    return subprocess.run([str(Path(sys.executable).parent / "marquee"), *args],
                          env={**clean, "MARQUEE_HOME": str(home), **env},
                          capture_output=True, text=True, timeout=120, cwd=home)


READERS = [
    pytest.param(("drift", "check", "--no-publish"), 2, "error: bundle='production': ",
                 id="drift-check"),
    pytest.param(("skew", "check", "--bundle", "production", "--no-publish"), 2,
                 "error: bundle='production': ", id="skew-check"),
    pytest.param(("serve", "--runtime", "kserve", "--alias", "production"), 1, "error: ",
                 id="serve-alias"),
]


@pytest.mark.parametrize(("args", "code", "prefix"), READERS)
def test_an_unreachable_mlflow_server_fails_fast_naming_it(tmp_path: Path, args, code, prefix
                                                           ) -> None:
    port = _closed_port()
    extra = ("--port", str(_closed_port())) if args[0] == "serve" else ()
    out = _marquee(tmp_path, *args, *extra,
                   MARQUEE_REGISTRY_URI=f"http://ops:s3cret-pw@127.0.0.1:{port}")
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode == code, out.stderr
    assert last.startswith(prefix), last
    assert f"failed on http://ops:***@127.0.0.1:{port}" in last, last
    assert "s3cret-pw" not in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(("args", "code", "prefix"), READERS)
def test_a_mistyped_sqlite_registry_file_is_named_not_created(tmp_path: Path, args, code,
                                                              prefix) -> None:
    (tmp_path / "mlflow").mkdir()  # the directory exists, the file name has a typo
    typo = tmp_path / "mlflow" / "regsitry.db"
    extra = ("--port", str(_closed_port())) if args[0] == "serve" else ()
    out = _marquee(tmp_path, *args, *extra, MARQUEE_REGISTRY_URI=f"sqlite:///{typo}")
    assert out.returncode == code, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"{prefix}registry_uri='sqlite:///{typo}': no registry database {typo} "
        "(nothing registered there yet, or a wrong path)")
    assert not typo.exists()  # no empty registry left behind
    assert "Traceback" not in out.stderr


def test_registry_list_names_a_mistyped_file_too(tmp_path: Path) -> None:
    typo = tmp_path / "regsitry.db"
    out = _marquee(tmp_path, "registry", "list", MARQUEE_REGISTRY_URI=f"sqlite:///{typo}")
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: registry_uri='sqlite:///{typo}': no registry database {typo} "
        "(nothing registered there yet, or a wrong path)")
    assert not typo.exists()


def test_writers_create_and_readers_then_read(tmp_path: Path) -> None:
    """The pipeline's register step creates the registry on first use; a reader of the same
    URI afterwards reads it; the embedded default reads as an empty registry."""
    uri = f"sqlite:///{tmp_path / 'new' / 'registry.db'}"
    with pytest.raises(InvalidArgumentError, match="no such directory"):
        Registry(uri, create=False).list_versions()
    assert not (tmp_path / "new").exists()
    version = Registry(uri).register("file:///bundles/1", {"ndcg_at_10": 0.1})
    assert Registry(uri, create=False).get_version(version).bundle_uri == "file:///bundles/1"
    reader = Registry.from_settings(Settings(home=tmp_path / "home", registry_uri=uri))
    assert [v.version for v in reader.list_versions()] == [version]
    (tmp_path / "home").mkdir()
    embedded = Registry.from_settings(Settings(home=tmp_path / "home"))
    assert embedded.list_versions() == []


def test_a_readers_mlflow_http_settings_default_short_but_the_users_own_win(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer (the pipeline's register step) keeps MLflow's patient retries; a reader gets
    2 retries unless the user set their own."""
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "")  # restored after the test
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")  # the user's own setting
    uri = f"http://127.0.0.1:{_closed_port()}"
    Registry(uri).client  # noqa: B018 - builds a writer's client
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 7  # MLflow's default
    Registry(uri, create=False).client  # noqa: B018 - builds a reader's client
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 2
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 7


@pytest.mark.parametrize("ref", ["models:/movie-recommender@production",
                                 "models:/movie-recommender/1"])
def test_drift_check_resolves_a_models_uri_through_the_registry(tmp_path: Path, ref: str
                                                                ) -> None:
    """monitoring/reference.py documents ``models:/…`` as a registry reference; it was read as
    a store key instead ("no object under key 'models:/movie-recommender@production/'")."""
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = Registry(uri)
    bundle = (tmp_path / "gone" / "bundle").as_uri()  # the registry's answer, named in the error
    registry.set_alias("production", registry.register(bundle, {"ndcg_at_10": 0.1}))
    out = _marquee(tmp_path, "drift", "check", "--bundle", ref, "--no-publish",
                   MARQUEE_REGISTRY_URI=uri)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"error: bundle={ref!r}: no bundle at {bundle}"


def test_the_rollout_controllers_registry_names_a_mistyped_sqlite_file(tmp_path: Path) -> None:
    """The controller's registry (``create=False``, as ``marquee rollout run`` / ``controller``
    build it for an explicit registry URI) names a missing database on every tick, instead of
    creating an empty one in which the rollout fails for "no production"."""
    from marquee.errors import InvalidArgumentError
    from serving.rollout.controller import MarqueeRegistry

    typo = tmp_path / "regsitry.db"
    registry = MarqueeRegistry(f"sqlite:///{typo}", "movie-recommender", create=False)
    for _ in range(2):  # each tick
        with pytest.raises(InvalidArgumentError, match="no registry database"):
            registry.get_alias("production")
    assert not typo.exists()
