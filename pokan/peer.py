"""Peer: a read-only view of a node this node knows (itself included)."""

from __future__ import annotations

from pokan.core.address import format_host_port
from pokan.core.state import NodeInfo, NodeState, Role, Status, Value


class Peer:
    """What is known of one node: identity, role, status and its keys.

    A live view: it reflects later gossip about the node.
    """

    __slots__ = ("_node",)

    def __init__(self, node: NodeState) -> None:
        self._node = node

    @classmethod
    def unknown_seed(cls, host: str, port: int) -> Peer:
        """A seed known only by its address, before any gossip with it."""
        info = NodeInfo(format_host_port(host, port), 0, host, port, port, "seed")
        return cls(NodeState(info))

    # identity
    @property
    def id(self) -> str:
        return self._node.info.id

    @property
    def address(self) -> str:
        return self._node.info.address

    @property
    def tcp_port(self) -> int:
        return self._node.info.tcp_port

    @property
    def udp_port(self) -> int:
        return self._node.info.udp_port

    @property
    def generation(self) -> int:
        return self._node.info.generation

    @property
    def role(self) -> Role:
        return self._node.info.role

    @property
    def status(self) -> Status:
        return self._node.status

    # the predicates of the original alive?/dead?/seed?/peer?
    @property
    def is_alive(self) -> bool:
        return self._node.status == "alive"

    @property
    def is_dead(self) -> bool:
        return self._node.status == "dead"

    @property
    def is_left(self) -> bool:
        """The node said goodbye (a graceful stop, not a failure)."""
        return self._node.status == "left"

    @property
    def is_seed(self) -> bool:
        return self._node.info.role == "seed"

    @property
    def is_peer(self) -> bool:
        return self._node.info.role == "peer"

    # the entity
    def value(self, key: str) -> Value | None:
        entry = self._node.entries.get(key)
        return None if entry is None else entry.value

    def timestamp(self, key: str) -> float | None:
        entry = self._node.entries.get(key)
        return None if entry is None or entry.deleted else entry.timestamp

    def keys(self) -> list[str]:
        return sorted(k for k, _ in self._node.live_items())

    def values(self) -> list[Value]:
        return [
            e.value for _, e in sorted(self._node.live_items()) if e.value is not None
        ]

    def items(self) -> dict[str, Value]:
        return {
            k: e.value
            for k, e in sorted(self._node.live_items())
            if e.value is not None
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Peer):
            return NotImplemented
        return (self.id, self.generation) == (other.id, other.generation)

    def __hash__(self) -> int:
        return hash((self.id, self.generation))

    def __repr__(self) -> str:
        return (
            f"<Peer {self.id} {self.role} {self.status} generation={self.generation}>"
        )
