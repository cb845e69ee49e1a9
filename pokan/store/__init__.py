"""Persistence behind one small interface; see :class:`IStore`."""

from pokan.store.interface import IStore, Snapshot
from pokan.store.memory import MemoryStore
from pokan.store.redis import RedisStore

__all__ = ["IStore", "MemoryStore", "RedisStore", "Snapshot"]
