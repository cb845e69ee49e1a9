"""The store interface: what a node persists, and how it gets it back."""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Interface

from pokan.state import Batch, Entry, NodeRecord


@attrs.frozen
class Snapshot:
    """Everything a store held, to restore a node after a restart."""

    nodes: tuple[NodeRecord, ...]
    entries: dict[str, dict[str, Entry]]


class IStore(Interface):
    """Where a node persists the cluster state.

    The node keeps its working state in memory; the store receives every
    :class:`~pokan.state.Batch` (one per local write, gossip exchange or sync)
    and must persist it atomically and in the order given.
    """

    def open() -> Deferred[Snapshot | None]:
        """Connect; fire with what was persisted before, or None if nothing."""

    def persist(batch: Batch) -> Deferred[None]:
        """Persist one batch atomically; fire once it is durable."""

    def close() -> Deferred[None]:
        """Flush and release resources."""
