"""``fit`` and the ``event`` column of the interactions (defect hunt s21 E).

Before: an event outside the contract (docs/CONTRACTS.md: one of ``rating``, ``watch``,
``click``), e.g. ``"purchase"``, or a missing one was fitted on silently, as if it were one of
the contract's kinds; ``recsys.data.validate`` refuses the same table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys import Recommender
from tests.unit.small_recsys import SMALL, data  # noqa: F401  (the fixture)


@pytest.mark.parametrize("ranker", [True, False])
@pytest.mark.parametrize("bad", ["purchase", None, np.nan])
def test_an_event_outside_the_contract_is_refused_naming_it(data, ranker, bad) -> None:  # noqa: F811
    inter = data.interactions.copy()
    events = inter["event"].astype(object)
    events.iloc[7] = bad
    inter["event"] = pd.array(events, dtype="string") if bad is not np.nan else events
    config = SMALL if ranker else {**SMALL, "ranker": {"enabled": False}}
    rec = Recommender(config)
    with pytest.raises(ValueError, match=r"^interactions\.event: 1 value\(s\) outside the "
                                         rf"contract \(e\.g\. .* at row 7\); allowed: rating, "
                                         "watch, click$") as info:
        rec.fit(inter, data.users, data.items, progress=False)
    if bad == "purchase":
        assert "'purchase'" in str(info.value)
    assert getattr(rec, "history", None) is None  # nothing half-fitted


def test_the_contract_events_of_any_string_dtype_still_fit(data) -> None:  # noqa: F811
    inter = data.interactions.assign(event=data.interactions["event"].astype("category"))
    rec = Recommender({**SMALL, "ranker": {"enabled": False}}).fit(
        inter, data.users, data.items, progress=False)
    assert len(rec.recommend([1, 2], k=3)) == 6
