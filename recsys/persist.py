"""Saving and loading a fitted recommender: JSON, safetensors, .npy and Parquet; no pickle."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from safetensors.torch import load_file, save_file

from marquee.store.base import sha256_file
from recsys.config import RecommenderConfig
from recsys.data.parquet import read_parquet
from recsys.encoding import IdIndex, Vocab
from recsys.features import FeatureContext
from recsys.models.popularity import SegmentPopularity
from recsys.state import HistoryTable

if TYPE_CHECKING:
    from recsys.recommender import Recommender

__all__ = ["FORMAT_VERSION", "SavedMeta", "save_recommender", "load_recommender"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEMO_COLUMNS = ("age_bucket", "gender", "occupation", "region")
GLOBAL_SEGMENT = "*"  # the global ranking's row in segment_popularity.parquet
#: the columns of ``items.parquet``: the contract's item table (``title`` only when given)
ITEM_COLUMNS = ("item_id", "title", "year", "genres")


META_FILE = "config.json"  # written last: its ``files`` hold the sha256 of every other file
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class SavedMeta(BaseModel):
    """``model/config.json``: what the arrays and tables of a saved recommender mean."""

    model_config = ConfigDict(extra="forbid")

    format_version: int
    config: RecommenderConfig
    user_buckets: int = Field(ge=1)
    vocabs: dict[str, list[str]]
    segments: list[str] = Field(default_factory=list)
    has_ranker: bool
    # sha256 of every other file of the model; absent in models saved before it was recorded
    files: dict[str, str] | None = None

    @field_validator("vocabs")
    @classmethod
    def _vocabs(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        missing = [c for c in DEMO_COLUMNS if c not in v]
        if missing:
            raise ValueError(f"no vocabulary for {missing}")
        return v

    @field_validator("files")
    @classmethod
    def _files(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for name, digest in (v or {}).items():
            if not _FILE_NAME.fullmatch(name) or name == META_FILE:
                raise ValueError(f"{name!r} is not a file name of the model")
            if not _SHA256.fullmatch(digest):
                raise ValueError(f"{name}: {digest!r} is not a sha256 hex digest")
        return v


def save_recommender(rec: Recommender, directory: str | Path) -> Path:
    """Write ``rec`` to ``directory/model``, replacing what a previous save left there.

    The files are written to a new directory next to it, ``config.json`` last, and put in
    place only once all are written: a save that fails (full disk, an error mid-way) leaves
    the model saved there before as it was, and a save never mixes its files with the
    previous model's (a stale ``rank_item_item.npy`` would be loaded over the new sparse one).
    """
    from recsys.recommender import NotFittedError

    if getattr(rec, "history", None) is None:
        raise NotFittedError("save: this Recommender is not fitted yet; call "
                             "fit(interactions, users, items) first (nothing was written)")
    parent = Path(directory)
    out = parent / "model"
    for path in (parent, out):
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path}: exists and is not a directory; a recommender is "
                                     f"saved as the directory {out}")
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".model.{uuid.uuid4().hex}.part"
    staging.mkdir()
    try:
        _write(rec, staging)
        _replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _replace_dir(new: Path, out: Path) -> None:
    """Put the directory ``new`` at ``out``; the one there before is removed only after."""
    if not out.exists():
        os.replace(new, out)
        return
    old = out.with_name(f".model.{uuid.uuid4().hex}.old")
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write(rec: Recommender, out: Path) -> None:
    meta = {
        "format_version": FORMAT_VERSION,
        "config": rec.config.model_dump(),
        "user_buckets": rec.user_buckets,
        "vocabs": {c: rec.vocabs[c].values for c in DEMO_COLUMNS},
        "segments": sorted(rec.popularity.segments),
        "has_ranker": rec.ranker is not None,
    }
    state = {k: v.detach().contiguous() for k, v in rec.model.state_dict().items()}
    save_file(state, str(out / "retrieval.safetensors"))
    np.save(out / "item_embeddings.npy", rec.item_embeddings(), allow_pickle=False)
    _item_table(rec.items).to_parquet(out / "items.parquet", index=False)
    users = rec.users[["user_id", *DEMO_COLUMNS]].copy()
    hist_ids = rec.item_ids[rec.history.flat]
    offsets = rec.history.offsets
    table = pa.Table.from_pandas(users, preserve_index=False).append_column(
        "history", pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                            pa.array(hist_ids, pa.int64()))
    ).append_column("last_ts", pa.array(rec.history.last_ts, pa.int64()))
    pq.write_table(table, out / "user_features.parquet")
    pop = pd.DataFrame({"item_id": rec.item_ids, "count": rec.train_counts})
    pop.to_parquet(out / "popularity.parquet", index=False)
    ranked_lists = {GLOBAL_SEGMENT: rec.popularity.global_rank, **rec.popularity.segments}
    segs = [(s, r, int(rec.item_ids[i])) for s, ranked in ranked_lists.items()
            for r, i in enumerate(ranked)]
    pd.DataFrame(segs, columns=["segment", "rank", "item_id"]).to_parquet(
        out / "segment_popularity.parquet", index=False)
    if rec.ranker is not None:
        rec.ranker.save(out)
        rec.rank_ctx.save(out)
    meta["files"] = {p.name: sha256_file(p) for p in sorted(out.iterdir())}
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))


def _item_table(items: pd.DataFrame) -> pd.DataFrame:
    """The item table a saved model keeps: the contract's columns of the one ``fit`` was given,
    ``title`` and ``genres`` as text. Loading, the model server and the skew and drift jobs
    read only ``item_id``, ``year`` and ``genres`` of it; any other column ``fit`` accepted
    (mixed Python objects, complex numbers, a name that is not text) made ``save`` fail in
    Arrow after the fit ("Expected bytes, got a 'int' object"). Genres are written as
    :func:`recsys.features.genre_matrix` reads them (a falsy value is no genres), so the
    loaded model has the same item features and recommends the same lists."""
    items = items.loc[:, ~items.columns.duplicated()]
    kept = [c for c in ITEM_COLUMNS if c in items.columns]
    dropped = [c for c in items.columns if c not in ITEM_COLUMNS]
    if dropped:
        log.info("save: items columns %s are not part of the saved model (it keeps %s)",
                 [str(c) for c in dropped], kept)
    out = items[kept]
    fixed = {}
    if "title" in out and not isinstance(out["title"].dtype, pd.StringDtype):
        title = out["title"].astype(object)
        fixed["title"] = title.map(str).where(title.notna(), None)  # missing stays missing
    if "genres" in out and not isinstance(out["genres"].dtype, pd.StringDtype):
        # fit's genre_text left no missing value: as genre_matrix, a falsy value is no genres
        fixed["genres"] = out["genres"].astype(object).map(lambda v: str(v) if v else "")
    return out.assign(**fixed)


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """A file of the model that is missing or unreadable is an error naming it (the readers'
    own errors, e.g. safetensors' "incomplete metadata", do not say which file)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except Exception as exc:  # JSON, pydantic, Arrow, safetensors and numpy errors alike
        raise ValueError(f"{path}: not a readable file of a saved recommender (truncated, "
                         f"corrupt or from another version?): {exc}") from exc


def load_recommender(cls: type[Recommender], directory: str | Path) -> Recommender:
    src = Path(directory) / "model"
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{directory}: no saved recommender in it "
                                f"({src / 'config.json'} is missing)")
    with _reading(src / META_FILE):
        raw = json.loads((src / META_FILE).read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
        if raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported format_version {raw.get('format_version')!r} "
                             f"(expected {FORMAT_VERSION})")
        try:
            meta = SavedMeta.model_validate(raw)
        except ValidationError as exc:  # one line naming each field, not pydantic's block
            raise ValueError("; ".join(
                f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
            ) from None
    _verify_files(src, meta.files)
    return _load(cls, src, meta, meta.config)


def _verify_files(src: Path, files: dict[str, str] | None) -> None:
    """Every file of the model is the one ``save`` wrote, before any reader parses it: a
    truncated ``ranker.txt`` aborts the process inside LightGBM, and a changed array loads
    and answers wrongly. Models saved before the checksums were recorded are not checked."""
    if files is None:
        return
    # hidden files (.DS_Store, editors' swap files) are no file of the model and never read
    present = {p.name for p in src.iterdir() if p.name != META_FILE and not p.name.startswith(".")}
    for name in sorted(set(files) | present):
        path = src / name
        if name not in present:
            raise FileNotFoundError(f"{path}: missing from the saved recommender (listed in "
                                    f"{src / META_FILE})")
        with _reading(path):
            if name not in files or not path.is_file():
                raise ValueError(f"not listed in {src / META_FILE}; a saved recommender holds "
                                 "only the files its save wrote")
            digest = sha256_file(path)
            if digest != files[name]:
                raise ValueError(f"sha256 {digest} differs from the {files[name]} recorded in "
                                 f"{src / META_FILE}")


def _load(cls: type[Recommender], src: Path, meta: SavedMeta, config: RecommenderConfig
          ) -> Recommender:
    rec = cls(config)
    with _reading(src / "items.parquet"):
        rec.items = read_parquet(src / "items.parquet")
    with _reading(src / "user_features.parquet"):
        table = pq.read_table(src / "user_features.parquet")
    rec.users = table.select(["user_id", *DEMO_COLUMNS]).to_pandas()
    rec.item_index = IdIndex(rec.items["item_id"].to_numpy())
    rec.user_index = IdIndex(rec.users["user_id"].to_numpy())
    rec.vocabs = {c: Vocab(meta.vocabs[c]) for c in DEMO_COLUMNS}
    rec.user_buckets = meta.user_buckets
    hist = table.column("history").combine_chunks()
    offsets = hist.offsets.to_numpy().astype(np.int64)
    flat = rec.item_index.lookup(hist.values.to_numpy())
    rec.history = HistoryTable(flat, offsets, table.column("last_ts").to_numpy())
    with _reading(src / "popularity.parquet"):
        pop = read_parquet(src / "popularity.parquet")
    rec.train_counts = pop["count"].to_numpy(np.int64)
    rec.demo = rec._demo_array()
    rec.feature_ctx = FeatureContext.build(rec.items, rec.train_counts)
    with _reading(src / "segment_popularity.parquet"):
        segs = read_parquet(src / "segment_popularity.parquet")
    segments = {s: rec.item_index.lookup(part.sort_values("rank")["item_id"].to_numpy())
                for s, part in segs.groupby("segment")}
    counts = rec.train_counts.astype(np.float64)
    global_rank = segments.pop(GLOBAL_SEGMENT, np.argsort(-counts, kind="stable")[:1000])
    rec.popularity = SegmentPopularity(global_rank, segments, counts)
    with _reading(src / "retrieval.safetensors"):
        state = load_file(str(src / "retrieval.safetensors"))
    rows = state["user_id.weight"].shape[0] if "user_id.weight" in state else rec.user_buckets
    if rows != rec.user_buckets:  # checked before the tables are allocated at that size
        raise ValueError(f"{src / META_FILE}: user_buckets {rec.user_buckets} does not match "
                         f"the {rows} rows of user_id.weight in retrieval.safetensors")
    rec.model = rec._new_model()
    with _reading(src / "retrieval.safetensors"):
        rec.model.load_state_dict(state)
    rec.model.eval()
    with _reading(src / "item_embeddings.npy"):
        rec._item_emb = np.load(src / "item_embeddings.npy", allow_pickle=False)
    if meta.has_ranker:
        from recsys.models.ranker import Ranker

        from recsys.models.rank_features import RankContext

        with _reading(src / "ranker.txt"):  # LightGBM aborts the process on a cut-off model
            if "\nend of trees\n" not in (src / "ranker.txt").read_text():
                raise ValueError("the LightGBM model has no 'end of trees' line")
        with _reading(src / "ranker.*"):
            rec.ranker = Ranker.load(src, rec.config.ranker)
        with _reading(src / "rank_*"):
            rec.rank_ctx = RankContext.load(src, rec.feature_ctx.genres,
                                            rec.feature_ctx.years, rec.train_counts)
    return rec
