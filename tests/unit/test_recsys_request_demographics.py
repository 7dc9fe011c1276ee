"""A user the model has no record of, known only by demographics (issue #3, cold start):
the request's demographics reach the user tower and the popular-in-segment answer."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.models.popularity import SegmentPopularity
from recsys.recommender import Recommender

NEW_USER = 10_000_000  # not in the model's users table


def _segment(rec: Recommender) -> dict[str, str]:
    """Demographics of a stored user whose segment has its own popularity list that
    differs from the global one at the top."""
    for row in range(len(rec.users)):
        demo = {c: str(rec.users[c].iat[row])
                for c in ("age_bucket", "gender", "occupation", "region")}
        seg = SegmentPopularity.key(demo["age_bucket"], demo["gender"])
        ranked = rec.popularity.segments.get(seg)
        if ranked is not None and not np.array_equal(ranked[:10], rec.popularity.global_rank[:10]):
            return demo
    pytest.skip("no segment with its own top 10 in the tiny data")


def test_a_new_users_demographics_pick_the_segments_popular_list(tiny_rec: Recommender) -> None:
    demo = _segment(tiny_rec)
    seg = SegmentPopularity.key(demo["age_bucket"], demo["gender"])
    with_demo = tiny_rec.user_state(NEW_USER, demographics=demo)
    without = tiny_rec.user_state(NEW_USER)
    assert with_demo.row == -1 and with_demo.user == demo
    items, _ = tiny_rec.popular(with_demo, 10)
    assert list(items) == list(tiny_rec.popularity.segments[seg][:10])
    plain, _ = tiny_rec.popular(without, 10)
    assert list(plain) == list(tiny_rec.popularity.global_rank[:10])
    assert list(items) != list(plain)


def test_a_new_users_demographics_reach_the_user_tower(tiny_rec: Recommender) -> None:
    demo = _segment(tiny_rec)
    with_demo = tiny_rec.user_state(NEW_USER, demographics=demo)
    without = tiny_rec.user_state(NEW_USER)
    assert (with_demo.demo > 0).all()
    assert not np.allclose(tiny_rec.user_embedding(with_demo), tiny_rec.user_embedding(without))
    # The towers see the same inputs as a stored user of those demographics without an id.
    stored = next(r for r in range(len(tiny_rec.users))
                  if all(str(tiny_rec.users[c].iat[r]) == v for c, v in demo.items()))
    assert np.array_equal(with_demo.demo, tiny_rec.demo[stored])


def test_a_stored_user_keeps_the_stored_demographics(tiny_rec: Recommender) -> None:
    uid = int(tiny_rec.users["user_id"].iat[0])
    stored = tiny_rec.user_state(uid)
    other = {"age_bucket": "no-such-bucket", "gender": "no-such-gender"}
    assert tiny_rec.user_state(uid, demographics=other).user == stored.user


def test_a_misspelt_demographics_field_is_named(tiny_rec: Recommender) -> None:
    with pytest.raises(ValueError, match=r"demographics: unknown field\(s\) \['age'\]"):
        tiny_rec.user_state(NEW_USER, demographics={"age": "25-34", "gender": "F"})


def test_unknown_values_are_an_unknown_segment_not_an_error(tiny_rec: Recommender) -> None:
    state = tiny_rec.user_state(NEW_USER, demographics={"age_bucket": "?", "gender": "?"})
    assert (state.demo == 0).all()
    items, _ = tiny_rec.popular(state, 5)
    assert list(items) == list(tiny_rec.popularity.global_rank[:5])
