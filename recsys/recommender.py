"""The multi-stage movie recommender: retrieval → ranking → re-ranking.

``Recommender(config).fit(interactions, users, items)`` uses only the frames it is given;
``recommend(user_ids, k)`` answers offline in batches; the online interface (``user_state``,
``user_embedding``, ``rank``, ``rerank``, ``popular``, ``features``) is what the model
server builds on, request by request, with the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from recsys.config import RecommenderConfig
from recsys.data.fingerprint import canonical_order
from recsys.data.schema import INTERACTIONS
from recsys.encoding import IdIndex, Vocab, stable_hash
from recsys.features import FeatureContext
from recsys.inputs import (check_events, check_int, check_table, event_times, genre_text,
                           index_as_columns, request_user_ids, with_ids, with_numbers)
from recsys.models.popularity import SegmentPopularity
from recsys.models.training import Examples, train_two_tower
from recsys.models.two_tower import TowerSizes, TwoTower, UserBatch, time_features
from recsys.rerank import BusinessRule, apply_rules, isin_small
from recsys.rerank import rerank as rerank_list
from recsys.state import HistoryTable, UserState

__all__ = ["NotFittedError", "Recommender", "UserState"]

log = logging.getLogger(__name__)
DEMO_COLUMNS = ("age_bucket", "gender", "occupation", "region")
MISSING_DEMO = {"age_bucket": "unknown", "gender": "U", "occupation": "unknown",
                "region": "unknown"}
YEAR_MIN, YEAR_STEP, YEAR_BUCKETS = 1920, 5, 24


class NotFittedError(ValueError, AttributeError):
    """``recommend`` (or another use of the model) on a :class:`Recommender` not fitted yet.
    A ValueError, as every refused call of the API is, and an AttributeError, as the missing
    model used to be."""


def year_buckets(years: np.ndarray) -> np.ndarray:
    """Release years -> year-embedding rows: 5-year buckets from YEAR_MIN, and 0 for a year
    that is unknown: 0 (the contract's spelling), negative, or missing (NaN in a float column;
    cast to int it was an "invalid value" warning and a platform-defined number)."""
    y = np.asarray(years, dtype=np.float64)
    known = np.isfinite(y) & (y >= 1)  # as the int cast truncated: 0.5 is 0, unknown
    # clipped into range before the cast, so no value is too large for int64
    y = np.where(known, np.clip(y, YEAR_MIN, YEAR_MIN + YEAR_STEP * YEAR_BUCKETS), YEAR_MIN)
    buckets = np.clip((y.astype(np.int64) - YEAR_MIN) // YEAR_STEP + 1, 1, YEAR_BUCKETS - 1)
    return np.where(known, buckets, 0)


class Recommender:
    """Two-tower retrieval, an optional learned ranker and a rule/diversity re-ranker.

    ``rules`` (a list of :data:`recsys.rerank.BusinessRule`, empty by default; set it on the
    instance, it is not saved with the model) are the business rules every list goes through:
    ``recommend`` and the online ``rerank`` apply them to the candidates after seen and
    unavailable items are removed and before freshness and diversity, and ``popular`` (the
    cold-start list) to the popularity ranking before it is cut to k. A rule gets item rows
    (``item_ids[row]`` is the raw id) and their scores and returns the rows it keeps with
    their scores; it may filter or re-score, never add an item (see ``recsys.rerank``). A rule
    that filters works first within the retrieved pool (``ranker.n_candidates``, for warm
    users); when it leaves fewer than k items there, the list is completed (``recommend`` and
    the online ``rerank`` alike) with the next allowed items of the whole catalogue in
    retrieval order, the rules applied to them too, after the pool's items and with scores
    that do not rise above the last one. So every user gets k items whenever k items that
    are unseen (with ``exclude_seen``), available and allowed by the rules exist.
    """

    def __init__(self, config: RecommenderConfig | Mapping | None = None):
        if isinstance(config, Mapping):
            config = RecommenderConfig.model_validate(dict(config))
        elif config is None:
            config = RecommenderConfig()
        elif not isinstance(config, RecommenderConfig):  # "", 0 or a path: not a default
            raise TypeError(f"config: expected a RecommenderConfig, a dict or None, got "
                            f"{type(config).__name__}")
        self.config = config
        self.version = "dev"
        self.ranker = None  # recsys.models.ranker.Ranker once fitted with the ranker on
        self.rank_ctx = None  # recsys.models.rank_features.RankContext, with the ranker
        self._item_emb: np.ndarray | None = None
        self._user_tower = None  # NumpyUserTower, built from the model on first online use
        self.rules: list[BusinessRule] = []  # business rules of the re-ranking (see above)

    # ------------------------------------------------------------------ fitting
    def _index(self, interactions: pd.DataFrame, users: pd.DataFrame,
               items: pd.DataFrame) -> pd.DataFrame:
        # Contract columns held in the index (set_index("user_id")) read as columns.
        interactions = index_as_columns("interactions", interactions)
        users = index_as_columns("users", users)
        items = index_as_columns("items", items)
        # The ranker learns from the event kinds and ratings too (recsys.models.ranker).
        check_table("interactions", interactions, ("user_id", "item_id", "timestamp") + (
            ("event", "rating") if self.config.ranker.enabled else ()))
        check_table("users", users, ("user_id", *DEMO_COLUMNS), key="user_id")
        check_table("items", items, ("item_id", "year", "genres"), key="item_id")
        if "event" in interactions:
            check_events(interactions)
        # Nothing to learn from: say which table is empty (the ranker, or the first
        # recommend, would fail later with an error that names neither).
        for name, frame in (("items", items), ("interactions", interactions)):
            if not len(frame):
                raise ValueError(f"{name}: no rows; fit needs at least one {name[:-1]}")
        # Ids as int64 from any integer dtype (nullable Int64 or int32 too); a missing or
        # non-integer id is refused naming its table and column before anything else runs.
        interactions = with_ids("interactions", interactions, ("user_id", "item_id"))
        users = with_ids("users", users, ("user_id",))
        items = with_ids("items", items, ("item_id",))
        # Years and ratings from any dtype holding numbers (text or categories of a harness's
        # convert_dtypes() or Arrow-backed tables too); anything else refused naming the column.
        items = with_numbers("items", items, {"year": "release years (0 when unknown)"})
        interactions = with_numbers("interactions", interactions, {"rating": "ratings"})
        # Genres as pipe-separated text: lists joined, a missing value no genres.
        items = genre_text(items)
        self.items = items.sort_values("item_id").reset_index(drop=True)
        # Users with interactions but no row in ``users`` are users all the same, of unknown
        # demographics: their events train the model and are their seen items.
        ids = pd.unique(interactions["user_id"].to_numpy(np.int64))
        extra = np.setdiff1d(ids, users["user_id"].to_numpy(np.int64))
        if extra.size:
            log.warning("fit: %d users of the interactions have no row in users (e.g. %d); "
                        "their demographics are unknown", extra.size, int(extra[0]))
            users = pd.concat([users[["user_id", *DEMO_COLUMNS]].astype(object), pd.DataFrame(
                {"user_id": extra, **{c: MISSING_DEMO[c] for c in DEMO_COLUMNS}})],
                ignore_index=True).astype({"user_id": np.int64})
        self.users = users.sort_values("user_id").reset_index(drop=True)
        # Missing demographics become the contract's "unknown" values (as in the serving
        # features), so that they encode, and save and load, the same way as any other value.
        missing = {c: self.users[c].isna() for c in DEMO_COLUMNS}
        self.users = self.users.assign(**{
            c: self.users[c].astype(object).where(~na, MISSING_DEMO[c])
            for c, na in missing.items() if na.any()})
        self.item_index = IdIndex(self.items["item_id"].to_numpy())
        self.user_index = IdIndex(self.users["user_id"].to_numpy())
        self.vocabs = {c: Vocab(sorted(self.users[c].astype(str).unique())) for c in DEMO_COLUMNS}
        cfg = self.config.retrieval
        self.user_buckets = cfg.user_buckets or max(2 * len(self.user_index), 1024)
        inter = interactions.assign(
            timestamp=event_times(interactions),
            user_row=self.user_index.lookup(interactions["user_id"].to_numpy()),
            item_row=self.item_index.lookup(interactions["item_id"].to_numpy()))
        # Events in the canonical order of the interactions table (user, time, item, event,
        # rating), so that the same events in another row order fit the same model (ties in
        # time and the ranker's folds followed the input order). Sorted input is kept as is.
        order = canonical_order(inter, [c for c in INTERACTIONS.sort_keys if c in inter])
        if order is not None:
            inter = inter.iloc[order]
        dropped = int(((inter.user_row < 0) | (inter.item_row < 0)).sum())
        if dropped == len(inter):
            raise ValueError(f"interactions: none of the {dropped} events is of an item in items "
                             f"(e.g. item_id {int(inter['item_id'].iloc[0])}); nothing to fit")
        if dropped:
            log.warning("fit: %d interactions reference items not in items; ignored", dropped)
        return inter[(inter.user_row >= 0) & (inter.item_row >= 0)]

    def indexed(self, interactions: pd.DataFrame) -> pd.DataFrame:
        """``interactions`` with ``user_row``/``item_row`` of this model (unknown ids dropped)."""
        inter = interactions.assign(
            user_row=self.user_index.lookup(interactions["user_id"].to_numpy()),
            item_row=self.item_index.lookup(interactions["item_id"].to_numpy()))
        return inter[(inter.user_row >= 0) & (inter.item_row >= 0)]

    def _demo_array(self) -> np.ndarray:
        return np.stack([self.vocabs[c].encode(self.users[c].astype(str)) for c in DEMO_COLUMNS],
                        axis=1).astype(np.int64)

    def fit(self, interactions: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame,
            progress: bool = True, distributed: bool = False,
            on_epoch: Callable[[int, float], None] | None = None) -> Recommender:
        """Fit every stage on these frames only.

        ``distributed``: inside ``torchrun`` with an initialised process group (gloo), the
        two-tower model trains with DDP. ``on_epoch(epoch, loss)`` runs after each retrieval
        epoch, when ``recommend(..., stages="retrieval")`` already answers (for tuning).
        A fit that raises leaves the model as it was (fitted or not): it never keeps half of
        the new tables next to the old embeddings.
        """
        before = dict(self.__dict__)  # every stage assigns new objects, none is changed in place
        try:
            return self._fit(interactions, users, items, progress, distributed, on_epoch)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def _fit(self, interactions: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame,
             progress: bool, distributed: bool,
             on_epoch: Callable[[int, float], None] | None) -> Recommender:
        torch.manual_seed(self.config.seed)
        inter = self._index(interactions, users, items)
        n_items, n_users = len(self.item_index), len(self.user_index)
        u_row = inter["user_row"].to_numpy(np.int64)
        i_row = inter["item_row"].to_numpy(np.int64)
        ts = inter["timestamp"].to_numpy(np.int64)
        self.history = HistoryTable.build(u_row, i_row, ts, n_users)
        self.train_counts = np.bincount(i_row, minlength=n_items).astype(np.int64)
        self.demo = self._demo_array()
        self.feature_ctx = FeatureContext.build(self.items, self.train_counts)
        seg_codes, seg_names = self.segments()
        self.popularity = SegmentPopularity.build(
            i_row, seg_codes[u_row], seg_names, n_items, ts=ts,
            half_life_days=self.config.popularity_half_life_days)
        self.model = self._new_model()
        ex = Examples.build(u_row, stable_hash(self.users["user_id"].to_numpy()[u_row],
                                               self.user_buckets), i_row, ts)
        self.ranker, self.rank_ctx = None, None

        def epoch_done(epoch: int, loss: float) -> None:
            self._item_emb, self._user_tower = None, None
            if on_epoch is not None:
                on_epoch(epoch, loss)
            self._item_emb, self._user_tower = None, None

        self.losses = train_two_tower(self.model, ex, self.demo, self.train_counts,
                                      self.config.retrieval, self.config.seed, progress,
                                      distributed, epoch_done)
        self._item_emb, self._user_tower = None, None
        if self.config.ranker.enabled:
            from recsys.models.ranker import Ranker

            self.rank_ctx = self.build_rank_context(inter)
            self.ranker = Ranker(self.config.ranker).fit(self, inter, progress=progress,
                                                         distributed=distributed)
        return self

    def segments(self) -> tuple[np.ndarray, list[str]]:
        """Popularity segment (age bucket | gender) of every user row: codes and names."""
        keys = self.users["age_bucket"].astype(str) + "|" + self.users["gender"].astype(str)
        codes, names = pd.factorize(keys, sort=True)
        return codes.astype(np.int64), [str(n) for n in names]

    def build_rank_context(self, inter: pd.DataFrame):
        """Feature tables of the ranker from the indexed training frame ``inter``."""
        from recsys.models.rank_features import RankContext

        user_segment, seg_names = self.segments()
        cfg = self.config.ranker
        rating = inter["rating"].to_numpy(np.float64) if "rating" in inter else \
            np.zeros(len(inter))
        return RankContext.build(
            inter["user_row"].to_numpy(np.int64), inter["item_row"].to_numpy(np.int64),
            inter["timestamp"].to_numpy(np.int64), rating, user_segment, seg_names,
            len(self.user_index), len(self.item_index), self.feature_ctx.genres,
            self.feature_ctx.years, self.item_embeddings(), ease_lambda=cfg.ease_lambda,
            session_window=cfg.session_window, dense_max_items=cfg.dense_max_items,
            seed=self.config.seed, ease_time_share=cfg.ease_time_share,
            ease_time_scale=cfg.ease_time_scale)

    def user_view(self, row: int):
        """The ranker's view of a stored user (history, time of the last event, segment)."""
        from recsys.models.rank_features import UserView

        hist = self.history.of(row)
        if row >= 0:
            ts = float(self.history.last_ts[row]) or float(self.history.last_ts.max(initial=0))
            seg = self.rank_ctx.segment_row(SegmentPopularity.key(
                self.users["age_bucket"].iat[row], self.users["gender"].iat[row]))
            return UserView(hist, ts, self.demo[row], seg)
        return UserView(hist, float(self.history.last_ts.max(initial=0)),
                        np.zeros(len(DEMO_COLUMNS), dtype=np.int64), -1)

    def state_view(self, state: UserState):
        """The ranker's view of one request."""
        from recsys.models.rank_features import UserView

        seg = self.rank_ctx.segment_row(SegmentPopularity.key(
            state.user.get("age_bucket"), state.user.get("gender"))) if state.user else -1
        return UserView(state.history, state.ts, state.demo, seg)

    def _new_model(self) -> TwoTower:
        sizes = TowerSizes(n_items=len(self.item_index), user_buckets=self.user_buckets,
                           n_age=len(self.vocabs["age_bucket"]),
                           n_gender=len(self.vocabs["gender"]),
                           n_occupation=len(self.vocabs["occupation"]),
                           n_region=len(self.vocabs["region"]),
                           n_genres=self.feature_ctx.genres.shape[1], n_year_buckets=YEAR_BUCKETS)
        model = TwoTower(sizes, self.config.retrieval)
        model.set_item_features(self.feature_ctx.genres, year_buckets(self.feature_ctx.years),
                                known=self.train_counts > 0)
        return model

    # ------------------------------------------------------------------ retrieval
    def item_embeddings(self) -> np.ndarray:
        if self._item_emb is None:
            with torch.no_grad():
                self._item_emb = self.model.item_vectors().numpy().astype(np.float32)
        return self._item_emb

    @property
    def item_ids(self) -> np.ndarray:
        return self.item_index.ids

    def _user_batch(self, rows: np.ndarray, user_ids: np.ndarray, histories: np.ndarray,
                    ts: np.ndarray) -> UserBatch:
        known = rows >= 0
        # The id vector only for users trained with it; others get what id dropout taught.
        trained = known & (self.history.lengths()[np.where(known, rows, 0)] > 0)
        hashes = np.where(trained, stable_hash(user_ids, self.user_buckets), 0)
        demo = np.where(known[:, None], self.demo[np.where(known, rows, 0)], 0)
        return UserBatch(torch.from_numpy(hashes.astype(np.int64)),
                         torch.from_numpy(demo.astype(np.int64)),
                         torch.from_numpy(histories.astype(np.int64)),
                         torch.from_numpy(time_features(ts)))

    def user_vectors(self, rows: np.ndarray, user_ids: np.ndarray, ts: np.ndarray | None = None
                     ) -> np.ndarray:
        """Batch of user embeddings from stored histories (the offline path)."""
        if ts is None:
            ts = np.where(rows >= 0, self.history.last_ts[np.maximum(rows, 0)],
                          self.history.last_ts.max(initial=0))
        hist = self.history.padded(rows, self.config.retrieval.history_len)
        with torch.no_grad():
            return self.model.user_vectors(self._user_batch(rows, user_ids, hist, ts)).numpy()

    def candidates(self, user_ids: Sequence[int], n: int, exclude_seen: bool = True
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-n item rows and scores per user by exact inner product (offline)."""
        uid = np.asarray(user_ids, dtype=np.int64)
        rows = self.user_index.lookup(uid)
        emb = self.item_embeddings()
        n = min(n, emb.shape[0])
        out_idx = np.zeros((uid.size, n), dtype=np.int64)
        out_sc = np.zeros((uid.size, n), dtype=np.float32)
        step = max(1, 20_000_000 // max(emb.shape[0], 1))
        for s in range(0, uid.size, step):
            sl = slice(s, s + step)
            scores = self.user_vectors(rows[sl], uid[sl]) @ emb.T
            if exclude_seen:
                for j, r in enumerate(rows[sl]):
                    scores[j, self.history.of(int(r))] = -np.inf
            top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
            top_sc = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_sc, axis=1, kind="stable")
            out_idx[sl] = np.take_along_axis(top, order, axis=1)
            out_sc[sl] = np.take_along_axis(top_sc, order, axis=1)
        return rows, out_idx, out_sc

    def recommend(self, user_ids: Sequence[int], k: int = 10, exclude_seen: bool = True,
                  stages: str = "full", chunk: int = 10_000) -> pd.DataFrame:
        """Top-k per user: DataFrame(user_id, item_id, score, rank), in the order of
        ``user_ids``; users are processed ``chunk`` at a time, so memory stays bounded.

        Users with fewer than ``cold_start_events`` training events (or unknown ones) get the
        popular-in-segment answer when ``cold_start == "popular"``, as the model server does
        with its cold-start strategy ``popular``. ``stages="retrieval"`` stops after the
        two-tower model (for ablations). A ``k`` that is not an integer >= 0, another
        ``stages``, an ``exclude_seen`` that is not a bool or ``user_ids`` that are not a flat
        sequence of integers raise ``ValueError`` naming the argument; no users or ``k=0``
        give an empty frame of the same columns and dtypes.
        """
        if getattr(self, "history", None) is None:
            raise NotFittedError("recommend: this Recommender is not fitted yet; call "
                                 "fit(interactions, users, items) or Recommender.load first")
        check_int("k", k, 0)
        if not isinstance(exclude_seen, (bool, np.bool_)):  # "no" would exclude, None include
            raise ValueError(f"exclude_seen: expected True or False, got {exclude_seen!r}")
        if stages not in ("full", "retrieval"):
            raise ValueError(f"stages: expected 'full' or 'retrieval', got {stages!r}")
        check_int("chunk", chunk, 1)
        uid = np.asarray(user_ids)
        if uid.ndim != 1:
            raise ValueError(f"user_ids: expected a one-dimensional sequence of user ids, got "
                             f"{type(user_ids).__name__} of shape {uid.shape}")
        uid = request_user_ids(uid)
        k = int(k)
        frames = [self._recommend_chunk(uid[s:s + chunk], k, exclude_seen, stages)
                  for s in range(0, uid.size, chunk)]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame({"user_id": np.zeros(0, np.int64),
                                 "item_id": np.zeros(0, np.int64),
                                 "score": np.zeros(0, np.float32),
                                 "rank": np.zeros(0, np.int64)})
        return pd.concat(frames, ignore_index=True)

    def _recommend_chunk(self, uid: np.ndarray, k: int, exclude_seen: bool, stages: str
                         ) -> pd.DataFrame:
        use_ranker = self.ranker is not None and stages == "full"
        rr = self.config.rerank
        # A pool of n_candidates (as the model server retrieves) whenever a later stage can
        # change which items make the top k: the ranker, diversity, freshness, or unavailable
        # items removed (with only k candidates the user would get fewer than k).
        pooled = use_ranker or rr.diversity > 0 or rr.freshness > 0 or bool(rr.exclude_items)
        n = max(self.config.ranker.n_candidates if pooled else k, k)
        rows = self.user_index.lookup(uid)
        cold = (self.config.cold_start == "popular") & (
            self.history.lengths()[np.maximum(rows, 0)] * (rows >= 0)
            < self.config.cold_start_events)
        answers: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for j in np.flatnonzero(cold):
            state = self.user_state(int(uid[j]))
            if not exclude_seen:
                state.history = state.history[:0]
            answers[int(j)] = self.popular(state, k)
        warm = np.flatnonzero(~cold)
        w_rows, cand, sc = self.candidates(uid[warm], n, exclude_seen)
        wide = self._widened_pools(uid[warm], cand, sc, n, k, exclude_seen)
        if use_ranker and warm.size:
            sc = self.ranker.score_batch(self, w_rows, uid[warm], cand, sc)
        cfg = self.config.rerank
        for i, j in enumerate(warm):
            c_i, s_i = cand[i], sc[i]
            if i in wide:
                c_i, s_i = wide[i]
                if use_ranker:
                    s_i = self.ranker.score_batch(self, w_rows[i:i + 1], uid[warm][i:i + 1],
                                                  c_i[None, :], s_i[None, :])[0]
            blocked = self._blocked(self.history.of(int(w_rows[i])) if exclude_seen else None)
            idx, scores = rerank_list(c_i, s_i, k, cfg, self.feature_ctx.genres,
                                      self.feature_ctx.years, blocked, self.rules)
            if idx.size < k and self.rules:
                vec = self.user_vectors(w_rows[i:i + 1], uid[warm][i:i + 1])[0]
                idx, scores = self._complete(idx, scores, k, vec, blocked)
            answers[int(j)] = idx, scores
        items = [answers[j][0] for j in range(uid.size)]
        sizes = np.fromiter((a.size for a in items), dtype=np.int64, count=uid.size)
        return pd.DataFrame({
            "user_id": np.repeat(uid, sizes),
            "item_id": self.item_ids[np.concatenate(items)] if sizes.sum() else
            np.zeros(0, np.int64),
            "score": np.concatenate([answers[j][1] for j in range(uid.size)]).astype(
                np.float32) if sizes.sum() else np.zeros(0, np.float32),
            "rank": np.concatenate([np.arange(1, m + 1) for m in sizes]) if sizes.sum() else
            np.zeros(0, np.int64)})

    def _widened_pools(self, uid: np.ndarray, cand: np.ndarray, sc: np.ndarray, n: int, k: int,
                       exclude_seen: bool) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Larger candidate pools (position in ``uid`` → item rows and retrieval scores) for
        the users whose ``n`` candidates hold fewer than ``k`` available items once the
        unavailable ones (``rerank.exclude_items``) are removed: each pool is the best
        candidates up to the k-th available one, as the model server sizes its pool
        (``_pool_size``), so a k at or above ``ranker.n_candidates`` still gets k items."""
        unavailable = self._blocked(None)
        n_items = len(self.item_index)
        if unavailable is None or n >= n_items or not uid.size or k == 0:
            return {}
        usable = ~isin_small(cand, unavailable)
        if exclude_seen:
            usable &= np.isfinite(sc)  # seen items are retrieved at -inf, after the rest
        short = np.flatnonzero(usable.sum(axis=1) < k)
        if not short.size:
            return {}
        _, w_cand, w_sc = self.candidates(uid[short], n + unavailable.size, exclude_seen)
        out = {}
        for i, c_i, s_i in zip(short, w_cand, w_sc, strict=True):
            ok = ~isin_small(c_i, unavailable)
            if exclude_seen:
                ok &= np.isfinite(s_i)
            pool = int(min(np.searchsorted(np.cumsum(ok), k) + 1, c_i.size))
            out[int(i)] = (c_i[:pool], s_i[:pool])
        return out

    def _complete(self, idx: np.ndarray, scores: np.ndarray, k: int, user_vec: np.ndarray,
                  blocked: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """A re-ranked list ``idx``/``scores`` shorter than ``k`` (business rules removed
        candidates of the pool) completed with the best items of the catalogue by retrieval
        score (``user_vec`` against the item embeddings) that are not listed, not ``blocked``
        and kept by the rules, appended after the list with scores clipped so that they never
        rise along it. Offline (``recommend``) and online (``rerank``) share it."""
        n_items = len(self.item_index)
        if idx.size >= k or idx.size >= n_items:
            return idx, scores
        free = np.ones(n_items, dtype=bool)
        free[idx] = False
        if blocked is not None and len(blocked):
            free[np.asarray(blocked, dtype=np.int64)] = False
        rows = np.flatnonzero(free)
        if not rows.size:
            return idx, scores
        sc = (self.item_embeddings()[rows] @ np.asarray(user_vec, dtype=np.float32)
              ).astype(np.float32)
        order = np.argsort(-sc, kind="stable")
        rows, sc = apply_rules(rows[order], sc[order], self.rules)
        order = np.argsort(-sc, kind="stable")[:k - idx.size]
        extra, extra_sc = rows[order], sc[order]
        if idx.size:
            extra_sc = np.minimum(extra_sc, np.float32(scores[-1]))
        return (np.concatenate([np.asarray(idx, dtype=np.int64), extra]),
                np.concatenate([np.asarray(scores, dtype=np.float32), extra_sc]))

    def _blocked(self, seen: np.ndarray | None) -> np.ndarray | None:
        extra = self.item_index.lookup(self.config.rerank.exclude_items)
        extra = extra[extra >= 0]
        if seen is None:
            return extra if extra.size else None
        return np.concatenate([seen, extra]) if extra.size else seen

    # ------------------------------------------------------------------ online interface
    def user_state(self, user_id: int, history: Sequence[int] | None = None,
                   ts: float | None = None, context: dict | None = None,
                   demographics: Mapping[str, object] | None = None) -> UserState:
        """What the model knows about one user. ``demographics`` (any of ``DEMO_COLUMNS``,
        coarsened as in the users table) stand in for a user the model has no record of:
        the towers see them without an id and cold start uses their segment's popularity.
        A user in the model's users table keeps the stored demographics. A key outside
        ``DEMO_COLUMNS`` raises ``ValueError`` naming it."""
        row = int(self.user_index.lookup([user_id])[0])
        hist = (self.feature_ctx.rows_of(history) if history is not None
                else self.history.of(row))
        if demographics is not None:
            unknown = sorted(set(demographics) - set(DEMO_COLUMNS))
            if unknown:
                raise ValueError(f"demographics: unknown field(s) {unknown}; expected any of "
                                 f"{list(DEMO_COLUMNS)}")
        if row >= 0:
            user, demo = self._demographics(row), self.demo[row]
        elif demographics:
            user = {c: str(demographics[c]) for c in DEMO_COLUMNS if c in demographics}
            demo = np.array([self.vocabs[c].encode_one(user[c]) if c in user else 0
                             for c in DEMO_COLUMNS], dtype=np.int64)
        else:
            user, demo = {}, np.zeros(len(DEMO_COLUMNS), dtype=np.int64)
        if ts is None:
            ts = float(self.history.last_ts[row]) if row >= 0 and self.history.last_ts[row] \
                else float(self.history.last_ts.max(initial=0))
        known = row >= 0 and self.history.of(row).size > 0
        cold = hist.size < self.config.cold_start_events
        return UserState(int(user_id), row, np.asarray(hist, dtype=np.int64), demo, float(ts),
                         user, dict(context or {}), cold, known)

    def prepare_online(self) -> None:
        """Build what the request path uses lazily (the numpy user tower, the compiled
        ranker), so the first requests do not pay for it; the model server calls it at load."""
        from recsys.models.user_tower import NumpyUserTower

        self._user_tower = NumpyUserTower(self.model)
        if self.ranker is not None:
            self.ranker.compiled()
        if self.rank_ctx is not None:
            self.rank_ctx.warm()  # merges the item-item columns, compiles the features' kernel

    def _demographics(self, row: int) -> dict[str, str]:
        """The users table's demographics of a row as strings, decoded from ``self.demo``
        (the vocabularies hold ``str`` of every value), without pandas on the request path."""
        out = {}
        for j, c in enumerate(DEMO_COLUMNS):
            code = int(self.demo[row, j])
            out[c] = self.vocabs[c].values[code - 1] if code > 0 else str(self.users[c].iat[row])
        return out

    def user_embedding(self, state: UserState) -> np.ndarray:
        """The user tower's vector for one request: the same inputs as the batch path
        (``user_vectors``), computed by :class:`~recsys.models.user_tower.NumpyUserTower`."""
        if self._user_tower is None:
            from recsys.models.user_tower import NumpyUserTower

            self._user_tower = NumpyUserTower(self.model)
        tail = state.history[-self.config.retrieval.history_len:] + 1
        row = state.row
        offsets = self.history.offsets
        # The id vector only for users trained with it (as in ``_user_batch``).
        trained = 0 <= row < offsets.size - 1 and offsets[row + 1] > offsets[row]
        user_hash = int(stable_hash(np.array([state.user_id]), self.user_buckets)[0]) \
            if trained else 0
        return self._user_tower.vector(user_hash, state.demo, tail,
                                       time_features(np.array([state.ts]))[0])

    def rank(self, state: UserState, cand_idx: np.ndarray, retrieval_scores: np.ndarray
             ) -> np.ndarray:
        if self.ranker is None:
            return np.asarray(retrieval_scores, dtype=np.float32)
        return self.ranker.score_one(self, state, cand_idx, retrieval_scores)

    def rerank(self, state: UserState, cand_idx: np.ndarray, scores: np.ndarray, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """The final top k of one request's ranked candidates (see ``rerank_list``); a list
        the business rules left shorter than k is completed as ``recommend`` does it (see
        the class docstring)."""
        blocked = self._blocked(state.history)
        idx, out = rerank_list(cand_idx, scores, k, self.config.rerank, self.feature_ctx.genres,
                               self.feature_ctx.years, blocked, self.rules)
        if idx.size < k and self.rules:
            idx, out = self._complete(idx, out, k, self.user_embedding(state), blocked)
        return idx, out

    def popular(self, state: UserState, k: int, exclude: set[int] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        seg = SegmentPopularity.key(state.user.get("age_bucket"), state.user.get("gender")) \
            if state.user else None
        blocked = self._blocked(np.unique(np.concatenate(
            [state.history, np.fromiter(exclude or (), dtype=np.int64)])))
        if not self.rules:
            return self.popularity.top(seg, k, blocked)
        ranked, scores = self.popularity.top(seg, len(self.item_index), blocked)
        ranked, scores = apply_rules(ranked, scores, self.rules)
        order = np.argsort(-scores, kind="stable")[:k]
        return ranked[order], scores[order]

    def features(self, state: UserState) -> dict[str, object]:
        return self.feature_ctx.request_features(state.user, state.history, state.ts)

    @property
    def cold_start_strategy(self) -> str:
        """How this model answers cold users: ``popular`` (segment popularity) or ``model``."""
        return self.config.cold_start

    def seen_idx(self, state: UserState) -> np.ndarray:
        return state.history

    # ------------------------------------------------------------------ persistence
    def save(self, directory) -> None:
        from recsys.persist import save_recommender

        save_recommender(self, directory)

    @classmethod
    def load(cls, directory) -> Recommender:
        from recsys.persist import load_recommender

        return load_recommender(cls, directory)
