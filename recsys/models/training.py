"""Training loop of the two-tower model: batches built on the fly, memory bounded.

Training examples are the training interactions sorted by (user, time); an example's history
is the user's items strictly before it (no leakage), gathered per batch from one flat array,
so memory stays O(events) however long the histories are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from recsys.config import RetrievalConfig
from recsys.models.two_tower import TwoTower, UserBatch, time_features

__all__ = ["Examples", "gather_history", "train_two_tower"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Examples:
    """Training interactions sorted by user then time (all arrays aligned)."""

    user_row: np.ndarray  # int64, row in the users table
    user_hash: np.ndarray  # int64
    item_row: np.ndarray  # int64
    ts: np.ndarray  # int64
    start: np.ndarray  # int64, index of the user's first example
    end: np.ndarray  # int64, one past the user's last example

    @classmethod
    def build(cls, user_row: np.ndarray, user_hash: np.ndarray, item_row: np.ndarray,
              ts: np.ndarray) -> Examples:
        order = np.lexsort((ts, user_row))
        u = user_row[order]
        first = np.r_[True, u[1:] != u[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(u.size), 0))
        last = np.r_[u[1:] != u[:-1], True]
        end = np.minimum.accumulate(np.where(last, np.arange(u.size) + 1, u.size)[::-1])[::-1]
        return cls(u, user_hash[order], item_row[order], ts[order], start, end)

    def __len__(self) -> int:
        return int(self.user_row.size)


def gather_history(items: np.ndarray, start: np.ndarray, pos: np.ndarray,
                   length: int) -> np.ndarray:
    """History (item rows + 1, 0 = padding) of ``length`` items before each position."""
    offsets = pos[:, None] - length + np.arange(length)[None, :]
    valid = offsets >= start[pos][:, None]
    hist = np.where(valid, items[np.clip(offsets, 0, None)] + 1, 0)
    return hist.astype(np.int64)


def gather_other(items: np.ndarray, start: np.ndarray, end: np.ndarray, pos: np.ndarray,
                 length: int, rng: np.random.Generator) -> np.ndarray:
    """The user's other items (not only earlier ones) around each position, as item rows + 1:
    all of them when they fit in ``length``, else ``length`` drawn at random."""
    s, n_other = start[pos], end[pos] - start[pos] - 1
    j = np.arange(length)[None, :]
    fits = (n_other <= length)[:, None]
    drawn = np.floor(rng.random((pos.size, length)) * np.maximum(n_other, 1)[:, None])
    r = np.where(fits, j, drawn.astype(np.int64))
    valid = np.where(fits, j < n_other[:, None], (n_other > 0)[:, None])
    r = r + (r >= (pos - s)[:, None])  # skip the example itself
    hist = np.where(valid, items[np.clip(s[:, None] + r, 0, items.size - 1)] + 1, 0)
    return hist.astype(np.int64)


def _batch(ex: Examples, idx: np.ndarray, demo: np.ndarray, cfg: RetrievalConfig,
           rng: np.random.Generator) -> UserBatch:
    if cfg.history_mode == "set":
        hist = gather_other(ex.item_row, ex.start, ex.end, idx, cfg.history_len, rng)
    else:
        hist = gather_history(ex.item_row, ex.start, idx, cfg.history_len)
    if cfg.history_dropout > 0:
        hist = np.where(rng.random(hist.shape) < cfg.history_dropout, 0, hist)
    return UserBatch(
        user_hash=torch.from_numpy(ex.user_hash[idx]),
        demo=torch.from_numpy(demo[ex.user_row[idx]]),
        history=torch.from_numpy(hist),
        time=torch.from_numpy(time_features(ex.ts[idx])),
    )


def train_two_tower(model: TwoTower, ex: Examples, demo: np.ndarray, item_counts: np.ndarray,
                    cfg: RetrievalConfig, seed: int, progress: bool = True,
                    distributed: bool = False,
                    on_epoch: Callable[[int, float], None] | None = None) -> list[float]:
    """Train in place; returns the mean loss of every epoch.

    With ``distributed`` (torchrun, gloo), each process trains on its shard of every epoch
    with ``batch_size / world`` examples per step, so the effective batch and the number of
    steps match a single process; DDP averages the gradients. ``on_epoch(epoch, loss)`` runs
    after every epoch with the model in eval mode (tuning reports and prunes there).
    """
    rank, world = 0, 1
    net: torch.nn.Module = model
    if distributed:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        rank, world = dist.get_rank(), dist.get_world_size()
        net = DistributedDataParallel(model, find_unused_parameters=not cfg.use_user_id)
    torch.manual_seed(seed + rank)
    order_rng = np.random.default_rng(seed)  # the same on every process: disjoint shards
    rng = np.random.default_rng(seed + 1000 * rank)  # history sampling and dropout
    q = item_counts.astype(np.float64) + 1.0
    sparse_names = set(model.sparse_parameters())
    sparse = [p for n, p in model.named_parameters() if n in sparse_names]
    dense = [p for n, p in model.named_parameters() if n not in sparse_names]
    opt_sparse = torch.optim.SparseAdam(sparse, lr=cfg.lr) if sparse else None
    opt_dense = torch.optim.AdamW(dense, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(ex)
    per_step = max(cfg.batch_size // world, 2)
    # log of the expected count of each item among one process's in-batch negatives
    log_q = torch.from_numpy(np.log(q / q.sum() * per_step).astype(np.float32))
    steps = max(n // (per_step * world), 1)
    losses: list[float] = []
    model.train()
    bar = tqdm(total=cfg.epochs * steps, desc="two-tower", unit="step",
               disable=not progress or rank != 0, leave=False)
    for _epoch in range(cfg.epochs):
        perm = order_rng.permutation(n)[rank::world]
        total = 0.0
        for s in range(steps):
            idx = np.sort(perm[s * per_step:(s + 1) * per_step])
            if idx.size < 2:
                continue
            batch = _batch(ex, idx, demo, cfg, rng)
            pos = torch.from_numpy(ex.item_row[idx])
            loss = net(batch, pos, log_q)  # forward() is the loss; DDP hooks need forward
            if opt_sparse is not None:
                opt_sparse.zero_grad(set_to_none=True)
            opt_dense.zero_grad(set_to_none=True)
            loss.backward()
            if opt_sparse is not None:
                opt_sparse.step()
            opt_dense.step()
            total += float(loss.detach())
            bar.update(1)
        losses.append(total / steps)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if on_epoch is not None:
            model.eval()
            on_epoch(_epoch, losses[-1])
            model.train()
    bar.close()
    model.eval()
    return losses
