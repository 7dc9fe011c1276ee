"""Mappings from raw ids and category values to dense indices (stored with the model)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["IdIndex", "Vocab", "stable_hash"]


def stable_hash(ids: np.ndarray, buckets: int) -> np.ndarray:
    """A deterministic hash of int64 ids into ``[1, buckets)`` (0 is reserved for padding)."""
    x = np.asarray(ids, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(29)
    return (x % np.uint64(max(buckets - 1, 1))).astype(np.int64) + 1


class IdIndex:
    """Sorted raw ids ↔ rows 0..n-1; unknown ids map to -1."""

    def __init__(self, ids: Iterable[int]):
        self.ids = np.unique(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids,
                                        dtype=np.int64))

    def __len__(self) -> int:
        return int(self.ids.size)

    def lookup(self, raw: np.ndarray | Sequence[int]) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.int64)
        pos = np.searchsorted(self.ids, raw)
        pos = np.clip(pos, 0, max(self.ids.size - 1, 0))
        found = self.ids.size > 0
        ok = (self.ids[pos] == raw) if found else np.zeros(raw.shape, dtype=bool)
        return np.where(ok, pos, -1).astype(np.int64)


class Vocab:
    """Category values → 1..n; 0 means unknown or missing."""

    def __init__(self, values: Sequence[str]):
        self.values = list(dict.fromkeys(str(v) for v in values))
        self._index = {v: i + 1 for i, v in enumerate(self.values)}

    def __len__(self) -> int:
        return len(self.values) + 1

    def encode(self, values: Iterable[object]) -> np.ndarray:
        get = self._index.get
        return np.fromiter((get(str(v), 0) for v in values), dtype=np.int64)

    def encode_one(self, value: object) -> int:
        return self._index.get(str(value), 0)
