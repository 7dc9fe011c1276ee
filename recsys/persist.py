"""Saving and loading a fitted recommender: JSON, safetensors, .npy and Parquet; no pickle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.torch import load_file, save_file

from recsys.config import RecommenderConfig
from recsys.encoding import IdIndex, Vocab
from recsys.features import FeatureContext
from recsys.models.popularity import SegmentPopularity
from recsys.state import HistoryTable

if TYPE_CHECKING:
    from recsys.recommender import Recommender

__all__ = ["FORMAT_VERSION", "save_recommender", "load_recommender"]

FORMAT_VERSION = 1
DEMO_COLUMNS = ("age_bucket", "gender", "occupation", "region")
GLOBAL_SEGMENT = "*"  # the global ranking's row in segment_popularity.parquet


def save_recommender(rec: Recommender, directory: str | Path) -> Path:
    out = Path(directory) / "model"
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "config": rec.config.model_dump(),
        "user_buckets": rec.user_buckets,
        "vocabs": {c: rec.vocabs[c].values for c in DEMO_COLUMNS},
        "segments": sorted(rec.popularity.segments),
        "has_ranker": rec.ranker is not None,
    }
    (out / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    state = {k: v.detach().contiguous() for k, v in rec.model.state_dict().items()}
    save_file(state, str(out / "retrieval.safetensors"))
    np.save(out / "item_embeddings.npy", rec.item_embeddings(), allow_pickle=False)
    rec.items.to_parquet(out / "items.parquet", index=False)
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
    return out


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
    with _reading(src / "config.json"):
        meta = json.loads((src / "config.json").read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported format_version {meta.get('format_version')!r} "
                             f"(expected {FORMAT_VERSION})")
        config = RecommenderConfig.model_validate(meta["config"])
    return _load(cls, src, meta, config)


def _load(cls: type[Recommender], src: Path, meta: dict, config: RecommenderConfig
          ) -> Recommender:
    rec = cls(config)
    with _reading(src / "items.parquet"):
        rec.items = pd.read_parquet(src / "items.parquet")
    with _reading(src / "user_features.parquet"):
        table = pq.read_table(src / "user_features.parquet")
    rec.users = table.select(["user_id", *DEMO_COLUMNS]).to_pandas()
    rec.item_index = IdIndex(rec.items["item_id"].to_numpy())
    rec.user_index = IdIndex(rec.users["user_id"].to_numpy())
    rec.vocabs = {c: Vocab(meta["vocabs"][c]) for c in DEMO_COLUMNS}
    rec.user_buckets = int(meta["user_buckets"])
    hist = table.column("history").combine_chunks()
    offsets = hist.offsets.to_numpy().astype(np.int64)
    flat = rec.item_index.lookup(hist.values.to_numpy())
    rec.history = HistoryTable(flat, offsets, table.column("last_ts").to_numpy())
    with _reading(src / "popularity.parquet"):
        pop = pd.read_parquet(src / "popularity.parquet")
    rec.train_counts = pop["count"].to_numpy(np.int64)
    rec.demo = rec._demo_array()
    rec.feature_ctx = FeatureContext.build(rec.items, rec.train_counts)
    with _reading(src / "segment_popularity.parquet"):
        segs = pd.read_parquet(src / "segment_popularity.parquet")
    segments = {s: rec.item_index.lookup(part.sort_values("rank")["item_id"].to_numpy())
                for s, part in segs.groupby("segment")}
    counts = rec.train_counts.astype(np.float64)
    global_rank = segments.pop(GLOBAL_SEGMENT, np.argsort(-counts, kind="stable")[:1000])
    rec.popularity = SegmentPopularity(global_rank, segments, counts)
    rec.model = rec._new_model()
    with _reading(src / "retrieval.safetensors"):
        rec.model.load_state_dict(load_file(str(src / "retrieval.safetensors")))
    rec.model.eval()
    with _reading(src / "item_embeddings.npy"):
        rec._item_emb = np.load(src / "item_embeddings.npy", allow_pickle=False)
    if meta.get("has_ranker"):
        from recsys.models.ranker import Ranker

        from recsys.models.rank_features import RankContext

        with _reading(src / "ranker.*"):
            rec.ranker = Ranker.load(src, rec.config.ranker)
        with _reading(src / "rank_*"):
            rec.rank_ctx = RankContext.load(src, rec.feature_ctx.genres,
                                            rec.feature_ctx.years, rec.train_counts)
    return rec
