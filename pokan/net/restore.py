"""Restoring a node at start from what its store persisted before."""

from __future__ import annotations

from pokan.core.address import family
from pokan.core.state import Batch, KeyChange, NodeState
from pokan.store import Snapshot


def restorable(snapshot: Snapshot, address: str) -> Snapshot:
    """What of ``snapshot`` a node at ``address`` takes back.

    Not a record with UDP port 0: that is this node before it bound "any
    free port", never a peer (nobody can reach port 0); nor one of the
    other address family (stored by an older pokan).
    """
    mine = family(address)
    nodes = tuple(
        r for r in snapshot.nodes if r.info.udp_port and family(r.info.address) == mine
    )
    return Snapshot(nodes, snapshot.entries)


def next_generation(previous: int, wall_us: int) -> int:
    """A restarted node's generation: microseconds since the epoch, and
    always above the ``previous`` one (a clock set back)."""
    return max(wall_us, previous + 1)


def under_bound_id(me: NodeState) -> Batch:
    """This node's keys and record, to persist again under its id now.

    Keys written before binding port 0 were persisted under the unbound id;
    this batch has no events (each fired once already).
    """
    changes = tuple(KeyChange(me.info.id, k, None, e) for k, e in me.entries.items())
    return Batch(changes, (me.record(),))
