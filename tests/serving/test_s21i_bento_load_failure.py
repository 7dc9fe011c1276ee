"""``marquee serve --runtime bentoml`` on a bundle whose model cannot be loaded (its
checksums match, but model/config.json is not JSON) printed the one-line cause and then the
same cause twice more as tracebacks from the worker (BentoML's "Initializing service error"
and uvicorn's "Application startup failed"). The worker now exits after the one line.
BentoML's own arbiter still ends the output with its "No active process found for watcher"
traceback: that one is BentoML's parent process, not the service's to silence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, free_port
from serving_support import bundle_dir, bundle_with_bad_config, serving_env  # noqa: F401



@pytest.fixture()
def bad_bundle(bundle_dir: Path, tmp_path: Path) -> Path:  # noqa: F811
    """The shared bundle with model/config.json replaced by bad JSON, checksums recomputed."""
    return bundle_with_bad_config(bundle_dir, tmp_path)


def test_a_model_that_fails_to_load_is_one_line_not_the_workers_tracebacks(
        bad_bundle: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "marquee.cli", "serve", "--runtime", "bentoml",
           "--bundle-uri", str(bad_bundle), "--host", "127.0.0.1", "--port", str(free_port())]
    out = subprocess.run(cmd, env=serving_env(tmp_path / "home"), cwd=REPO,
                         capture_output=True, text=True, timeout=150)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    cause = [line for line in text.splitlines() if "cannot load the model: " in line]
    assert len(cause) == 1, text
    assert cause[0].endswith(f"cannot load the model: ValueError: {bad_bundle}/model/config.json"
                             ": not a readable file of a saved recommender (truncated, corrupt "
                             "or from another version?): Expecting property name enclosed in "
                             "double quotes: line 1 column 2 (char 1)"), cause
    # the worker's tracebacks, each repeating the cause, are gone
    assert "Initializing service error" not in text, text
    assert "Application startup failed" not in text, text
    assert "JSONDecodeError" not in text and "recsys/persist.py" not in text, text


def test_in_process_the_load_failure_is_still_raised(bad_bundle: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A test client (no ``bentoml serve`` worker) gets the exception, not a process exit."""
    from starlette.testclient import TestClient

    from serving.bento.service import MovieRecommender

    for key in [k for k in os.environ if k.startswith("MARQUEE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MARQUEE_SERVING_BUNDLE_URI", str(bad_bundle))
    monkeypatch.setenv("MARQUEE_SERVING_PAYLOAD_LOG_ENABLED", "false")
    with pytest.raises(ValueError, match="config.json: not a readable file"), \
            TestClient(MovieRecommender.to_asgi()):
        pass
