"""``marquee serve --runtime kserve`` on a bundle that fails to load for a reason that is not
one of Marquee's own errors ended with a Python traceback (exit 1 from the interpreter), while
Marquee's own load errors are one ``error: …`` line and exit 1 (docs/CONTRACTS.md,
"Lifecycle"). Two realistic causes: the online feature store is configured
(``MARQUEE_SERVING_REDIS_URL``) but its client package is not installed (ModuleNotFoundError),
and a bundle whose checksums match but whose model config is not JSON (ValueError from the
recommender). Now each is one line naming the bundle and the cause (exception type and
message), exit 1, no traceback; the traceback is logged only at DEBUG (``KSERVE_LOGLEVEL``).

Each test runs the real ``marquee`` command in its own process on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, free_port
from serving_support import bundle_dir, bundle_with_bad_config, serving_env  # noqa: F401


REDIS_URL = "redis://:s3cret-pw@127.0.0.1:6399/0"  # nothing listens: the import fails first


def _serve(bundle: Path, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "marquee.cli", "serve", "--runtime", "kserve",
           "--bundle-uri", str(bundle), "--host", "127.0.0.1", "--port", str(free_port())]
    environ = serving_env(home, payload_log_enabled=False)
    environ.pop("KSERVE_LOGLEVEL", None)  # INFO unless a test asks for DEBUG
    environ.update(OMP_NUM_THREADS="1", **env)
    return subprocess.run(cmd, env=environ, cwd=REPO, capture_output=True, text=True,
                          timeout=150)


def _assert_one_error_line(out: subprocess.CompletedProcess[str], expected: str) -> None:
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert errors == [expected], text


needs_no_redis = pytest.mark.skipif(importlib.util.find_spec("redis") is not None,
                                    reason="redis is installed: its import cannot fail")


@needs_no_redis
def test_a_feature_store_client_that_is_not_installed_is_one_error_line(
        bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    out = _serve(bundle_dir, tmp_path / "home", MARQUEE_SERVING_REDIS_URL=REDIS_URL)
    _assert_one_error_line(out, f"error: cannot load the model from bundle {bundle_dir}: "
                                "ModuleNotFoundError: No module named 'redis'")
    assert "s3cret-pw" not in out.stdout + out.stderr


@needs_no_redis
def test_the_traceback_of_a_foreign_load_error_is_logged_at_debug(
        bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    out = _serve(bundle_dir, tmp_path / "home", MARQUEE_SERVING_REDIS_URL=REDIS_URL,
                 KSERVE_LOGLEVEL="DEBUG")
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Traceback" in text and "serving/runtime/online.py" in text, text
    assert text.rstrip().splitlines()[-1] == (
        f"error: cannot load the model from bundle {bundle_dir}: ModuleNotFoundError: No "
        "module named 'redis'"), text


def test_a_model_config_that_is_not_json_is_one_error_line(
        bundle_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """The bundle's checksums match (recomputed), but model/config.json is not JSON."""
    bad = bundle_with_bad_config(bundle_dir, tmp_path)
    out = _serve(bad, tmp_path / "home")
    _assert_one_error_line(out, f"error: cannot load the model from bundle {bad}: ValueError: "
                                f"{bad}/model/config.json: not a readable file of a saved "
                                "recommender (truncated, corrupt or from another version?): "
                                "Expecting property name enclosed in double quotes: line 1 "
                                "column 2 (char 1)")


def test_marquees_own_load_errors_are_unchanged(tmp_path: Path) -> None:
    """A directory without bundle.json stays the BundleNotFoundError line it was."""
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _serve(empty, tmp_path / "home")
    _assert_one_error_line(out, f"error: no bundle.json in {empty}: not a model bundle")
