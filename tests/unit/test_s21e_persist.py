"""Saving and loading a fitted ``Recommender`` (defect hunt s21 E).

Before: a model file cut off inside a tree of ``ranker.txt`` killed the process in LightGBM
(SIGABRT or SIGSEGV), and a model file replaced by another valid one (``item_embeddings.npy``)
loaded silently and answered wrongly: nothing checked the files against what ``save`` wrote.
A ``save`` that failed half-way over a saved model left the new ``config.json`` and tensors
next to the old tables (the model there before no longer loaded), and a ``save`` over a saved
model left its files behind (a stale dense ``rank_item_item.npy`` was then loaded instead of
the new model's sparse one). ``save`` before ``fit`` raised ``AttributeError: user_buckets``
after creating the directory; a ``config.json`` with a missing or mistyped field raised a
bare ``KeyError``, ``int()`` error or a torch allocation error of terabytes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import recsys.persist
from recsys import Recommender
from recsys.recommender import NotFittedError
from tests.unit.small_recsys import SMALL, data  # noqa: F401  (the fixture)

SPARSE = {**SMALL, "ranker": {**SMALL["ranker"], "dense_max_items": 1}}  # sparse item-item
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rec(data):  # noqa: F811
    torch.set_num_threads(1)
    return Recommender(SMALL).fit(data.interactions, data.users, data.items, progress=False)


@pytest.fixture(scope="module")
def sparse(data):  # noqa: F811
    torch.set_num_threads(1)
    return Recommender(SPARSE).fit(data.interactions, data.users, data.items, progress=False)


@pytest.fixture(scope="module")
def saved(rec, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("s21e_saved")
    rec.save(out)
    return out


def _copy(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "copy"))


def _users(rec: Recommender) -> list[int]:
    lens = np.diff(rec.history.offsets)
    ids = rec.users["user_id"].to_numpy()
    cold = ids[lens < rec.config.cold_start_events][:5].tolist()
    return ids[lens >= rec.config.cold_start_events][:20].tolist() + cold + [10**9]


def test_a_cut_off_ranker_model_is_an_error_naming_it_not_a_crash(saved, tmp_path) -> None:
    copy = _copy(saved, tmp_path)
    path = copy / "model" / "ranker.txt"
    text = path.read_bytes()
    path.write_bytes(text[: text.index(b"Tree=0") + 60])  # inside the first tree
    code = ("import sys\nfrom recsys import Recommender\ntry:\n"
            f"    Recommender.load({str(copy)!r})\n"
            "except ValueError as exc:\n    print(exc, file=sys.stderr)\n    sys.exit(1)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={"OMP_NUM_THREADS": "1",
                                                      "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
    assert run.stderr.strip().splitlines()[-1].startswith(f"{path}: not a readable file")


def test_a_file_replaced_by_another_valid_one_is_refused_by_name(saved, tmp_path) -> None:
    copy = _copy(saved, tmp_path)
    path = copy / "model" / "item_embeddings.npy"
    np.save(path, np.zeros_like(np.load(path)), allow_pickle=False)
    with pytest.raises(ValueError, match=rf"^{path}: not a readable file .*sha256"):
        Recommender.load(copy)


def test_a_file_the_save_did_not_write_is_refused_by_name(saved, tmp_path) -> None:
    copy = _copy(saved, tmp_path)
    extra = copy / "model" / "rank_item_item_data.npy"
    np.save(extra, np.zeros(3, np.float32), allow_pickle=False)
    with pytest.raises(ValueError, match=rf"^{extra}: not a readable file .*not listed"):
        Recommender.load(copy)


def test_a_model_saved_before_the_checksums_still_loads(rec, saved, tmp_path) -> None:
    copy = _copy(saved, tmp_path)
    path = copy / "model" / "config.json"
    meta = json.loads(path.read_text())
    meta.pop("files", None)  # as saved before the checksums were recorded
    path.write_text(json.dumps(meta))
    users = _users(rec)
    assert Recommender.load(copy).recommend(users, k=5).equals(rec.recommend(users, k=5))


def test_a_save_that_fails_keeps_the_model_saved_before(rec, sparse, saved, tmp_path,
                                                        monkeypatch) -> None:
    copy = _copy(saved, tmp_path)
    real_save, calls = np.save, []

    def disk_full(file, arr, **kwargs):  # the third array written finds the disk full
        calls.append(file)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_save(file, arr, **kwargs)

    monkeypatch.setattr(recsys.persist.np, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        sparse.save(copy)
    monkeypatch.undo()
    users = _users(rec)
    assert Recommender.load(copy).recommend(users, k=5).equals(rec.recommend(users, k=5))
    assert sorted(p.name for p in copy.iterdir()) == ["model"]  # no half-written directory


def test_a_save_over_a_saved_model_leaves_none_of_its_files(sparse, saved, tmp_path) -> None:
    copy = _copy(saved, tmp_path)
    sparse.save(copy)
    fresh = tmp_path / "fresh"
    sparse.save(fresh)
    users = _users(sparse)
    for exclude_seen in (True, False):
        assert Recommender.load(copy).recommend(users, k=5, exclude_seen=exclude_seen).equals(
            sparse.recommend(users, k=5, exclude_seen=exclude_seen))
    assert sorted(p.name for p in (copy / "model").iterdir()) == \
        sorted(p.name for p in (fresh / "model").iterdir())


def test_save_before_fit_is_refused_and_writes_nothing(tmp_path) -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        Recommender(SMALL).save(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_save_into_a_file_names_it(rec, tmp_path) -> None:
    target = tmp_path / "a-file"
    target.write_text("keep")
    with pytest.raises(NotADirectoryError, match=rf"^{target}: exists and is not a directory"):
        rec.save(target)
    assert target.read_text() == "keep"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("user_buckets", "abc", "user_buckets: Input should be a valid integer"),
    ("user_buckets", -5, "user_buckets: Input should be greater than or equal to 1"),
    ("user_buckets", 10**12, "user_buckets 1000000000000 does not match the 1024 rows"),
    ("vocabs", None, "vocabs: Field required"),
    ("vocabs", {"gender": ["F"]}, "no vocabulary for"),
])
def test_a_config_json_with_a_bad_field_is_refused_naming_it(saved, tmp_path, field, value,
                                                            message) -> None:
    copy = _copy(saved, tmp_path)
    path = copy / "model" / "config.json"
    meta = json.loads(path.read_text())
    if value is None:
        del meta[field]
    else:
        meta[field] = value
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"^{path}: .*{message}") as info:
        Recommender.load(copy)
    assert "\n" not in str(info.value)


def test_the_loaded_model_answers_as_the_fitted_one(rec, saved) -> None:
    back = Recommender.load(saved)
    assert back.config == rec.config
    users = _users(rec)
    for exclude_seen in (True, False):
        for stages in ("full", "retrieval"):
            assert back.recommend(users, k=10, exclude_seen=exclude_seen, stages=stages).equals(
                rec.recommend(users, k=10, exclude_seen=exclude_seen, stages=stages))
