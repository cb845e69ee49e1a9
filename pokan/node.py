"""One gossiping node, sans-IO: messages in, messages and batches out.

The Twisted protocols (and the simulator) feed :meth:`GossipNode.receive`
with decoded messages and send whatever it returns; a ``LoopingCall`` (or the
simulator's virtual clock) calls :meth:`GossipNode.gossip_round`. Randomness
comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import attrs

from pokan import reconcile, wire
from pokan.state import Batch, ClusterState, NodeDelta, NodeState

Address = tuple[str, int]


@attrs.frozen
class Outgoing:
    """A message to send, and the node it is for when known."""

    address: Address
    message: wire.Message
    peer: NodeState | None = None


@attrs.frozen
class Result:
    """What handling one message produced."""

    outgoing: tuple[Outgoing, ...] = ()
    batch: Batch = attrs.field(factory=Batch)
    #: the peer an exchange this node opened just completed with
    exchanged_with: NodeState | None = None


def address_of(node: NodeState) -> Address:
    return (node.info.address, node.info.udp_port)


class GossipNode:
    """The Scuttlebutt protocol for one node over a :class:`ClusterState`."""

    def __init__(
        self,
        state: ClusterState,
        rng: random.Random,
        max_datagram: int = wire.DEFAULT_MAX_DATAGRAM,
        seeds: Iterable[Address] = (),
    ) -> None:
        self.state = state
        self.rng = rng
        self.max_datagram = max_datagram
        self.seeds: list[Address] = list(seeds)
        self._cursor = 0
        #: live peers contacted per round (more: faster failure detection)
        self.fanout = 1

    @property
    def budget(self) -> int:
        return reconcile.message_budget(self.max_datagram, self.state.me.info.id)

    # -- rounds -----------------------------------------------------------------

    def gossip_round(self) -> list[Outgoing]:
        """Bump our heartbeat and open exchanges with this round's targets."""
        self.state.me.heartbeat += 1
        targets = self.pick_targets()
        if not targets:
            return []
        syn, self._cursor = reconcile.make_syn(self.state, self._cursor, self.budget)
        return [Outgoing(address, syn, peer) for address, peer in targets]

    def pick_targets(self) -> list[tuple[Address, NodeState | None]]:
        """``fanout`` random live peers; sometimes a dead peer and a seed too.

        As Cassandra's gossiper does: a dead peer with probability
        dead/(live+1), so a healed partition merges back; a seed when no peer
        is known alive, or with probability seeds/(live+dead+1).
        """
        live: list[NodeState] = []
        dead: list[NodeState] = []
        for node in self.state.others():
            if node.status == "alive":
                live.append(node)
            elif node.status == "dead":  # a node that left is not contacted
                dead.append(node)
        chosen: list[tuple[Address, NodeState | None]] = []
        if live and self.fanout > 1:
            for node in self.rng.sample(live, min(self.fanout, len(live))):
                chosen.append((address_of(node), node))
        elif live:
            node = self.rng.choice(live)
            chosen.append((address_of(node), node))
        if dead and self.rng.random() < len(dead) / (len(live) + 1):
            node = self.rng.choice(dead)
            chosen.append((address_of(node), node))
        seeds = self._seed_addresses(exclude={a for a, _ in chosen})
        if seeds and (
            not live or self.rng.random() < len(seeds) / (len(live) + len(dead) + 1)
        ):
            address = self.rng.choice(seeds)
            chosen.append((address, self._node_at(address)))
        return chosen

    def _seed_addresses(self, exclude: set[Address]) -> list[Address]:
        own = address_of(self.state.me)
        found = dict.fromkeys(self.seeds)
        for node in self.state.others():
            if node.info.role == "seed":
                found[address_of(node)] = None
        return sorted(a for a in found if a != own and a not in exclude)

    def _node_at(self, address: Address) -> NodeState | None:
        for node in self.state.others():
            if address_of(node) == address:
                return node
        return None

    # -- messages ---------------------------------------------------------------

    def receive(self, message: wire.Message, source: Address) -> Result:
        """Handle one datagram's message from ``source``."""
        if isinstance(message, wire.Syn):
            # a fresh heartbeat in the reply: peers hear it more than once a round
            self.state.me.heartbeat += 1
            deltas, differing = reconcile.respond_to_syn(
                self.state, message, self.budget
            )
            reply = wire.SynAck(self.state.me.info.id, tuple(deltas), tuple(differing))
            return Result((Outgoing(source, reply),))
        if isinstance(message, wire.SynAck):
            batch = self.state.merge(message.deltas)
            deltas = reconcile.respond_to_syn_ack(
                self.state, message.digest, self.budget
            )
            out = (
                (Outgoing(source, wire.Ack(self.state.me.info.id, tuple(deltas))),)
                if deltas
                else ()
            )
            return Result(out, batch, self.state.nodes.get(message.sender))
        if isinstance(message, wire.Ack):
            return Result(batch=self.state.merge(message.deltas))
        if isinstance(message, wire.Goodbye):
            return Result(
                batch=self.state.mark(message.sender, message.generation, "left")
            )
        return Result()  # TCP-only messages are not handled here

    def goodbye(self) -> list[Outgoing]:
        """Goodbyes for every other known node, to send when stopping."""
        bye = wire.Goodbye(self.state.me.info.id, self.state.me.info.generation)
        return [Outgoing(address_of(n), bye, n) for n in self.state.others()]

    # -- full sync (TCP) --------------------------------------------------------

    def full_state(self) -> tuple[NodeDelta, ...]:
        return tuple(self.state.full_deltas())

    def merge_full(self, deltas: Iterable[NodeDelta]) -> Batch:
        return self.state.merge(deltas)
