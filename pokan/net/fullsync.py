"""The full sync's state in frames, sans-IO: cut, joined back, checked.

A full state (a Welcome) larger than one TCP frame goes in several; a node's
delta too large for one frame is cut into *pieces* that the receiver joins
back. Any leading run of the frames is a valid state on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from pokan import wire
from pokan.core import reconcile
from pokan.core.state import Entry, NodeDelta
from pokan.errors import EncodeError


def too_big_to_gossip(
    deltas: tuple[NodeDelta, ...], max_datagram: int
) -> tuple[int, str, str, int]:
    """Entries of a full state no datagram of ``max_datagram`` bytes can carry.

    Returns how many, and the node id, key and packed size of the largest.
    A cheap upper bound skips the entries that clearly fit.
    """
    count, worst = 0, ("", "", 0)
    for delta in deltas:
        room = reconcile.entry_room(max_datagram, "", delta)
        for key, entry in delta.entries:
            value = entry.value
            value_size = 1 if value is None else len(value) * 4 + 5
            if 19 + wire.str_size(key) + value_size <= room:
                continue
            size = wire.packed_size(wire.pack_entry(key, entry))
            if size > room:
                count += 1
                if size > worst[2]:
                    worst = (delta.info.id, key, size)
    return (count, *worst)


def welcome_frames(
    welcome: wire.Welcome,
    limit: int,
    encode: Callable[[wire.Message], bytes] = wire.encode,
    overhead: int = wire.HEADER_SIZE,
) -> list[bytes]:
    """Encode a full state as Welcome messages of at most ``limit`` bytes each.

    ``encode`` puts a message in its envelope, which adds ``overhead`` bytes
    to its body. Whole deltas are packed in order; a node's delta too big for
    one frame is cut into *pieces* (see :func:`join_pieces`), oldest writes
    first. Any prefix of the frames is a valid state on its own. EncodeError
    if a single write does not fit a frame.
    """
    whole = encode(welcome)
    if len(whole) <= limit:
        return [whole]
    budget = limit - overhead - wire.packed_size(welcome.sender) - 6
    frames: list[list[NodeDelta]] = [[]]
    used = 0
    for delta in welcome.deltas:
        size = wire.packed_size(wire.pack_delta(delta))
        if size > budget:
            pieces = _pieces(delta, budget)
            frames += [[piece] for piece in pieces]
            used = wire.packed_size(wire.pack_delta(pieces[-1]))
            continue
        if used + size > budget:
            frames.append([])
            used = 0
        frames[-1].append(delta)
        used += size
    return [encode(wire.Welcome(welcome.sender, tuple(f))) for f in frames if f]


def _pieces(delta: NodeDelta, budget: int) -> list[NodeDelta]:
    """Cut one node's delta in pieces of at most ``budget`` bytes, in version order.

    Every piece starts at ``delta.since`` and ends at the version of its last
    write (the last piece at ``delta.version``): the first piece is an honest
    delta; the others hold only the writes above the previous piece.
    """
    entries = sorted(delta.entries, key=lambda item: item[1].version)
    header = attrs.evolve(delta, entries=())
    room = budget - wire.packed_size(wire.pack_delta(header)) - 4
    pieces: list[NodeDelta] = []
    taken: list[tuple[str, Entry]] = []
    used = 0
    for key, entry in entries:
        size = wire.packed_size(wire.pack_entry(key, entry))
        if size > room:
            raise EncodeError(
                f"the write of {key!r} takes {size} bytes, more than a frame holds"
            )
        if used + size > room:
            pieces.append(_piece(delta, taken, taken[-1][1].version))
            taken, used = [], 0
        taken.append((key, entry))
        used += size
    pieces.append(_piece(delta, taken, delta.version))
    return pieces


def _piece(
    delta: NodeDelta, entries: list[tuple[str, Entry]], version: int
) -> NodeDelta:
    return attrs.evolve(
        delta,
        version=version,
        entries=tuple(entries),
        gc_point=min(delta.gc_point, version),
    )


def join_pieces(deltas: Iterable[NodeDelta]) -> tuple[NodeDelta, ...]:
    """Join the consecutive pieces of each node's delta back into one delta."""
    joined: list[NodeDelta] = []
    for delta in deltas:
        last = joined[-1] if joined else None
        if (
            last is not None
            and last.info.id == delta.info.id
            and last.info.generation == delta.info.generation
            and delta.since == last.since
            and delta.version > last.version
            and all(e.version > last.version for _, e in delta.entries)
        ):
            joined[-1] = attrs.evolve(
                delta,
                entries=last.entries + delta.entries,
                gc_point=max(last.gc_point, delta.gc_point),
            )
        else:
            joined.append(delta)
    return tuple(joined)
