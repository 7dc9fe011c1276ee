"""The router's fixed-memory record of counted users (serving.router.seen)."""

from __future__ import annotations

import pytest

from serving.router.assignment import assign
from serving.router.seen import SeenUsers


def test_each_user_counted_once_and_repeats_are_not():
    seen = SeenUsers()
    first = [seen.add(u) for u in range(10_000)]
    again = [seen.add(u) for u in range(10_000)]
    # 10,000 users in 2^26 slots: at most a couple share a slot
    assert sum(first) >= 9_995
    assert not any(again)
    assert seen.counted == sum(first)


def test_memory_is_fixed_however_many_users():
    seen = SeenUsers(bits=20)
    before = seen.nbytes
    for u in range(0, 5_000_000, 7):
        seen.add(u)
    assert seen.nbytes == before == (1 << 20) // 8


def test_collisions_do_not_bias_the_variant_ratio():
    # A table far too small (2^14 slots for 200,000 users) loses most users to collisions,
    # yet the counted users keep the 50/50 split of the assignment, which is what the
    # sample-ratio check tests.
    seen = SeenUsers(bits=14)
    counts = {"baseline": 0, "candidate": 0}
    assigned = {"baseline": 0, "candidate": 0}
    for u in range(200_000):
        variant = assign(u, "salt-1", 50)
        assigned[variant] += 1
        if seen.add(u):
            counts[variant] += 1
    total = counts["baseline"] + counts["candidate"]
    assert total < 20_000  # collisions did happen
    share = counts["candidate"] / total
    assert abs(share - assigned["candidate"] / 200_000) < 0.02


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match="bits"):
        SeenUsers(bits=2)
