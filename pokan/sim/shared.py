"""Records shared copy-on-write by many simulated nodes' states.

The simulator starts a cluster converged: every node holds the same record
of every other node. Built once and shared, those records cost memory for
N nodes, not N x N; a state copies a record before it changes it
(:meth:`SharingClusterState.writable`), and the record's entries when they
change (:meth:`SharedNodeState.own_entries`). The core's own records are
never shared: this is the simulator's alone.
"""

from __future__ import annotations

import attrs

from pokan.core.state import ClusterState, Entry, NodeState


@attrs.define
class SharedNodeState(NodeState):
    """A record that may be shared by several states, its entries too."""

    #: this record is shared by several states: copied before it changes
    shared: bool = attrs.field(default=True, kw_only=True, eq=False, repr=False)
    #: ``entries`` is shared with another record: copied before it changes
    shared_entries: bool = attrs.field(default=True, kw_only=True, eq=False, repr=False)

    def own_entries(self) -> dict[str, Entry]:
        """``entries``, ready to change (a private copy if it was shared)."""
        if self.shared_entries:
            self.entries = dict(self.entries)
            self.shared_entries = False
        return self.entries


class SharingClusterState(ClusterState):
    """A cluster state whose records may be shared with other states."""

    def writable(self, node: NodeState) -> NodeState:
        """A shared record is replaced by a private copy first, its entries
        still shared until they change."""
        if not isinstance(node, SharedNodeState) or not node.shared:
            return node
        copy = SharedNodeState(
            node.info,
            node.entries,
            node.version,
            node.heartbeat,
            node.status,
            node.gc_point,
            shared=False,
            shared_entries=True,
        )
        self.nodes[node.info.id] = copy
        return copy
