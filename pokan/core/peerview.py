"""The live, dead and seed peers of a cluster state, kept between rounds (peer view).

Peer selection needs these lists every round; rebuilding them walks every
known node, which at thousands of nodes costs more than the rest of a round.
The view follows the changes the state records in
:attr:`~pokan.core.state.ClusterState.view_news` (nodes added, forgotten, or
whose status changed) one node at a time, and rebuilds the lists only when
many changed at once, when the number of known nodes does not match what it
followed, or when a node picked from a list no longer has the status the list
says. A round thus costs no walk over every node.

The lists hold node ids; :meth:`PeerView.current` gives the record. One view
per state: it drains the state's ``view_news``.
"""

from __future__ import annotations

from pokan.core.state import ClusterState, NodeState, Status


class PeerView:
    """Ids of ``state``'s other nodes, partitioned into live, dead and seeds."""

    def __init__(self, state: ClusterState, max_news: int = 64) -> None:
        self.state = state
        #: more changes than this at once: rebuild rather than follow them
        self.max_news = max_news
        self.live: list[str] = []
        self.dead: list[str] = []
        self.seeds: list[str] = []
        self._size = -1

    def refresh(self) -> None:
        """Bring the lists up to date with the changes the state recorded."""
        state = self.state
        news = state.view_news
        if self._size < 0 or len(news) > self.max_news:
            self.rebuild()
            return
        if news:
            state.view_news = {}
            try:
                for node_id, before in news.items():
                    self._follow(node_id, before)
            except ValueError:  # the lists disagreed with the state
                self.rebuild()
                return
        if self._size != len(state.nodes):
            self.rebuild()  # nodes added or removed behind the state's back

    def _follow(self, node_id: str, before: Status | None) -> None:
        """Move one node to the lists its status now says."""
        if before == "alive":
            self.live.remove(node_id)
        elif before == "dead":
            self.dead.remove(node_id)
        if before is not None and node_id in self.seeds:
            self.seeds.remove(node_id)
        node = self.state.nodes.get(node_id)
        self._size += (node is not None) - (before is not None)
        if node is not None:
            self._place(node)

    def _place(self, node: NodeState) -> None:
        node_id = node.info.id
        if node.status == "alive":
            self.live.append(node_id)
        elif node.status == "dead":  # a node that left is in neither
            self.dead.append(node_id)
        if node.info.role == "seed":
            self.seeds.append(node_id)

    def rebuild(self) -> None:
        state = self.state
        state.view_news = {}
        self.live, self.dead, self.seeds = [], [], []
        me = state.me
        for node in state.nodes.values():
            if node is not me:
                self._place(node)
        self._size = len(state.nodes)

    def current(self, node_id: str, alive: bool) -> NodeState | None:
        """The record of ``node_id`` if it is known with the status its list
        says; None otherwise (the lists were out of date: they are rebuilt).
        """
        node = self.state.nodes.get(node_id)
        if node is not None and node.status == ("alive" if alive else "dead"):
            return node
        self.rebuild()
        return None
