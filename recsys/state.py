"""Per-user state: demographics and watch history, online and offline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["HistoryTable", "UserState"]


@dataclass
class UserState:
    """What the model knows about the user of one request."""

    user_id: int
    row: int  # row in the users table, -1 when unknown
    history: np.ndarray  # item rows, most recent last
    demo: np.ndarray  # int64 [4]: age, gender, occupation, region codes
    ts: float
    user: dict[str, str] = field(default_factory=dict)  # demographics as strings
    context: dict[str, object] = field(default_factory=dict)
    cold_start: bool = False
    known: bool = False  # seen in training


class HistoryTable:
    """Histories of all users as one flat int array with offsets (item rows, time order)."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray, last_ts: np.ndarray):
        self.flat = flat.astype(np.int64)
        self.offsets = offsets.astype(np.int64)  # [n_users + 1]
        self.last_ts = last_ts.astype(np.int64)  # [n_users], 0 = no events

    @classmethod
    def build(cls, user_row: np.ndarray, item_row: np.ndarray, ts: np.ndarray,
              n_users: int) -> HistoryTable:
        order = np.lexsort((ts, user_row))
        u = user_row[order]
        counts = np.bincount(u, minlength=n_users)
        offsets = np.r_[0, np.cumsum(counts)]
        last_ts = np.zeros(n_users, dtype=np.int64)
        if u.size:
            ends = offsets[1:][counts > 0] - 1
            last_ts[counts > 0] = ts[order][ends]
        return cls(item_row[order], offsets, last_ts)

    def of(self, row: int) -> np.ndarray:
        if row < 0 or row + 1 >= self.offsets.size:
            return np.zeros(0, dtype=np.int64)
        return self.flat[self.offsets[row]:self.offsets[row + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def padded(self, rows: np.ndarray, length: int) -> np.ndarray:
        """Last ``length`` items of each row as item rows + 1 (0 = padding)."""
        rows = np.asarray(rows, dtype=np.int64)
        ok = rows >= 0
        safe = np.where(ok, rows, 0)
        end = np.where(ok, self.offsets[safe + 1], 0)
        begin = np.where(ok, self.offsets[safe], 0)
        idx = end[:, None] - length + np.arange(length)[None, :]
        valid = idx >= begin[:, None]
        if self.flat.size == 0:
            return np.zeros((rows.size, length), dtype=np.int64)
        return np.where(valid, self.flat[np.clip(idx, 0, self.flat.size - 1)] + 1, 0)
