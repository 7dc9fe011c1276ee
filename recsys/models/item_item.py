"""Item–item co-occurrence model: the "history overlap" signal of the ranker.

Small catalogues get EASE (Steck, 2019), a closed-form ridge regression of every item on all
the others: ``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹`` and a zero diagonal. Large
catalogues, where the dense inverse does not fit, get a sparse top-k cosine neighbourhood
built block by block from a bounded sample of users' recent items, so memory stays bounded at
100k items. Either way ``score(history, candidates)`` sums the weights from the history items
to each candidate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.models.rank_kernels import column_scores

__all__ = ["ItemItem"]


class ItemItem:
    """Weights ``w[i, j]`` from a history item ``i`` to a candidate ``j`` (dense or CSR)."""

    def __init__(self, weights: np.ndarray | sp.csr_matrix):
        self.weights = weights
        self._transposed: np.ndarray | None = None
        self._csc: sp.csc_matrix | None = None

    @property
    def dense(self) -> bool:
        return isinstance(self.weights, np.ndarray)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, user_row: np.ndarray, item_row: np.ndarray, n_users: int, n_items: int,
            lam: float = 250.0, dense_max_items: int = 8000, max_users: int = 100_000,
            max_history: int = 30, top_k: int = 50, seed: int = 0, time_share: float = 1.0,
            time_scale: float = 5.0) -> ItemItem:
        """EASE up to ``dense_max_items`` items, sparse top-k cosine above.

        ``time_share`` < 1 fits EASE on a time-local Gram matrix: ``time_share`` of the plain
        co-occurrence ``XᵀX`` plus ``1 - time_share`` of pairs weighted ``exp(-d / time_scale)``
        by how many events ``d`` apart they are in the user's history, so items rated in the
        same sitting count more than items months apart. ``user_row``/``item_row`` must then be
        sorted by user, then time. Dense path only."""
        if n_items <= dense_max_items:
            gram = _gram(_user_item(user_row, item_row, n_users, n_items))
            if time_share < 1.0:
                gram = time_share * gram + (1.0 - time_share) * _local_gram(
                    user_row, item_row, n_items, time_scale)
            return cls(_ease(gram, lam))
        x = _recent_sample(user_row, item_row, n_users, n_items, max_users, max_history, seed)
        return cls(_cosine_top_k(x, top_k))

    @classmethod
    def fit_adjacency(cls, user_row: np.ndarray, item_row: np.ndarray, n_users: int,
                      n_items: int, window: int = 10, dense_max_items: int = 8000,
                      max_users: int = 20_000, max_history: int = 100, top_k: int = 50,
                      seed: int = 0) -> ItemItem:
        """Session co-occurrence: items ``d ≤ window`` events apart in a user's time-ordered
        events add ``1/d`` to each other's weight; cosine-normalised by item counts.
        ``user_row``/``item_row`` must be sorted by user, then time."""
        u, i = user_row, item_row
        if n_items > dense_max_items:
            keep = _recent_mask(u, n_users, max_users, max_history, seed)
            u, i = u[keep], i[keep]
        counts = np.bincount(i, minlength=n_items).astype(np.float64)
        norm = np.sqrt(np.maximum(counts, 1.0))
        rows, cols, vals = [], [], []
        for d in range(1, window + 1):
            same = u[d:] == u[:-d]
            a, b = i[:-d][same], i[d:][same]
            w = (1.0 / d) / (norm[a] * norm[b])
            rows += [a, b]
            cols += [b, a]
            vals += [w, w]
        if not rows:
            return cls(np.zeros((n_items, n_items), np.float32) if n_items <= dense_max_items
                       else sp.csr_matrix((n_items, n_items), dtype=np.float32))
        adj = sp.csr_matrix((np.concatenate(vals).astype(np.float32),
                             (np.concatenate(rows), np.concatenate(cols))),
                            shape=(n_items, n_items))
        adj.sum_duplicates()
        adj.setdiag(0)
        adj.eliminate_zeros()
        if n_items <= dense_max_items:
            return cls(adj.toarray())
        return cls(_top_k_columns(adj.tocsc(), top_k).tocsr())

    # ------------------------------------------------------------------ scoring
    def score(self, history: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Sum of weights from the ``history`` rows to each ``cand`` row (float32 [n_cand])."""
        if history.size == 0:
            return np.zeros(cand.size, dtype=np.float32)
        if self.dense:
            if history.size <= 16:
                return self.weights[np.ix_(history, cand)].sum(axis=0, dtype=np.float32)
            # candidate rows of the transpose (contiguous) times the history's indicator
            if self._transposed is None:
                self._transposed = np.ascontiguousarray(self.weights.T)
            x = np.zeros(self.weights.shape[0], dtype=self.weights.dtype)
            np.add.at(x, history, 1.0)
            return (self._transposed[cand] @ x).astype(np.float32)
        # CSR rows of the history gathered with numpy (scipy indexing costs ~0.5 ms a call)
        w = self.weights
        starts, ends = w.indptr[history], w.indptr[history + 1]
        lens = ends - starts
        offsets = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(lens.sum())
        cols, vals = w.indices[offsets], w.data[offsets]
        uniq, inverse = np.unique(cand, return_inverse=True)
        pos = np.minimum(np.searchsorted(uniq, cols), uniq.size - 1)
        hit = uniq[pos] == cols
        per_item = np.bincount(pos[hit], weights=vals[hit], minlength=uniq.size)
        return per_item[inverse].astype(np.float32)

    def scores(self, history: np.ndarray, cand: np.ndarray, recent: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(score(history, cand), score(history[-recent:], cand))`` in one pass: the weights
        from the history to the candidates are gathered once (the rank features' path)."""
        history = np.asarray(history, dtype=np.int64)
        cand = np.asarray(cand, dtype=np.int64)
        zeros = np.zeros(cand.size, dtype=np.float32)
        if history.size == 0 or cand.size == 0:
            return zeros, zeros.copy()
        tail = min(recent, history.size)
        if self.dense:
            if history.size > 16:  # long histories: the transposed path of ``score``
                part = self.weights[np.ix_(history[history.size - tail:], cand)]
                return self.score(history, cand), part.sum(axis=0, dtype=np.float32)
            block = self.weights[np.ix_(history, cand)]  # [n_history, n_cand]
            return (block.sum(axis=0, dtype=np.float32),
                    block[history.size - tail:].sum(axis=0, dtype=np.float32)
                    if tail else zeros)
        # Sparse: a candidate's column holds its top-k neighbours only (rows are unbounded:
        # a popular item neighbours thousands), so read the candidates' columns — at most
        # n_cand × top_k entries whatever the history — and weigh each entry by how often its
        # row occurs in the history.
        cols = self._columns()
        return column_scores(cols.indptr, cols.indices, cols.data, cand, history, tail)

    def _columns(self) -> sp.csc_matrix:
        """The sparse weights by column (built once, on first use)."""
        if self._csc is None:
            self._csc = self.weights.tocsc()
            self._csc.sort_indices()
        return self._csc

    def score_matrix(self, x: sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
        """Scores of all items for the users of a binary user×item matrix."""
        return x @ self.weights

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path, prefix: str = "item_item") -> list[str]:
        if self.dense:
            name = f"{prefix}.npy"
            np.save(directory / name, self.weights.astype(np.float32), allow_pickle=False)
            return [name]
        w = self.weights
        names = []
        for part in ("data", "indices", "indptr"):
            name = f"{prefix}_{part}.npy"
            np.save(directory / name, getattr(w, part), allow_pickle=False)
            names.append(name)
        return names

    @classmethod
    def load(cls, directory: Path, n_items: int, prefix: str = "item_item") -> ItemItem:
        dense = directory / f"{prefix}.npy"
        if dense.exists():
            return cls(np.load(dense, allow_pickle=False))
        parts = [np.load(directory / f"{prefix}_{p}.npy", allow_pickle=False)
                 for p in ("data", "indices", "indptr")]
        return cls(sp.csr_matrix(tuple(parts), shape=(n_items, n_items)))


def _user_item(user_row: np.ndarray, item_row: np.ndarray, n_users: int,
               n_items: int) -> sp.csr_matrix:
    x = sp.csr_matrix((np.ones(user_row.size, dtype=np.float32), (user_row, item_row)),
                      shape=(n_users, n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def _gram(x: sp.csr_matrix) -> np.ndarray:
    return (x.T @ x).toarray().astype(np.float64)


def _local_gram(u: np.ndarray, i: np.ndarray, n_items: int, scale: float,
                flush_pairs: int = 8_000_000) -> np.ndarray:
    """``Σ_users Σ_(p, q) exp(-|p - q| / scale)`` over pairs of a user's events at positions
    ``p``, ``q`` of the time order (``u`` sorted by user, then time); distances beyond
    ``6 · scale`` (weight < 0.25%) are left out. Pairs are added ``flush_pairs`` at a time,
    so memory beyond the matrix stays bounded however many events there are."""
    flat = np.bincount(i.astype(np.int64) * (n_items + 1), minlength=n_items * n_items
                       ).astype(np.float64)
    keys: list[np.ndarray] = []
    weights: list[np.ndarray] = []

    def flush() -> None:
        if keys:
            flat[:] += np.bincount(np.concatenate(keys), weights=np.concatenate(weights),
                                   minlength=n_items * n_items)
            keys.clear()
            weights.clear()

    pending = 0
    for d in range(1, max(1, int(np.ceil(6 * scale))) + 1):
        same = u[d:] == u[:-d]
        a, b = i[:-d][same].astype(np.int64), i[d:][same].astype(np.int64)
        keys += [a * n_items + b, b * n_items + a]
        weights.append(np.full(2 * a.size, np.exp(-d / scale)))
        pending += 2 * a.size
        if pending >= flush_pairs:
            flush()
            pending = 0
    flush()
    return flat.reshape(n_items, n_items)


def _ease(gram: np.ndarray, lam: float) -> np.ndarray:
    """EASE weights from a Gram matrix (modified in place)."""
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = p / -np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def _recent_mask(u: np.ndarray, n_users: int, max_users: int, max_history: int,
                 seed: int) -> np.ndarray:
    """Events to keep (``u`` sorted by user, time order within a user): the last
    ``max_history`` of at most ``max_users`` randomly chosen users."""
    counts = np.bincount(u, minlength=n_users)
    from_end = np.repeat(counts, counts) - (np.arange(u.size) - np.repeat(
        np.r_[0, np.cumsum(counts)[:-1]], counts)) - 1
    keep = from_end < max_history
    active = np.flatnonzero(counts)
    if active.size > max_users:
        chosen = np.zeros(n_users, dtype=bool)
        chosen[np.random.default_rng(seed).choice(active, max_users, replace=False)] = True
        keep &= chosen[u]
    return keep


def _recent_sample(user_row: np.ndarray, item_row: np.ndarray, n_users: int, n_items: int,
                   max_users: int, max_history: int, seed: int) -> sp.csr_matrix:
    """Binary user×item matrix over at most ``max_users`` users and their last
    ``max_history`` events (the inputs sorted by user, time order within a user)."""
    keep = _recent_mask(user_row, n_users, max_users, max_history, seed)
    return _user_item(user_row[keep], item_row[keep], n_users, n_items)


def _cosine_top_k(x: sp.csr_matrix, top_k: int, block: int = 512) -> sp.csr_matrix:
    """Top-k cosine neighbours of every item (column j: the neighbours of item j), computed
    ``block`` columns at a time so memory stays bounded."""
    n_items = x.shape[1]
    xt = x.T.tocsr()
    xc = x.tocsc()
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel()).astype(np.float32)
    norms[norms == 0] = 1.0
    blocks = []
    for s in range(0, n_items, block):
        sim = (xt @ xc[:, s:s + block]).tocoo()
        keep = sim.row != sim.col + s
        vals = sim.data[keep] / (norms[sim.row[keep]] * norms[sim.col[keep] + s])
        part = sp.csc_matrix((vals.astype(np.float32), (sim.row[keep], sim.col[keep])),
                             shape=(n_items, min(block, n_items - s)))
        blocks.append(_top_k_columns(part, top_k))
    return sp.hstack(blocks).tocsr() if blocks else sp.csr_matrix((n_items, n_items))


def _top_k_columns(m: sp.csc_matrix, top_k: int) -> sp.csc_matrix:
    """Keep the ``top_k`` largest entries of every column."""
    indptr, indices, data = [0], [], []
    for j in range(m.shape[1]):
        lo, hi = m.indptr[j], m.indptr[j + 1]
        rows, vals = m.indices[lo:hi], m.data[lo:hi]
        if vals.size > top_k:
            top = np.argpartition(-vals, top_k - 1)[:top_k]
            rows, vals = rows[top], vals[top]
        indices.append(rows)
        data.append(vals)
        indptr.append(indptr[-1] + rows.size)
    return sp.csc_matrix((np.concatenate(data) if data else np.zeros(0, np.float32),
                          np.concatenate(indices) if indices else np.zeros(0, np.int32),
                          np.asarray(indptr)), shape=m.shape)
