"""Bytes and CPU of one idle exchange between two nodes that agree.

    PYTHONPATH=. .venv/bin/python bench/idle_exchange.py [N ...]

For each cluster size N (default 20, 1000, 10000): two nodes holding the
same N-node state exchange round after round through the codec, and the
datagrams' bytes (unsealed; a sealed one is 48 bytes more) and the CPU per
exchange (both ends) are printed for three settings: ``phi`` (heartbeats
bumped every round, as protocol 2 did), ``swim digest`` (no heartbeats, no
summaries: the digest every round) and ``swim summary`` (protocol 3: a
summary each way, the digest every ``full_every``-th Syn).
"""

from __future__ import annotations

import random
import sys
import time

from pokan import wire
from pokan.core.node import GossipNode, address_of

sys.path.insert(0, "bench")
from micro import cluster_state


def pair(n: int, heartbeats: bool, summaries: bool) -> tuple[GossipNode, GossipNode]:
    a, b = (GossipNode(cluster_state(i, n, keys=2), random.Random(i)) for i in (0, 1))
    for node in (a, b):
        node.heartbeats, node.summaries = heartbeats, summaries
        node.state.me.heartbeat = 7  # as the other holds it: the states agree
    return a, b


def exchange(a: GossipNode, b: GossipNode) -> tuple[int, int]:
    """One round of ``a`` against ``b``: (datagrams, bytes) of the exchange.

    ``a`` may pick any of its peers: ``b`` answers for all of them.
    """
    b._new_round()  # b's per-round reply limits start again (b sends nothing)
    opened = a.gossip_round()[:1]
    if not opened:
        return 0, 0
    a_address, b_address = address_of(a.state.me), opened[0].address
    count = size = 0
    pending = [(opened[0].message, True)]
    while pending:
        message, to_b = pending.pop(0)
        data = wire.encode(message)
        count, size = count + 1, size + len(data)
        decoded = wire.decode(data, wire.DATAGRAM_TYPES)
        if to_b:
            out = b.receive(decoded, a_address, len(data)).outgoing
            pending += [(o.message, False) for o in out if o.address == a_address]
        else:
            out = a.receive(decoded, b_address, len(data)).outgoing
            pending += [(o.message, True) for o in out if o.address == b_address]
    return count, size


def measure(n: int, heartbeats: bool, summaries: bool, rounds: int = 400) -> str:
    a, b = pair(n, heartbeats, summaries)
    for _ in range(3):
        exchange(a, b)  # the first exchange finds the digests equal
    datagrams = size = 0
    started = time.process_time()
    for _ in range(rounds):
        c, s = exchange(a, b)
        datagrams, size = datagrams + c, size + s
    cpu = (time.process_time() - started) / rounds
    return (
        f"{datagrams / rounds:4.2f} datagrams {size / rounds:7.1f} bytes"
        f" {cpu * 1e6:7.0f} us CPU per exchange"
    )


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [20, 1000, 10000]
    print(f"python {sys.version.split()[0]}")
    for n in sizes:
        for name, heartbeats, summaries in (
            ("phi", True, False),
            ("swim digest", False, False),
            ("swim summary", False, True),
        ):
            print(f"N={n:6d} {name:13} {measure(n, heartbeats, summaries)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
