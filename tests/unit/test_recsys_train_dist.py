"""The training entry point: one process, and two under torchrun (gloo, DDP)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recsys.data.files import write_dataset
from recsys.data.synth import generate
from recsys.recommender import Recommender

TINY = {"retrieval": {"dim": 16, "epochs": 2, "batch_size": 128, "history_len": 10},
        "ranker": {"enabled": False}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_dist")
    write_dataset(generate(120, 60, 3_000, seed=4), root / "data")
    (root / "cfg.json").write_text(json.dumps(TINY))
    return root


def _run(cmd: list[str], root: Path) -> dict:
    # a new session, so a timeout can stop torchrun's workers with it; a $TMPDIR of its own,
    # where torchrun leaves its torchelastic_* log directory
    tmp = root.parent / f"{root.name}-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "TMPDIR": str(tmp)})
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, out.decode()[-3000:]
    return json.loads((root / "metrics.json").read_text())


def test_single_process_trains_evaluates_and_saves(data_dir: Path) -> None:
    out = data_dir / "single"
    m = _run([sys.executable, "-m", "recsys.train_dist", "--data", str(data_dir / "data"),
              "--out", str(out), "--config", str(data_dir / "cfg.json"),
              "--holdout", "temporal"], out)
    assert m["world_size"] == 1 and len(m["losses"]) == 2
    assert 0 < m["test.retrieval"]["ndcg_at_10"] <= 1
    rec = Recommender.load(out)
    assert len(rec.recommend([1, 2], k=5)) == 10


def test_two_processes_under_torchrun_share_one_model(data_dir: Path) -> None:
    out = data_dir / "ddp"
    m = _run([sys.executable, "-m", "torch.distributed.run", "--standalone",
              "--nproc_per_node", "2", "-m", "recsys.train_dist", "--data",
              str(data_dir / "data"), "--out", str(out), "--config",
              str(data_dir / "cfg.json")], out)
    assert m["world_size"] == 2
    assert len(m["peak_rss_gib_per_process"]) == 2
    assert m["losses"][-1] < m["losses"][0]  # the averaged gradients do train the model
    rec = Recommender.load(out)
    assert np.isfinite(rec.item_embeddings()).all()
