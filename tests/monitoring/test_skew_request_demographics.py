"""The skew job recomputes a request's features as serving computed them when the request
carried demographics for a user the model has no record of (the V1 and router field added in
session 18): serving's features hold those demographics, so an offline side that looked them
up only in the bundle's user table (where that user is absent) reported every such request as
skew on the demographic features."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from monitoring.features import CONTRACT_FEATURES
from monitoring.skew.job import SkewConfig, compare
from monitoring.skew.offline import bundle_recompute
from tests.serving.serving_support import build_bundle

TS = 1_700_000_000.0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("skew-demo"), "1", seed=4)


def test_a_new_users_demographics_are_recomputed_as_served(bundle: Path) -> None:
    from recsys import Recommender

    rec = Recommender.load(bundle)
    stored = int(rec.users["user_id"].iat[0])
    demo = {"age_bucket": str(rec.users["age_bucket"].iat[0]),
            "gender": str(rec.users["gender"].iat[0]),
            "occupation": str(rec.users["occupation"].iat[0]),
            "region": str(rec.users["region"].iat[0])}
    new_user = int(rec.users["user_id"].max()) + 1000
    requests = [("r-new", new_user, {"user_id": new_user, "k": 10, "demographics": demo}),
                ("r-plain", new_user + 1, {"user_id": new_user + 1, "k": 10}),
                ("r-stored", stored, {"user_id": stored, "k": 10,
                                      "demographics": {"gender": "someone else's"}})]
    served_rows = []
    for rid, uid, body in requests:  # what the model server logs: rec.features(state)
        state = rec.user_state(uid, ts=TS, demographics=body.get("demographics"))
        served_rows.append({"request_id": rid, **rec.features(state)})
    served = pd.DataFrame(served_rows)
    assert served.loc[0, "gender"] == demo["gender"]  # the served side did use them
    offline = bundle_recompute(bundle)(pd.DataFrame({
        "request_id": [r for r, _, _ in requests], "user_id": [u for _, u, _ in requests],
        "ts": [TS] * 3,
        "request_json": [json.dumps({"instances": [b]}) for _, _, b in requests]}))
    served = served.rename(columns={n: f"f_{n}" for n in CONTRACT_FEATURES})
    results, _ = compare(served, offline, CONTRACT_FEATURES, SkewConfig())
    assert {r.name for r in results} >= {"age_bucket", "gender", "occupation", "region"}
    mismatched = {r.name: r.mismatches for r in results if r.mismatches}
    assert mismatched == {}, mismatched
