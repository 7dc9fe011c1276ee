from marquee.mapping import deep_merge


def test_deep_merge_overrides_leaves_and_keeps_siblings_without_touching_inputs():
    base = {"retrieval": {"dim": 64, "epochs": 5}, "ranker": {"enabled": True}, "seed": 1}
    over = {"retrieval": {"epochs": 10}, "ranker": False, "extra": {"a": 1}}
    merged = deep_merge(base, over)
    assert merged == {"retrieval": {"dim": 64, "epochs": 10}, "ranker": False, "seed": 1,
                      "extra": {"a": 1}}
    assert base == {"retrieval": {"dim": 64, "epochs": 5}, "ranker": {"enabled": True}, "seed": 1}
    assert over["retrieval"] == {"epochs": 10}
