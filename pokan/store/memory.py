"""The default store: keeps the persisted state in this process's memory."""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from pokan.core.state import Batch, Entry, NodeRecord
from pokan.store.interface import IStore, Snapshot


@implementer(IStore)
class MemoryStore:
    """Needs no server; what it holds dies with the process.

    Reusing one instance for a new :class:`~pokan.Server` in the same process
    restores the state, as a Redis store does across processes.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, NodeRecord] = {}
        self.entries: dict[str, dict[str, Entry]] = {}
        self.batches = 0

    def open(self) -> defer.Deferred[Snapshot | None]:
        if not self.nodes:
            return defer.succeed(None)
        snapshot = Snapshot(
            tuple(self.nodes.values()),
            {node: dict(keys) for node, keys in self.entries.items()},
        )
        return defer.succeed(snapshot)

    def persist(self, batch: Batch) -> defer.Deferred[None]:
        for change in batch.changes:
            keys = self.entries.setdefault(change.node_id, {})
            if change.new is None:
                keys.pop(change.key, None)
            else:
                keys[change.key] = change.new
        for record in batch.nodes:
            self.nodes[record.info.id] = record
        for node_id in batch.forgotten:
            self.nodes.pop(node_id, None)
            self.entries.pop(node_id, None)
        self.batches += 1
        return defer.succeed(None)

    def close(self) -> defer.Deferred[None]:
        return defer.succeed(None)
