"""Synthetic MovieLens-like data with planted, learnable structure, at any scale.

What is planted (and what a good recommender should recover):

* **Taste groups.** Every user belongs to one of ``n_groups`` groups; each group prefers two or
  three genres. With probability ``affinity`` an event's item is drawn from the group's genres,
  otherwise from the whole catalogue. Ratings are higher for items of the user's genres.
* **Long-tail popularity.** Item weights follow a Zipf law ``1 / rank ** zipf_exponent`` over a
  random ranking, within groups and globally.
* **Realistic time.** Each user is active during a window of weeks inside ``days``; events
  follow a weekly profile (busier Friday to Sunday) and a daily one (evening peak), UTC.
* **Demographics correlated with groups.** Each group has its own age-bucket, gender,
  occupation and region profile.
* **Heavy-tailed activity.** Per-user event counts are multinomial over log-normal activity.

``drift`` (:class:`Drift`) perturbs a dataset the way monitoring needs to detect: a demographic
shift (users drawn from a younger, differently located profile) and a genre shift (taste events
moved to another group's genres).

Generation is vectorised numpy over chunks of users (int32/float32 internally) and fully
determined by the arguments, ``seed`` included (``chunk_events`` too, since each chunk draws
from its own seeded stream).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.arrays import StringArray

from recsys.data.schema import AGE_BUCKETS, EVENTS, GENRES, REGIONS, Dataset

__all__ = [
    "OCCUPATIONS",
    "Drift",
    "SynthConfig",
    "PlantedStructure",
    "generate",
    "generate_with_truth",
]

OCCUPATIONS: tuple[str, ...] = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other",
    "programmer", "retired", "salesman", "scientist", "student", "technician", "writer",
)
#: Relative frequency of each genre in the MovieLens-100k catalogue (GENRES order).
_GENRE_PRIOR = np.array([0, 251, 135, 42, 122, 505, 109, 50, 725, 22, 24, 92, 56, 61, 247, 101,
                         251, 71, 27], dtype=np.float64)
#: Events per weekday, Monday first, and per UTC hour (evening peak).
_WEEKDAY_P = np.array([0.12, 0.12, 0.12, 0.13, 0.16, 0.18, 0.17])
_HOUR_P = np.array([3, 2, 1.5, 1, 1, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 4.5, 4.5, 5, 5.5, 6.5, 8,
                    9.5, 10, 9, 7, 5], dtype=np.float64)
_DAY = 86_400
_WEEK = 7 * _DAY
_N_AGES = len(AGE_BUCKETS) - 1  # the seven real buckets; "unknown" is added as noise
_N_REGIONS = len(REGIONS) - 1
_MAX_ROWS = 2 ** 31 - 2  # user and item rows are int32, their ids row + 1
_MAX_EVENTS = 2 ** 63 - 1


@dataclass(frozen=True)
class Drift:
    """Perturbations for monitoring tests; 0 means none.

    ``demographic_shift``: fraction of users whose demographics come from one shifted profile
    (mostly under 25, mostly ``US-9``/``non-US``, more women, more students).
    ``genre_shift``: fraction of taste-driven events drawn from the next group's genres.
    """

    demographic_shift: float = 0.0
    genre_shift: float = 0.0

    def __post_init__(self) -> None:
        for name in ("demographic_shift", "genre_shift"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Drift.{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a synthetic dataset."""

    n_users: int
    n_items: int
    n_events: int
    seed: int = 0
    n_groups: int = 8
    affinity: float = 0.8
    zipf_exponent: float = 1.0
    start: int = 1_672_617_600  # 2023-01-02T00:00:00Z, a Monday
    days: int = 730
    event_mix: tuple[float, float, float] = (0.6, 0.3, 0.1)  # rating, watch, click
    drift: Drift = field(default_factory=Drift)
    chunk_events: int = 2_000_000

    def __post_init__(self) -> None:
        if min(self.n_users, self.n_items) < 1 or self.n_events < 0:
            raise ValueError("n_users and n_items must be >= 1 and n_events >= 0")
        # Rows are int32 internally (ids are row + 1), event counts go through numpy's C long.
        for name, most in (("n_users", _MAX_ROWS), ("n_items", _MAX_ROWS),
                           ("n_events", _MAX_EVENTS)):
            if getattr(self, name) > most:
                raise ValueError(f"{name} must be <= {most:,}, got {getattr(self, name):,}")
        if self.seed < 0:  # numpy's SeedSequence takes non-negative integers only
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not 1 <= self.n_groups <= 64:
            raise ValueError(f"n_groups must be in 1..64, got {self.n_groups}")
        if not 0.0 <= self.affinity <= 1.0:
            raise ValueError(f"affinity must be in [0, 1], got {self.affinity}")
        if self.days < 7:
            raise ValueError(f"days must be >= 7, got {self.days}")
        if len(self.event_mix) != len(EVENTS) or min(self.event_mix) < 0 or sum(
                self.event_mix) <= 0:
            raise ValueError(f"event_mix needs {len(EVENTS)} non-negative weights")


@dataclass(frozen=True, eq=False)
class PlantedStructure:
    """The ground truth behind a synthetic dataset (row ``i`` is user/item id ``i + 1``)."""

    user_group: np.ndarray  # int16 [n_users]
    group_genres: tuple[tuple[str, ...], ...]
    item_genre_mask: np.ndarray  # bool [n_items, len(GENRES)]
    item_popularity: np.ndarray  # float32 [n_items], sums to 1

    def group_item_mask(self, group: int) -> np.ndarray:
        """bool [n_items]: items with at least one of the group's genres."""
        cols = [GENRES.index(g) for g in self.group_genres[group]]
        return self.item_genre_mask[:, cols].any(axis=1)


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator:
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("synthetic events", total=total)
        yield lambda n: bar.advance(task, n)


def _categorical(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    cdf = np.cumsum(p, dtype=np.float64)
    return np.minimum(np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right"),
                      len(p) - 1).astype(np.int16)


def _group_genres(rng: np.random.Generator, n_groups: int) -> list[list[int]]:
    real = np.arange(1, len(GENRES))  # skip "unknown"
    primaries = rng.permutation(real)
    out = []
    for g in range(n_groups):
        primary = int(primaries[g % len(real)])
        others = rng.choice(real[real != primary], size=int(rng.integers(1, 3)), replace=False)
        out.append([primary, *map(int, others)])
    return out


def _items(rng: np.random.Generator, cfg: SynthConfig, groups: list[list[int]]
           ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    n = cfg.n_items
    prior = _GENRE_PRIOR / _GENRE_PRIOR.sum()
    mask = np.zeros((n, len(GENRES)), dtype=bool)
    rows = np.arange(n)
    mask[rows, _categorical(rng, prior, n)] = True
    for p_extra in (0.5, 0.2):
        extra = rows[rng.random(n) < p_extra]
        mask[extra, _categorical(rng, prior, len(extra))] = True
    for genres in groups:  # every taste group needs items to like
        if not mask[:, genres].any():
            chosen = rng.choice(n, size=max(1, n // 50), replace=False)
            mask[chosen, genres[0]] = True
    ranks = rng.permutation(n).astype(np.float64) + 1.0
    popularity = (1.0 / ranks ** cfg.zipf_exponent)
    popularity /= popularity.sum()
    bits = (mask.astype(np.int64) << np.arange(len(GENRES), dtype=np.int64)).sum(axis=1)
    codes, inverse = np.unique(bits, return_inverse=True)
    names = np.array(["|".join(g for i, g in enumerate(GENRES) if code >> i & 1)
                      for code in codes], dtype=object)
    primary = np.asarray(GENRES, dtype=object)[mask.argmax(axis=1)]
    year = np.clip(2024 - np.floor(rng.exponential(15.0, n)), 1920, 2024).astype(np.int64)
    titles = [f"Synthetic {p} #{i}" for i, p in enumerate(primary, start=1)]
    items = pd.DataFrame({
        "item_id": np.arange(1, n + 1, dtype=np.int64),
        "title": StringArray(np.asarray(titles, dtype=object)),
        "year": year,
        "genres": StringArray(names[inverse]),
    })
    return items, mask, popularity


def _profiles(rng: np.random.Generator, n_groups: int) -> dict[str, np.ndarray]:
    """Per-group demographic distributions (rows sum to 1)."""
    centre = rng.integers(0, _N_AGES, n_groups)
    dist = np.abs(np.arange(_N_AGES)[None, :] - centre[:, None])
    return {
        "age": np.exp(-1.1 * dist) / np.exp(-1.1 * dist).sum(axis=1, keepdims=True),
        "female": rng.uniform(0.15, 0.75, n_groups),
        "occupation": rng.dirichlet(np.full(len(OCCUPATIONS), 0.6), n_groups),
        "region": rng.dirichlet(np.full(_N_REGIONS, 1.5), n_groups),
    }


def _shifted_profile() -> dict[str, np.ndarray]:
    age = np.array([0.35, 0.45, 0.12, 0.04, 0.02, 0.01, 0.01])
    region = np.full(_N_REGIONS, 0.02)
    region[9], region[10] = 0.5, 0.3  # US-9, non-US
    occupation = np.full(len(OCCUPATIONS), 0.01)
    occupation[OCCUPATIONS.index("student")] = 0.8
    return {"age": age / age.sum(), "female": np.array(0.7), "occupation":
            occupation / occupation.sum(), "region": region / region.sum()}


def _users(rng: np.random.Generator, cfg: SynthConfig, group: np.ndarray) -> pd.DataFrame:
    n = cfg.n_users
    prof = _profiles(rng, cfg.n_groups)
    age = np.empty(n, np.int16)
    occ = np.empty(n, np.int16)
    region = np.empty(n, np.int16)
    female = np.empty(n, np.float32)
    shifted = rng.random(n) < cfg.drift.demographic_shift
    parts = [(group == g) & ~shifted for g in range(cfg.n_groups)] + [shifted]
    shift = _shifted_profile()
    for k, members in enumerate(parts):
        idx = np.flatnonzero(members)
        if len(idx) == 0:
            continue
        p = shift if k == cfg.n_groups else {key: v[k] for key, v in prof.items()}
        age[idx] = _categorical(rng, p["age"], len(idx))
        occ[idx] = _categorical(rng, p["occupation"], len(idx))
        region[idx] = _categorical(rng, p["region"], len(idx))
        female[idx] = p["female"]
    age[rng.random(n) < 0.01] = len(AGE_BUCKETS) - 1
    region[rng.random(n) < 0.01] = len(REGIONS) - 1
    u = rng.random(n)
    gender = np.where(u < 0.02, 2, np.where(u < 0.02 + 0.98 * female, 1, 0)).astype(np.int8)

    def text(vocab: tuple[str, ...], codes: np.ndarray) -> StringArray:
        return StringArray(np.asarray(vocab, dtype=object)[codes])

    return pd.DataFrame({
        "user_id": np.arange(1, n + 1, dtype=np.int64),
        "age_bucket": text(AGE_BUCKETS, age),
        "gender": text(("M", "F", "U"), gender),
        "occupation": text(OCCUPATIONS, occ),
        "region": text(REGIONS, region),
    })


@dataclass(frozen=True)
class _Pools:
    """Per-group item pools with popularity CDFs, plus the global CDF."""

    items: list[np.ndarray]
    cdfs: list[np.ndarray]
    global_cdf: np.ndarray

    @classmethod
    def build(cls, mask: np.ndarray, popularity: np.ndarray, groups: list[list[int]]) -> _Pools:
        items, cdfs = [], []
        for genres in groups:
            pool = np.flatnonzero(mask[:, genres].any(axis=1)).astype(np.int32)
            items.append(pool)
            cdfs.append(np.cumsum(popularity[pool]))
        return cls(items, cdfs, np.cumsum(popularity))

    def draw(self, rng: np.random.Generator, group: np.ndarray, taste: np.ndarray) -> np.ndarray:
        """Item rows (int32) for events of ``group``; ``taste`` events come from the pools."""
        out = _sample(rng, self.global_cdf, len(group)).astype(np.int32)
        for g, (pool, cdf) in enumerate(zip(self.items, self.cdfs, strict=True)):
            idx = np.flatnonzero(taste & (group == g))
            if len(idx):
                out[idx] = pool[_sample(rng, cdf, len(idx))]
        return out


def _sample(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right"),
                      len(cdf) - 1)


def _sort_and_dedupe(user: np.ndarray, item: np.ndarray, ts: np.ndarray, event: np.ndarray,
                     rating: np.ndarray) -> None:
    """Order rows by (user, ts, item, event name) in place, the canonical order of
    ``INTERACTIONS.sort_keys``; exact duplicates of (user, item, ts, event) are moved one second
    later until none is left."""
    by_name = np.argsort(np.argsort(np.asarray(EVENTS))).astype(np.int8)  # code -> name rank
    for _ in range(100):
        order = np.lexsort((by_name[event], item, ts, user))
        for column in (user, item, ts, event, rating):
            column[:] = column[order]
        same = ((user[1:] == user[:-1]) & (ts[1:] == ts[:-1]) & (item[1:] == item[:-1])
                & (event[1:] == event[:-1]))
        if not same.any():
            return
        ts[1:][same] += 1
    raise RuntimeError("could not remove duplicate synthetic events")  # pragma: no cover


def generate_with_truth(n_users: int, n_items: int, n_events: int, seed: int = 0,
                        n_groups: int = 8, *, progress: bool = False, **options: object
                        ) -> tuple[Dataset, PlantedStructure]:
    """A synthetic :class:`Dataset` and the structure planted in it.

    ``options`` are the remaining :class:`SynthConfig` fields (``affinity``, ``zipf_exponent``,
    ``start``, ``days``, ``event_mix``, ``drift``, ``chunk_events``).
    """
    cfg = SynthConfig(n_users=n_users, n_items=n_items, n_events=n_events, seed=seed,
                      n_groups=n_groups, **options)  # type: ignore[arg-type]
    seeds = np.random.SeedSequence(cfg.seed).spawn(4)
    rng_items, rng_users, rng_time = (np.random.default_rng(s) for s in seeds[:3])

    groups = _group_genres(rng_items, cfg.n_groups)
    items, mask, popularity = _items(rng_items, cfg, groups)
    sizes = rng_users.dirichlet(np.full(cfg.n_groups, 5.0))
    user_group = _categorical(rng_users, sizes, cfg.n_users)
    users = _users(rng_users, cfg, user_group)
    activity = rng_users.lognormal(0.0, 1.0, cfg.n_users)
    counts = rng_users.multinomial(cfg.n_events, activity / activity.sum()).astype(np.int64)
    user_bias = rng_users.normal(0.0, 0.4, cfg.n_users).astype(np.float32)
    item_quality = rng_items.normal(0.0, 0.5, cfg.n_items).astype(np.float32)
    group_bits = np.zeros((cfg.n_groups, len(GENRES)), dtype=bool)
    for g, genres in enumerate(groups):
        group_bits[g, genres] = True

    n_weeks = cfg.days // 7
    span = np.minimum(n_weeks, 1 + np.floor(rng_time.exponential(16.0, cfg.n_users))).astype(
        np.int32)
    first_week = np.floor(rng_time.random(cfg.n_users) * (n_weeks - span + 1)).astype(np.int32)

    pools = _Pools.build(mask, popularity, groups)
    event_p = np.asarray(cfg.event_mix, dtype=np.float64)

    user_col = np.empty(cfg.n_events, np.int32)
    item_col = np.empty(cfg.n_events, np.int32)
    ts_col = np.empty(cfg.n_events, np.int64)
    rating_col = np.zeros(cfg.n_events, np.float32)
    event_col = np.empty(cfg.n_events, np.int8)

    # chunks of whole users, ~chunk_events events each
    ends = np.cumsum(counts)
    bounds = np.searchsorted(ends, np.arange(cfg.chunk_events, cfg.n_events, cfg.chunk_events),
                             side="left")
    user_cuts = np.unique(np.r_[0, bounds + 1, cfg.n_users].clip(0, cfg.n_users))
    chunk_rngs = [np.random.default_rng(s) for s in seeds[3].spawn(len(user_cuts) - 1)]
    with _progress(progress, cfg.n_events) as advance:
        for (lo, hi), rng in zip(zip(user_cuts[:-1], user_cuts[1:], strict=True), chunk_rngs,
                                 strict=True):
            start, stop = (int(ends[lo - 1]) if lo else 0), int(ends[hi - 1])
            k = stop - start
            if k == 0:
                continue
            u = np.repeat(np.arange(lo, hi, dtype=np.int32), counts[lo:hi])
            g = user_group[u].astype(np.int16)
            taste = rng.random(k) < cfg.affinity
            moved = taste & (rng.random(k) < cfg.drift.genre_shift)
            g_draw = np.where(moved, (g + 1) % cfg.n_groups, g).astype(np.int16)
            it = pools.draw(rng, g_draw, taste)
            week = first_week[u] + np.floor(rng.random(k) * span[u]).astype(np.int32)
            day = week.astype(np.int64) * 7 + _categorical(rng, _WEEKDAY_P, k)
            ts = (cfg.start + day * _DAY + _categorical(rng, _HOUR_P, k).astype(np.int64) * 3600
                  + rng.integers(0, 3600, k))
            ev = _categorical(rng, event_p, k).astype(np.int8)
            match = (mask[it] & group_bits[g]).any(axis=1)
            score = (3.1 + 0.9 * match + item_quality[it] + user_bias[u]
                     + rng.normal(0.0, 0.7, k).astype(np.float32))
            rating = np.where(ev == 0, np.clip(np.rint(score), 1, 5), 0).astype(np.float32)
            _sort_and_dedupe(u, it, ts, ev, rating)
            user_col[start:stop], item_col[start:stop] = u, it
            ts_col[start:stop], event_col[start:stop] = ts, ev
            rating_col[start:stop] = rating
            advance(k)

    interactions = pd.DataFrame({
        "user_id": user_col.astype(np.int64) + 1,
        "item_id": item_col.astype(np.int64) + 1,
        "rating": rating_col,
        "timestamp": ts_col,
        "event": StringArray(np.asarray(EVENTS, dtype=object)[event_col]),
    })
    del user_col, item_col, event_col
    truth = PlantedStructure(
        user_group=user_group,
        group_genres=tuple(tuple(GENRES[i] for i in genres) for genres in groups),
        item_genre_mask=mask,
        item_popularity=popularity.astype(np.float32),
    )
    return Dataset(interactions=interactions, users=users, items=items), truth


def generate(n_users: int, n_items: int, n_events: int, seed: int = 0, n_groups: int = 8, *,
             progress: bool = False, **options: object) -> Dataset:
    """A synthetic :class:`Dataset`; see :func:`generate_with_truth` for the options."""
    return generate_with_truth(n_users, n_items, n_events, seed, n_groups, progress=progress,
                               **options)[0]
