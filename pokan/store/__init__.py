"""Persistence behind one small interface; see :class:`IStore`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pokan.store.interface import IStore, Snapshot
from pokan.store.memory import MemoryStore

if TYPE_CHECKING:
    from pokan.store.redis import RedisStore

__all__ = ["IStore", "MemoryStore", "RedisStore", "Snapshot"]


def __getattr__(name: str) -> Any:
    # redis-py is imported only by nodes that use the Redis store (it costs
    # every other node about 7 MB of memory)
    if name == "RedisStore":
        from pokan.store.redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
