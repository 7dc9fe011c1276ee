"""Two-tower retrieval: user and item towers trained with in-batch sampled softmax.

User tower: hashed user-id embedding, demographics, mean-pooled watch history (sharing the
item-id table), time of day as sine/cosine. Item tower: item id, genres, release year.
The loss is the in-batch softmax over the items of the batch with the logQ correction
(Yi et al., 2019): ``logit - log q(item)`` where q is the item's sampling frequency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recsys.config import RetrievalConfig

__all__ = ["TowerSizes", "TwoTower", "UserBatch", "time_features"]

N_TIME = 4  # sin/cos of hour of day and of day of week
SPARSE_ROWS = 50_000  # id tables with more rows get sparse gradients


def time_features(ts: np.ndarray) -> np.ndarray:
    """Unix seconds → [n, 4] float32: sin/cos of hour of day and of day of week (UTC)."""
    ts = np.asarray(ts, dtype=np.float64)
    hour = (ts % 86400.0) / 3600.0
    dow = ((ts // 86400.0) + 3.0) % 7.0  # 1970-01-01 was a Thursday (3 with Monday = 0)
    a, b = 2 * np.pi * hour / 24.0, 2 * np.pi * dow / 7.0
    return np.stack([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], axis=1).astype(np.float32)


@dataclass(frozen=True)
class TowerSizes:
    n_items: int
    user_buckets: int
    n_age: int
    n_gender: int
    n_occupation: int
    n_region: int
    n_genres: int
    n_year_buckets: int


@dataclass
class UserBatch:
    """Inputs of the user tower; ``history`` holds item rows + 1 (0 is padding)."""

    user_hash: torch.Tensor  # int64 [b]
    demo: torch.Tensor  # int64 [b, 4]: age, gender, occupation, region
    history: torch.Tensor  # int64 [b, L]
    time: torch.Tensor  # float32 [b, 4]


class TwoTower(nn.Module):
    def __init__(self, sizes: TowerSizes, cfg: RetrievalConfig):
        super().__init__()
        d = cfg.dim
        self.sizes, self.cfg = sizes, cfg
        # Large id tables are sparse (SparseAdam): at 1M users only touched rows are updated.
        # Small ones are dense: coalescing sparse gradients costs more than a dense update.
        self.user_id = nn.Embedding(sizes.user_buckets, d, padding_idx=0,
                                    sparse=sizes.user_buckets > SPARSE_ROWS)
        self.item_id = nn.Embedding(sizes.n_items + 1, d, padding_idx=0,
                                    sparse=sizes.n_items + 1 > SPARSE_ROWS)
        # History items get their own table (asymmetric item-item, as in SLIM/EASE) or share
        # the candidate table.
        self.history_id = (nn.Embedding(sizes.n_items + 1, d, padding_idx=0,
                                        sparse=self.item_id.sparse)
                           if cfg.separate_history_table else None)
        self.age = nn.Embedding(sizes.n_age, 8)
        self.gender = nn.Embedding(sizes.n_gender, 4)
        self.occupation = nn.Embedding(sizes.n_occupation, 8)
        self.region = nn.Embedding(sizes.n_region, 8)
        self.year = nn.Embedding(sizes.n_year_buckets, 8)
        user_in = d + d + 8 + 4 + 8 + 8 + N_TIME
        item_in = d + sizes.n_genres + 8
        self.user_mlp = nn.Sequential(nn.Linear(user_in, 2 * d), nn.GELU(),
                                      nn.Dropout(cfg.dropout), nn.Linear(2 * d, d))
        self.item_mlp = nn.Sequential(nn.Linear(item_in, 2 * d), nn.GELU(),
                                      nn.Dropout(cfg.dropout), nn.Linear(2 * d, d))
        for emb in (self.user_id, self.item_id, self.history_id):
            if emb is None:
                continue
            nn.init.normal_(emb.weight, std=0.05)
            with torch.no_grad():
                emb.weight[0].zero_()
        self.register_buffer("item_genres", torch.zeros(sizes.n_items, sizes.n_genres))
        self.register_buffer("item_year", torch.zeros(sizes.n_items, dtype=torch.long))
        # 1 for items with training events; new items get their vector from metadata alone
        self.register_buffer("item_known", torch.ones(sizes.n_items, 1))

    def set_item_features(self, genres: np.ndarray, year_bucket: np.ndarray,
                          known: np.ndarray | None = None) -> None:
        g = torch.as_tensor(genres, dtype=torch.float32)
        self.item_genres.copy_(g / g.sum(dim=1, keepdim=True).clamp(min=1.0))
        self.item_year.copy_(torch.as_tensor(year_bucket, dtype=torch.long))
        if known is not None:
            self.item_known.copy_(torch.as_tensor(known, dtype=torch.float32).reshape(-1, 1))

    # ------------------------------------------------------------------ towers
    def item_vectors(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised item embeddings for item rows (all items when ``rows`` is None)."""
        if rows is None:
            rows = torch.arange(self.sizes.n_items)
        ids = self.item_id(rows + 1) * self.item_known[rows]
        if self.training and self.cfg.item_id_dropout > 0:
            ids = ids * (torch.rand(ids.shape[0], 1) >= self.cfg.item_id_dropout).float()
        x = torch.cat([ids, self.item_genres[rows], self.year(self.item_year[rows])], dim=1)
        return F.normalize(self.item_mlp(x), dim=-1)

    def user_vectors(self, batch: UserBatch, drop_id: float = 0.0) -> torch.Tensor:
        uid = self.user_id(batch.user_hash)
        if not self.cfg.use_user_id:
            uid = torch.zeros_like(uid)
        elif drop_id > 0 and self.training:
            keep = (torch.rand(uid.shape[0], 1) >= drop_id).float()
            uid = uid * keep
        # Mean of the history's item-id vectors (padding 0 ignored), fused in embedding_bag.
        table = self.history_id if self.history_id is not None else self.item_id
        hist = F.embedding_bag(batch.history, table.weight, mode="mean",
                               padding_idx=0, sparse=table.sparse)
        demo = batch.demo
        x = torch.cat([uid, hist, self.age(demo[:, 0]), self.gender(demo[:, 1]),
                       self.occupation(demo[:, 2]), self.region(demo[:, 3]), batch.time], dim=1)
        return F.normalize(self.user_mlp(x), dim=-1)

    # ------------------------------------------------------------------ training
    def sparse_parameters(self) -> list[str]:
        """Names of the parameters with sparse gradients (for SparseAdam)."""
        return [f"{name}.weight" for name in ("user_id", "item_id", "history_id")
                if getattr(self, name) is not None and getattr(self, name).sparse]

    def forward(self, batch: UserBatch, pos_rows: torch.Tensor,
                log_q: torch.Tensor) -> torch.Tensor:
        return self.loss(batch, pos_rows, log_q)

    def loss(self, batch: UserBatch, pos_rows: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        """In-batch sampled softmax with logQ correction; duplicates of the positive masked."""
        u = self.user_vectors(batch, drop_id=self.cfg.id_dropout)
        v = self.item_vectors(pos_rows)
        # b×b work dominates large batches: scale the b×d side, edit the logits in place
        logits = (u / self.cfg.temperature) @ v.T
        if self.cfg.logq_correction:
            logits.sub_(log_q[pos_rows].unsqueeze(0))
        same = pos_rows.unsqueeze(0) == pos_rows.unsqueeze(1)
        same.fill_diagonal_(False)
        logits.masked_fill_(same, -math.inf)
        return F.cross_entropy(logits, torch.arange(len(pos_rows)))
