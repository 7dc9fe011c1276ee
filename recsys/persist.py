"""Saving and loading a fitted recommender: JSON, safetensors, .npy and Parquet; no pickle."""

from __future__ import annotations

import json
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


def load_recommender(cls: type[Recommender], directory: str | Path) -> Recommender:
    src = Path(directory) / "model"
    meta = json.loads((src / "config.json").read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{src / 'config.json'}: unsupported format_version "
                         f"{meta.get('format_version')!r} (expected {FORMAT_VERSION})")
    rec = cls(RecommenderConfig.model_validate(meta["config"]))
    rec.items = pd.read_parquet(src / "items.parquet")
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
    pop = pd.read_parquet(src / "popularity.parquet")
    rec.train_counts = pop["count"].to_numpy(np.int64)
    rec.demo = rec._demo_array()
    rec.feature_ctx = FeatureContext.build(rec.items, rec.train_counts)
    segs = pd.read_parquet(src / "segment_popularity.parquet")
    segments = {s: rec.item_index.lookup(part.sort_values("rank")["item_id"].to_numpy())
                for s, part in segs.groupby("segment")}
    counts = rec.train_counts.astype(np.float64)
    global_rank = segments.pop(GLOBAL_SEGMENT, np.argsort(-counts, kind="stable")[:1000])
    rec.popularity = SegmentPopularity(global_rank, segments, counts)
    rec.model = rec._new_model()
    rec.model.load_state_dict(load_file(str(src / "retrieval.safetensors")))
    rec.model.eval()
    rec._item_emb = np.load(src / "item_embeddings.npy", allow_pickle=False)
    if meta.get("has_ranker"):
        from recsys.models.ranker import Ranker

        from recsys.models.rank_features import RankContext

        rec.ranker = Ranker.load(src, rec.config.ranker)
        rec.rank_ctx = RankContext.load(src, rec.feature_ctx.genres, rec.feature_ctx.years,
                                        rec.train_counts)
    return rec
