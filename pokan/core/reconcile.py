"""Scuttlebutt reconciliation under a byte budget (sans-IO).

An exchange is three datagrams: the initiator's digest (Syn), the responder's
deltas for the initiator and the digest entries where the two differ (SynAck),
and the initiator's deltas for the responder (Ack). Every function here takes
a byte budget and returns messages whose encoding fits it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from pokan import wire
from pokan.core.state import ClusterState, Entry, NodeDelta, NodeState
from pokan.wire import DigestEntry, Syn


def message_budget(max_datagram: int, sender_id: str) -> int:
    """Bytes the lists inside one datagram from ``sender_id`` may use.

    What is left after the envelope, the seal headroom, the body's array
    header and the sender field.
    """
    overhead = wire.HEADER_SIZE + wire.SEAL_HEADROOM + 8 + wire.packed_size(sender_id)
    return max_datagram - overhead


def reply_room(size: int, sender_id: str) -> int:
    """Bytes the lists of a reply may use so that it is no bigger than a
    message of ``size`` bytes (both in the same envelope, sealed or not)."""
    return size - (wire.HEADER_SIZE + 8 + wire.packed_size(sender_id))


def entry_room(max_datagram: int, sender_id: str, header: NodeDelta) -> int:
    """Bytes one write may take, packed, in a datagram from ``sender_id``
    carrying the delta of ``header``'s node alone (a write that does not fit
    could never be gossiped)."""
    return (
        message_budget(max_datagram, sender_id)
        - wire.packed_size(wire.pack_delta_header(header))
        - 16
    )


def digest_entry(node: NodeState) -> DigestEntry:
    return DigestEntry(
        node.info.id,
        node.info.generation,
        node.version,
        node.heartbeat,
        node.status == "left",
    )


def _entry_size(entry: DigestEntry) -> int:
    return wire.digest_entry_size(entry)


def make_syn(state: ClusterState, cursor: int, budget: int) -> tuple[Syn, int]:
    """The digest to open an exchange with, and the next rotation cursor.

    The whole digest if it fits; otherwise this node's own entry plus as many
    consecutive entries (in sorted id order, starting at ``cursor``) as fit.
    """
    me = state.me
    own = digest_entry(me)
    used = _entry_size(own) + 5
    ids = state.sorted_ids()  # our own id among them, skipped below
    others = len(ids) - 1
    if others < 1:
        return Syn(me.info.id, (own,)), 0
    mine = bisect_left(ids, me.info.id)  # the cursor counts the others only
    start = cursor % others
    listed: list[DigestEntry] = []
    range_reserve = 0  # the low and high ids, should the digest be partial
    nodes = state.nodes
    str_size, uint_size = wire.str_size, wire.uint_size
    for step in range(others):
        k = (start + step) % others
        node_id = ids[k if k < mine else k + 1]
        node = nodes[node_id]
        id_size = str_size(node_id)
        generation, version = node.info.generation, node.version
        heartbeat, left = node.heartbeat, node.status == "left"
        size = 1 + id_size + uint_size(generation) + left
        size += 1 if version < 128 else uint_size(version)
        size += 1 if heartbeat < 128 else uint_size(heartbeat)
        reserve = 2 * id_size if 2 * id_size > range_reserve else range_reserve
        if used + size + reserve > budget:
            break
        listed.append(DigestEntry(node_id, generation, version, heartbeat, left))
        used += size
        range_reserve = reserve
    else:
        return Syn(me.info.id, (own, *listed)), 0
    if not listed:
        # a range holding only our own id: nothing else can be inferred
        return Syn(me.info.id, (own,), me.info.id, me.info.id), start
    low, high = listed[0].node_id, listed[-1].node_id
    return Syn(me.info.id, (own, *listed), low, high), (start + len(listed)) % others


def respond_to_syn(
    state: ClusterState, syn: Syn, budget: int
) -> tuple[list[NodeDelta], list[DigestEntry]]:
    """What to answer a Syn with: deltas for the initiator, differing digest.

    Also takes the heartbeats the digest brings. An entry goes back only
    where this node's differs once those are taken: where it is behind
    (so the initiator sends deltas) or ahead (so the initiator learns).
    One pass over the digest: this runs for every datagram.
    """
    nodes = state.nodes
    listed: set[str] = set()
    wants: list[tuple[NodeState, int]] = []  # (node, since) the initiator lacks
    differing: list[DigestEntry] = []
    sizes: list[int] = []  # of the differing entries, once packed
    for entry in syn.digest:
        node_id, generation, version, heartbeat, left = entry
        listed.add(node_id)
        mine = nodes.get(node_id)
        if mine is None:
            differing.append(DigestEntry(node_id, 0, 0, 0))
            sizes.append(wire.digest_size(node_id, 0, 0, 0, False))
            continue
        ours = mine.info.generation
        if heartbeat > mine.heartbeat and ours == generation:
            state.observe_heartbeat(node_id, generation, heartbeat)
            mine = nodes[node_id]  # a copy-on-write state may have copied it
        left_here = mine.status == "left"
        if (
            mine.version != version
            or ours != generation
            or mine.heartbeat != heartbeat
            or left_here != left
        ):
            differing.append(
                DigestEntry(node_id, ours, mine.version, mine.heartbeat, left_here)
            )
            sizes.append(
                wire.digest_size(node_id, ours, mine.version, mine.heartbeat, left_here)
            )
            since = _since(mine, entry)
            if since is not None:
                wants.append((mine, since))
    for node_id in _covered(state.sorted_ids(), syn):
        if node_id not in listed:
            wants.append((nodes[node_id], 0))
    digest_budget = budget // 2 if wants else budget
    used, fitted = 5, len(differing)
    for i, size in enumerate(sizes):
        if used + size > digest_budget:
            fitted = i
            break
        used += size
    return build_deltas(wants, budget - used), differing[:fitted]


def respond_to_syn_ack(
    state: ClusterState, digest: Iterable[DigestEntry], budget: int
) -> list[NodeDelta]:
    """Deltas for the responder, from the digest entries it sent back."""
    wants: list[tuple[NodeState, int]] = []
    for entry in digest:
        state.observe_heartbeat(entry.node_id, entry.generation, entry.heartbeat)
        mine = state.nodes.get(entry.node_id)
        if mine is not None:
            since = _since(mine, entry)
            if since is not None:
                wants.append((mine, since))
    return build_deltas(wants, budget)


def _covered(ids: list[str], syn: Syn) -> Iterable[str]:
    """The ids of ``ids`` (sorted) inside the Syn's range."""
    low, high = syn.low, syn.high
    if low is None or high is None:
        return ids
    if low <= high:
        return ids[bisect_left(ids, low) : bisect_right(ids, high)]
    return ids[bisect_left(ids, low) :] + ids[: bisect_right(ids, high)]


def _since(mine: NodeState, theirs: DigestEntry) -> int | None:
    """The version to send ``mine`` from, or None if they are not behind."""
    if mine.info.generation > theirs.generation:
        return 0
    if mine.info.generation == theirs.generation and mine.version > theirs.version:
        if theirs.version < mine.gc_point:
            return None  # behind what GC removed: a reset by full sync (pokan.core.gc)
        return theirs.version
    return None


def build_deltas(wants: list[tuple[NodeState, int]], budget: int) -> list[NodeDelta]:
    """Pack the writes others lack into ``budget`` bytes.

    The most out-of-date nodes go first; a node's writes go oldest first, so a
    delta cut short still leaves the receiver with a valid watermark. What
    does not fit is sent in a later exchange.
    """
    wants = sorted(wants, key=lambda w: (w[1] - w[0].version, w[0].info.id))
    deltas: list[NodeDelta] = []
    used = 5
    for node, since in wants:
        left = node.status == "left"  # or a receiver new to it sees it join
        header = NodeDelta(node.info, node.heartbeat, since, node.version, (), left)
        header_size = wire.packed_size(wire.pack_delta_header(header)) + 6
        if used + header_size > budget:
            continue
        # entries above the watermark (rumours) are not ours to vouch for
        pending = [p for p in node.entries_since(since) if p[1].version <= node.version]
        taken: list[tuple[str, Entry]] = []
        size = header_size
        for key, entry in pending:
            entry_size = wire.packed_size(wire.pack_entry(key, entry))
            if used + size + entry_size > budget:
                break
            taken.append((key, entry))
            size += entry_size
        if pending and not taken:
            continue  # not even one write fits: leave it to a later exchange
        version = node.version if len(taken) == len(pending) else taken[-1][1].version
        deltas.append(
            NodeDelta(node.info, node.heartbeat, since, version, tuple(taken), left)
        )
        used += size
    return deltas
