"""Session 19 (C): the recommender library used as an evaluation harness uses it.

Each test goes through the public API (``Recommender.fit`` / ``recommend``, the serving
``Runtime.recommend`` that calls the online ``rerank``, the pipeline's validate component)
and failed on the code before its fix.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kfp.dsl import Dataset, Metrics

from recsys.data.errors import DataValidationError
from recsys.data.synth import generate
from recsys.recommender import Recommender
from tests.unit.small_recsys import SMALL, data  # noqa: F401 - a fixture



@pytest.fixture(scope="module")
def rec(data):
    return Recommender(SMALL).fit(data.interactions, data.users, data.items, progress=False)


def _drama(data) -> set[int]:
    g = data.items.set_index("item_id")["genres"].astype(str)
    return set(g[g.str.contains("Drama")].index.tolist())


@pytest.fixture()
def no_drama(rec, data):
    """A rule removing every Drama (a third of the catalogue) on the instance, then off."""
    rows = np.sort(rec.item_index.lookup(np.array(sorted(_drama(data)))))

    def no_drama_rule(cand, scores):
        keep = ~np.isin(cand, rows)
        return cand[keep], scores[keep]

    rec.rules = [no_drama_rule]
    yield rec
    rec.rules = []


@pytest.mark.parametrize("stages", ["full", "retrieval"])
def test_a_filtering_rule_still_leaves_k_items_offline(data, no_drama, stages):
    k = 10
    users = data.users["user_id"].to_numpy()
    out = no_drama.recommend(users, k=k, stages=stages)
    seen = data.interactions.groupby("user_id")["item_id"].agg(set)
    allowed = set(data.items["item_id"].tolist()) - _drama(data)
    for u in users:
        got = out[out["user_id"] == u]
        available = allowed - seen.get(u, set())
        assert len(got) == min(k, len(available)), (u, len(got), len(available))
        assert set(got["item_id"]) <= available
        assert not got["item_id"].duplicated().any()
        assert (np.diff(got["score"].to_numpy()) <= 0).all()
        assert got["rank"].tolist() == list(range(1, len(got) + 1))


def test_a_filtering_rule_still_leaves_k_items_on_the_serving_path(data, no_drama):
    from serving.runtime.runtime import Runtime, StageBudgets

    runtime = Runtime(no_drama, candidates=10,
                      budgets=StageBudgets(math.inf, math.inf, math.inf))
    seen = data.interactions.groupby("user_id")["item_id"].agg(set)
    drama = _drama(data)
    ts = float(data.interactions["timestamp"].max())
    for u in data.users["user_id"].to_numpy()[:40]:
        r = runtime.recommend(int(u), k=10, ts=ts)
        assert not r.fallback, r.fallback_reason
        assert len(r.items) == 10, (u, r.items)
        assert not set(r.items) & drama
        assert not set(r.items) & seen.get(u, set())
        assert len(set(r.items)) == 10
        assert (np.diff(r.scores) <= 0).all()


def _with_na(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    out = frame.astype({column: "Int64"})
    out.loc[out.index[3], column] = pd.NA
    return out


@pytest.mark.parametrize("table,column", [("interactions", "user_id"),
                                          ("interactions", "item_id"),
                                          ("users", "user_id"), ("items", "item_id")])
def test_fit_names_a_missing_id_of_a_nullable_column(data, table, column):
    tables = {"interactions": data.interactions, "users": data.users, "items": data.items}
    tables[table] = _with_na(tables[table], column)
    with pytest.raises(ValueError, match=rf"^{table}\.{column}: 1 missing value"):
        Recommender(SMALL).fit(tables["interactions"], tables["users"], tables["items"],
                               progress=False)


def test_pipeline_validation_names_a_missing_id_read_from_parquet(tmp_path: Path):
    from components.factory import build_components

    d = generate(30, 20, 300, seed=1)
    raw = tmp_path / "raw"
    raw.mkdir()
    _with_na(d.interactions, "item_id").to_parquet(raw / "interactions.parquet")
    d.users.to_parquet(raw / "users.parquet")
    d.items.to_parquet(raw / "items.parquet")
    C = build_components()
    with pytest.raises(DataValidationError) as err:
        C.validate.python_func(dataset=Dataset(name="raw", uri=str(raw)),
                               validated=Dataset(name="ok", uri=str(tmp_path / "ok")),
                               stats=Metrics(name="s", uri=str(tmp_path / "s")))
    assert [(f.table, f.column, f.rule, f.bad_count) for f in err.value.report] == [
        ("interactions", "item_id", "not null", 1)]
    assert "interactions.item_id" in str(err.value)
    assert not (tmp_path / "ok").exists()


@pytest.mark.parametrize("user_ids,message", [
    (lambda u: [float(u[0]) + 0.5], r"^user_ids: expected integer user ids, got \d+\.5 at "
                                    "position 0"),
    (lambda u: pd.array([u[0], pd.NA], dtype="Int64"), r"^user_ids: 1 missing id\(s\), e.g. "
                                                        "at position 1"),
    (lambda u: pd.Series([u[0], None], dtype="Int64"), r"^user_ids: 1 missing id"),
    (lambda u: np.array([2**63 + 5], dtype=np.uint64), r"^user_ids: id 9223372036854775813 "
                                                         "is outside the int64 range"),
], ids=["fraction", "int64-array-na", "int64-series-na", "uint64-overflow"])
def test_recommend_refuses_user_ids_that_are_not_whole_ids(rec, data, user_ids, message):
    """Each was silently answered for another id (1.5 as user 1, <NA> as user -2**63)."""
    with pytest.raises(ValueError, match=message):
        rec.recommend(user_ids(data.users["user_id"].tolist()), k=3)


@pytest.mark.parametrize("column", ["event", "rating"])
def test_fit_names_an_interactions_column_the_ranker_needs(data, column):
    with pytest.raises(ValueError, match=rf"^interactions: missing column\(s\) \['{column}'\]"):
        Recommender(SMALL).fit(data.interactions.drop(columns=[column]), data.users,
                               data.items, progress=False)
    # Without the ranker the column is not needed.
    off = Recommender(dict(SMALL, ranker={"enabled": False})).fit(
        data.interactions.drop(columns=[column]), data.users, data.items, progress=False)
    assert len(off.recommend(data.users["user_id"].tolist()[:2], k=3)) == 6


def test_an_item_with_missing_genres_is_an_item_without_genres(data):
    users = data.users["user_id"].tolist()[:20]
    na = data.items.assign(genres=data.items["genres"].where(data.items.index != 2))
    empty = data.items.assign(genres=data.items["genres"].where(data.items.index != 2, ""))
    got = Recommender(SMALL).fit(data.interactions, data.users, na, progress=False)
    want = Recommender(SMALL).fit(data.interactions, data.users, empty, progress=False)
    pd.testing.assert_frame_equal(got.recommend(users, k=5), want.recommend(users, k=5))


@pytest.mark.parametrize("flag", ["no", None, 0, 1, "False"])
def test_exclude_seen_takes_a_bool_only(rec, data, flag):
    """Session 20: ``exclude_seen="no"`` excluded seen items and ``None`` included them, both
    in silence; a harness passing a string from a config file got the opposite of its intent."""
    users = data.users["user_id"].to_numpy()[:3]
    with pytest.raises(ValueError, match="exclude_seen"):
        rec.recommend(users, k=5, exclude_seen=flag)
    assert len(rec.recommend(users, k=5, exclude_seen=np.bool_(False))) == 15
