"""Sticky variant assignment: a user keeps their variant for the whole experiment.

The bucket is a keyed hash of (salt, user id) into 10,000 slots, so weights have 0.01%
resolution, a new salt reshuffles users between experiments, and the same user lands in the
same bucket on every router replica.
"""

from __future__ import annotations

from hashlib import blake2b

__all__ = ["bucket", "assign", "BUCKETS"]

BUCKETS = 10_000


def _key(salt: str) -> bytes:
    """The salt as a BLAKE2b key (at most 64 bytes): a longer salt is hashed to 64 bytes, not
    cut, so salts that differ only after their 64th byte still reshuffle users."""
    raw = salt.encode()
    return raw if len(raw) <= 64 else blake2b(raw, digest_size=64).digest()


def bucket(user_id: int, salt: str) -> int:
    digest = blake2b(f"{user_id}".encode(), digest_size=8, key=_key(salt)).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def assign(user_id: int, salt: str, candidate_weight: float) -> str:
    """``candidate`` for ``candidate_weight`` percent of users, else ``baseline``."""
    if candidate_weight <= 0:
        return "baseline"
    if candidate_weight >= 100:
        return "candidate"
    return "candidate" if bucket(user_id, salt) < candidate_weight * (BUCKETS // 100) else "baseline"
