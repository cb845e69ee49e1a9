"""Garbage collection of the cluster state, sans-IO.

Two things would grow forever without it: tombstones (a deleted key is kept
as an entry without value so the deletion can spread) and nodes that died or
left. Tombstones older than a TTL are removed; a node's *GC point* is the
highest version of its tombstones removed here.

A peer whose watermark for a node is below our GC point for that node may
still hold a key whose tombstone we removed: a plain delta from its watermark
would never tell it the key is gone. So no plain delta is sent to it
(:func:`pokan.core.reconcile._since`); instead the node starts a full TCP sync
with that peer, whose deltas are *resets* (``NodeDelta.gc_point``): the
complete state of the node, and the receiver drops what is not listed.

A forgotten node is remembered by id and generation in
``ClusterState.forgotten``: gossip about that incarnation is ignored, a newer
generation (the node restarted) is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable

from pokan.core.state import ClusterState, KeyChange
from pokan.wire import DigestEntry


def collect_tombstones(state: ClusterState, now: float, ttl: float) -> list[KeyChange]:
    """Remove tombstones whose deletion is older than ``ttl`` seconds.

    Returns the changes (tombstone -> nothing), which fire no event.
    """
    changes: list[KeyChange] = []
    for node in list(state.nodes.values()):
        expired = [
            (key, entry)
            for key, entry in node.entries.items()
            if entry.deleted and entry.timestamp + ttl <= now
        ]
        if not expired:
            continue
        node = state.writable(node)
        entries = node.own_entries()
        for key, entry in expired:
            del entries[key]
            node.gc_point = max(node.gc_point, entry.version)
            changes.append(KeyChange(node.info.id, key, entry, None))
    return changes


def forget(state: ClusterState, node_id: str) -> None:
    """Drop a node and its keys; gossip about this incarnation is ignored."""
    node = state.nodes.get(node_id)
    if node is None or node is state.me:
        return
    del state.nodes[node_id]
    state.note_status(node_id, node.status)
    state.forgotten[node_id] = node.info.generation
    state._sorted_ids = None


def behind(state: ClusterState, digest: Iterable[DigestEntry]) -> list[str]:
    """Ids of nodes the digest's sender is behind our GC point for."""
    found = []
    for entry in digest:
        mine = state.nodes.get(entry.node_id)
        if (
            mine is not None
            and mine.info.generation == entry.generation
            and entry.version < mine.gc_point
            and entry.version < mine.version
        ):
            found.append(entry.node_id)
    return found
