"""Rumour mongering: the freshest updates ride on every message (sans-IO).

Scuttlebutt's digest exchange guarantees convergence, but a digest of
thousands of nodes does not fit in a datagram, so each exchange carries only
a rotating slice of it and a fresh write could wait many rounds for its
slice. Rumours close that gap, as memberlist's broadcast queue does: every
write this node makes or first learns becomes a *rumour*, a one-entry
:class:`~pokan.core.state.NodeDelta`, and every Syn, SynAck and Ack carries the
rumours sent least often so far, within a share of the byte budget. A rumour
is dropped after ``retransmit_mult * ceil(log10(n + 1))`` transmissions (n
nodes known). A node first learning of another node rumours its identity the
same way, so a join spreads as fast as a write.

A fresh rumour is also *hot*: the node pushes it at once, in an Ack to a few
random peers, instead of waiting for its next round. Pushes are paced by a
token bucket refilled once per round, so a burst of writes costs at most
``push_burst`` extra datagrams and on average one per round.

The queue is bounded (``max_rumours``): when full, the rumour sent most often
is dropped first. A dropped rumour is not lost, only slower: the digest
anti-entropy still carries the write.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

import attrs

from pokan import wire
from pokan.core.state import Batch, ClusterState, NodeDelta, NodeState

#: key of the rumour that announces a node itself rather than one of its keys
MEMBERSHIP: str | None = None


@attrs.define
class Selection:
    """Rumours chosen for one message, not yet counted as sent."""

    keys: list[tuple[str, str | None]] = attrs.Factory(list)
    deltas: list[NodeDelta] = attrs.Factory(list)
    size: int = 0


@attrs.define
class _Rumour:
    transmits: int
    seq: int
    hot: bool


class RumourQueue:
    """This node's rumours: what to piggyback next, and what to push at once."""

    def __init__(
        self,
        retransmit_mult: int = 4,
        max_rumours: int = 256,
        push_fanout: int = 3,
        push_burst: int = 3,
    ) -> None:
        self.retransmit_mult = retransmit_mult
        self.max_rumours = max_rumours
        self.push_fanout = push_fanout
        self.push_burst = push_burst
        self.push_tokens = push_burst
        self._items: dict[tuple[str, str | None], _Rumour] = {}
        self._seq = 0
        #: rumours dropped unsent because the queue was full
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    def limit(self, state: ClusterState) -> int:
        """Transmissions after which a rumour is dropped."""
        return self.retransmit_mult * max(
            1, math.ceil(math.log10(len(state.nodes) + 1))
        )

    # -- what goes in ---------------------------------------------------------

    def add(self, node_id: str, key: str | None, hot: bool = True) -> None:
        """Rumour a write of ``node_id``'s ``key`` (None: the node itself)."""
        self._seq += 1
        item = self._items.get((node_id, key))
        if item is not None:  # a newer write of the same key: news again
            item.transmits, item.seq, item.hot = 0, self._seq, hot
            return
        if len(self._items) >= self.max_rumours:
            self._evict()
        self._items[(node_id, key)] = _Rumour(0, self._seq, hot)

    def _evict(self) -> None:
        stalest = max(self._items, key=lambda k: self._rank(self._items[k]))
        del self._items[stalest]
        self.evicted += 1

    @staticmethod
    def _rank(item: _Rumour) -> tuple[int, int]:
        """Sort key: fewest transmissions first, then the newest."""
        return (item.transmits, -item.seq)

    def wrote(self, batch: Batch) -> None:
        """Rumour this node's own writes."""
        for change in batch.changes:
            if change.new is not None:
                self.add(change.node_id, change.key)

    def merge(
        self,
        state: ClusterState,
        deltas: Iterable[NodeDelta],
        max_new: int | None = None,
        new_limit: int | None = None,
    ) -> Batch:
        """Merge deltas from the network; rumour what was news to us.

        With ``max_new``, a merge bringing more new nodes than that (this
        node catching up with a whole cluster, not news) rumours nothing.
        ``new_limit`` bounds the nodes new to us the merge adds (see
        :meth:`ClusterState.merge`).
        """
        deltas = list(deltas)
        unknown = {d.info.id for d in deltas if d.info.id not in state.nodes}
        batch = state.merge(deltas, new_limit)
        if max_new is not None and len(unknown) > max_new:
            return batch
        for record in batch.nodes:
            if record.info.id in unknown:
                self.add(record.info.id, MEMBERSHIP)
        for change in batch.changes:
            if change.new is not None:
                self.add(change.node_id, change.key)
        return batch

    # -- what goes out --------------------------------------------------------

    @property
    def hot(self) -> bool:
        return any(item.hot for item in self._items.values())

    def take(
        self,
        state: ClusterState,
        budget: int,
        hot_only: bool = False,
        known: Iterable[NodeDelta] = (),
        copies: int = 1,
    ) -> tuple[list[NodeDelta], int]:
        """Rumours to send in ``budget`` bytes, and the bytes they use.

        :meth:`select`, then :meth:`sent` for what was selected.
        """
        selection = self.select(state, budget, hot_only, known)
        self.sent(state, selection, copies)
        return selection.deltas, selection.size

    def select(
        self,
        state: ClusterState,
        budget: int,
        hot_only: bool = False,
        known: Iterable[NodeDelta] = (),
    ) -> Selection:
        """The rumours to send in ``budget`` bytes: the least sent first.

        Rumours the peer just sent us (in ``known``) are not sent back.
        Nothing is counted until :meth:`sent`.
        """
        selection = Selection()
        if not self._items:
            return selection
        skip: set[tuple[str, str | None]] = set()
        for d in known:
            skip.update((d.info.id, k) for k, _ in d.entries)
            skip.add((d.info.id, MEMBERSHIP))
        ranked = sorted(self._items.items(), key=lambda kv: self._rank(kv[1]))
        for key, item in ranked:
            if (hot_only and not item.hot) or key in skip:
                continue
            delta = _delta(state, *key)
            if delta is None:
                del self._items[key]
                continue
            size = wire.packed_size(wire.pack_delta(delta))
            if selection.size + size > budget:
                if budget - selection.size < 64:
                    break
                continue
            selection.keys.append(key)
            selection.deltas.append(delta)
            selection.size += size
        return selection

    def sent(self, state: ClusterState, selection: Selection, copies: int = 1) -> None:
        """Count ``copies`` transmissions of what ``selection`` holds.

        Rumours that reached the limit are dropped; the rest are no longer hot.
        """
        limit = self.limit(state)
        for key in selection.keys:
            item = self._items.get(key)
            if item is None:
                continue
            item.hot = False
            item.transmits += copies
            if item.transmits >= limit:
                del self._items[key]

    def push_targets(
        self,
        state: ClusterState,
        rng: random.Random,
        exclude: tuple[str, int] | None = None,
    ) -> list[NodeState]:
        """Live peers to push hot rumours to now (empty if out of tokens).

        Not the peer at address ``exclude``.
        """
        if self.push_fanout <= 0 or self.push_tokens <= 0 or not self.hot:
            return []
        ids = state.sorted_ids()
        me = state.me
        chosen: dict[str, NodeState] = {}
        for _ in range(3 * self.push_fanout):
            if len(chosen) >= self.push_fanout or len(ids) < 2:
                break
            node = state.nodes[ids[rng.randrange(len(ids))]]
            if (
                node is not me
                and node.status == "alive"
                and (node.info.address, node.info.udp_port) != exclude
            ):
                chosen[node.info.id] = node
        if chosen:
            self.push_tokens -= 1
        return list(chosen.values())

    def tick(self) -> None:
        """Once per gossip round: refill the push token bucket."""
        self.push_tokens = min(self.push_burst, self.push_tokens + 1)


def _delta(state: ClusterState, node_id: str, key: str | None) -> NodeDelta | None:
    """The one-entry delta a rumour stands for, or None if it is gone."""
    node = state.nodes.get(node_id)
    if node is None:
        return None
    left = node.status == "left"  # or a receiver new to it sees it join
    if key is None:  # MEMBERSHIP
        return NodeDelta(node.info, node.heartbeat, 0, 0, (), left)
    entry = node.entries.get(key)
    if entry is None:
        return None
    return NodeDelta(
        node.info,
        node.heartbeat,
        entry.version - 1,
        entry.version,
        ((key, entry),),
        left,
    )
