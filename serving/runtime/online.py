"""Online user history: where the runtime looks up what a user watched recently.

By default the recommender's own online feature table (``model/user_features.parquet`` of the
bundle, held in memory) answers, so :class:`BundleHistory` returns ``None`` and leaves the
lookup to ``rec.user_state``. With ``MARQUEE_SERVING_REDIS_URL`` set, :class:`RedisHistory`
reads the list at ``<prefix><user_id>`` (item ids, most recent last) and passes it down as the
history override. A history sent with the request overrides both.
"""

from __future__ import annotations

import logging
from typing import Protocol

__all__ = ["HistorySource", "BundleHistory", "RedisHistory", "history_source"]

log = logging.getLogger(__name__)


class HistorySource(Protocol):
    def history(self, user_id: int) -> list[int] | None:
        """Recent item ids of the user (most recent last), or None to use the bundle's table."""


class BundleHistory:
    """The bundle's table, already in memory inside the recommender."""

    def history(self, user_id: int) -> list[int] | None:
        return None

    def close(self) -> None:
        pass


class RedisHistory:
    """User history in Redis lists; any Redis error falls back to the bundle's table."""

    def __init__(self, url: str, key_prefix: str = "marquee:history:", timeout_ms: float = 5.0,
                 max_items: int = 200) -> None:
        import redis  # optional dependency: imported only when configured

        self._client = redis.Redis.from_url(url, socket_timeout=timeout_ms / 1000.0,
                                            socket_connect_timeout=timeout_ms / 1000.0)
        self._prefix = key_prefix
        self._max = max_items

    def history(self, user_id: int) -> list[int] | None:
        try:
            raw = self._client.lrange(f"{self._prefix}{user_id}", -self._max, -1)
        except Exception as exc:  # noqa: BLE001 - a feature store outage must not fail a request
            log.warning("redis history lookup failed for user %s: %s", user_id, exc)
            return None
        return _item_ids(raw, user_id) if raw else None

    def close(self) -> None:
        self._client.close()


_MAX_ID = 2**63 - 1


def _item_id(value: bytes) -> int | None:
    try:
        i = int(value)
    except (TypeError, ValueError):
        return None
    return i if 0 < i <= _MAX_ID else None


def _item_ids(raw: list[bytes], user_id: int) -> list[int] | None:
    """The list's values as item ids. A value that is none (text, 0, negative, beyond int64)
    means the list is not what the runtime expects: the bundle's table answers, instead of
    every request of this user failing."""
    ids = [_item_id(x) for x in raw]
    if None in ids:
        log.warning("redis history of user %s holds %r, not an item id: using the bundle's "
                    "table", user_id, raw[ids.index(None)])
        return None
    return ids  # type: ignore[return-value]


def history_source(redis_url: str | None, key_prefix: str = "marquee:history:",
                   timeout_ms: float = 5.0) -> BundleHistory | RedisHistory:
    if redis_url:
        return RedisHistory(redis_url, key_prefix, timeout_ms)
    return BundleHistory()
