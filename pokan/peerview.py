"""The live, dead and seed peers of a cluster state, kept between rounds (peer view).

Peer selection needs these lists every round; rebuilding them walks every
known node, which at thousands of nodes costs more than the rest of a round.
The view rebuilds them when the number of known nodes changes, when a node
picked from a list no longer has the status the list says (a status changed
since), and at least every ``max_age`` uses, so it is never stale for long.
"""

from __future__ import annotations

from pokan.state import ClusterState, NodeState


class PeerView:
    """Cached partition of ``state``'s other nodes into live, dead and seeds."""

    def __init__(self, state: ClusterState, max_age: int = 16) -> None:
        self.state = state
        self.max_age = max_age
        self.live: list[NodeState] = []
        self.dead: list[NodeState] = []
        self.seeds: list[NodeState] = []
        self._size = -1
        self._age = 0

    def refresh(self) -> None:
        """Rebuild the lists now if they may be out of date."""
        state = self.state
        if self._size == len(state.nodes) and self._age < self.max_age:
            self._age += 1
            return
        self.rebuild()

    def rebuild(self) -> None:
        state = self.state
        me = state.me
        others = [n for n in state.nodes.values() if n is not me]
        self.live = [n for n in others if n.status == "alive"]
        self.dead = [n for n in others if n.status == "dead"]  # not "left"
        self.seeds = [n for n in others if n.info.role == "seed"]
        self._size = len(state.nodes)
        self._age = 0

    def current(self, node: NodeState, alive: bool) -> NodeState | None:
        """The record of ``node`` now, if it is still known with the status
        its list says; None otherwise (the lists were out of date: they are
        rebuilt).

        The record is looked up by id: it may be another object than the one
        in the list (a record copied before it changed, see
        :meth:`ClusterState.writable`, or a node forgotten and heard of again).
        """
        mine = self.state.nodes.get(node.info.id)
        if mine is not None and mine.status == ("alive" if alive else "dead"):
            return mine
        self.rebuild()
        return None
