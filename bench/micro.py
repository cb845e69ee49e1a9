"""Hot-path figures: codec, merge and whole exchanges per second.

    PYTHONPATH=. .venv/bin/python bench/micro.py

Prints messages encoded and decoded per second (datagrams of a 1,000-node
cluster, full to the 1400-byte budget), NodeDelta merges per second into a
1,000-node state, exchanges per second between two nodes, and from that the
share of one core an idle node spends gossiping at a 1 s interval.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

from pokan import wire
from pokan.core.node import GossipNode
from pokan.core.state import ClusterState, Entry, NodeDelta, NodeState
from pokan.sim.simulate import node_info


def rate(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Calls of ``fn`` per second of this process's CPU time.

    CPU time, not wall time, so that other processes on the machine do not
    count against pokan.
    """
    calls, started = 0, time.process_time()
    while True:
        for _ in range(20):
            fn()
        calls += 20
        elapsed = time.process_time() - started
        if elapsed >= seconds:
            return calls / elapsed


def cluster_state(me: int, n: int, keys: int = 5) -> ClusterState:
    """A node that knows ``n`` nodes, each with ``keys`` keys."""
    state = ClusterState(node_info(me))
    for k in range(keys):
        state.write(f"key-{k}", f"value {k} of node {me}", 1.0)
    for i in range(n):
        if i != me:
            info = node_info(i)
            entries = {
                f"key-{k}": Entry(f"value {k} of node {i}", k + 1, 1.0)
                for k in range(keys)
            }
            state.nodes[info.id] = NodeState(info, entries, keys, 7)
    state._sorted_ids = None
    return state


def node(me: int, n: int) -> GossipNode:
    return GossipNode(cluster_state(me, n), random.Random(me))


def codec(n: int) -> None:
    a, b = node(0, n), node(1, n)
    syn = a.gossip_round()[0].message
    # b is behind on every node: its SynAck is full of deltas
    for other in b.state.others():
        other.version = 0
    syn_ack = b.receive(syn, ("10.0.0.0", 5555)).outgoing[0].message
    for name, message in (("Syn", syn), ("SynAck", syn_ack)):
        data = wire.encode(message)
        enc = rate(lambda m=message: wire.encode(m))
        dec = rate(lambda d=data: wire.decode(d, wire.DATAGRAM_TYPES))
        print(
            f"{name:7} {len(data):5d} bytes: {enc:9,.0f} encoded/s "
            f"{dec:9,.0f} decoded/s"
        )


def merges(n: int) -> None:
    state = cluster_state(0, n)
    infos = [node_info(i) for i in range(1, n)]
    versions = dict.fromkeys((i.id for i in infos), 5)
    rng = random.Random(1)

    def one() -> None:
        info = infos[rng.randrange(len(infos))]
        v = versions[info.id] + 1
        versions[info.id] = v
        entry = Entry(f"value {v}", v, 2.0)
        state.merge([NodeDelta(info, 8, v - 1, v, ((f"key-{v % 5}", entry),))])

    print(f"merges of a one-write NodeDelta into a {n}-node state: {rate(one):9,.0f}/s")


def exchanges(n: int) -> float:
    a, b = node(0, n), node(1, n)
    address_a, address_b = ("10.0.0.0", 5555), ("10.0.0.1", 5555)

    def one() -> None:
        for out in a.gossip_round()[:1]:
            syn = wire.decode(wire.encode(out.message))
            for reply in b.receive(syn, address_a).outgoing:
                msg = wire.decode(wire.encode(reply.message))
                for ack in a.receive(msg, address_b).outgoing:
                    b.receive(wire.decode(wire.encode(ack.message)), address_a)

    per_second = rate(one, 2.0)
    print(
        f"idle exchanges between two {n}-node states (both ends, codec included):"
        f" {per_second:7,.0f}/s"
    )
    return per_second


def main() -> int:
    print(f"python {sys.version.split()[0]}")
    codec(1000)
    merges(1000)
    exchanges(1000)
    per_second = exchanges(100)
    # idle at 1 s: each node opens one exchange a round and answers one on
    # average, so it does the work of one exchange (both ends) per round
    print(
        f"idle CPU of a node with 100 peers at a 1 s interval: "
        f"{100 / per_second:.3f}% of a core"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
