"""``marquee pipeline run --local`` does not repeat kfp.local's warning about a non-Python
base image once per step (session 21, helper Q). The steps run in this interpreter, whose
venv has the project installed, so the warning does not apply and is not shown at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.pipeline.conftest import SYNTH, TINY_CONFIG

WARNING = 'Consider using the "DockerRunner"'


def test_local_run_prints_the_base_image_warning_at_most_once(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (
        "PYTHONWARNINGS", "MARQUEE_STORE_URI", "MARQUEE_REGISTRY_URI", "MARQUEE_S3_ENDPOINT_URL")}
    env.update(MARQUEE_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "marquee.cli", "pipeline", "run", "--local",
                          "--source", SYNTH, "--config-json", json.dumps(TINY_CONFIG)],
                         env=env, capture_output=True, text=True, timeout=500)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (out.stdout + out.stderr).count(WARNING) <= 1
    # the run's own output is still there: the registered bundle and the run's name
    lines = out.stdout.strip().splitlines()
    assert lines[-2].startswith("bundle ") and lines[-1].startswith("run marquee-training-")
