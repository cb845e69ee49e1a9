"""The store interface: what a node persists, and how it gets it back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Interface

from pokan.core.state import Batch, ClusterState, Entry, NodeRecord


@attrs.frozen
class Snapshot:
    """Everything a store held, to restore a node after a restart."""

    nodes: tuple[NodeRecord, ...]
    entries: dict[str, dict[str, Entry]]


class IStore(Interface):
    """Where a node persists the cluster state.

    The node keeps its working state in memory; the store receives every
    :class:`~pokan.core.state.Batch` (one per local write, gossip exchange or sync)
    and must persist it atomically and in the order given.
    """

    def open() -> Deferred[Snapshot | None]:
        """Connect; fire with what was persisted before, or None if nothing."""

    def persist(batch: Batch) -> Deferred[None]:
        """Persist one batch atomically; fire once it is durable."""

    def close() -> Deferred[None]:
        """Flush and release resources."""


class IAttachedStore(IStore):
    """A store that wants to know the node it serves before :meth:`open`."""

    def attach(node_id: str, reactor: Any, state: Callable[[], Snapshot]) -> None:
        """Called by the Server before open(), once its ports are bound.

        ``state`` returns the node's whole state as it is now (e.g. for a full
        rewrite after the backing server lost its data); call it only from
        the reactor thread.
        """


def snapshot_of(state: ClusterState) -> Snapshot:
    """The whole of a cluster state, as a store would persist it."""
    return Snapshot(
        tuple(node.record() for node in state.nodes.values()),
        {node_id: dict(node.entries) for node_id, node in state.nodes.items()},
    )
