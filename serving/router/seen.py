"""Which users the router has already counted, in fixed memory.

The sample-ratio check counts distinct users per variant, so the router must know whether a
user is new to the current routing. A Python ``set`` of every user id grows without bound
(about 60 bytes a user: 600 MB at ten million users). :class:`SeenUsers` keeps one bit per
slot of a fixed table instead (8 MiB by default) and answers "already seen" when the user's
slot is taken. Two users sharing a slot make the second one uncounted; the slot hash is
independent of the assignment hash, so that loss falls on both variants in proportion and
leaves their ratio, and so the chi-square test, unbiased. With n users in 2^b slots the
fraction uncounted is about n / 2^(b+1): 0.7% at ten million users in 2^26 slots, nothing
measurable at the few thousand users of a test.
"""

from __future__ import annotations

__all__ = ["SeenUsers"]

_MIX = 0x9E3779B97F4A7C15  # 2^64 / golden ratio (Fibonacci hashing)
_MASK = (1 << 64) - 1


class SeenUsers:
    def __init__(self, bits: int = 26) -> None:
        if not 3 <= bits <= 34:
            raise ValueError(f"bits must be in 3..34, got {bits}")
        self.bits = bits
        self._table = bytearray(1 << (bits - 3))
        self.counted = 0

    def _slot(self, user_id: int) -> int:
        x = user_id & _MASK
        x = ((x ^ (x >> 31)) * _MIX) & _MASK
        return x >> (64 - self.bits)

    def add(self, user_id: int) -> bool:
        """Mark ``user_id`` seen; True when it was not seen before (and is now counted)."""
        slot = self._slot(user_id)
        byte, bit = slot >> 3, 1 << (slot & 7)
        if self._table[byte] & bit:
            return False
        self._table[byte] |= bit
        self.counted += 1
        return True

    @property
    def nbytes(self) -> int:
        return len(self._table)
