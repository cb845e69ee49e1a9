"""The least a Twisted gossip node can do: one probe a round, answered.

    python bench/floor_node.py INTERVAL PORT PEER_PORT...

Every INTERVAL seconds it sends ``ping`` to a random peer on 127.0.0.1,
and answers every ``ping`` with ``ack``: SWIM's direct probe with no state,
no encoding and no failure detection. bench/idle_floor.py measures its idle
CPU to show what the reactor alone costs at a given probe rate.
"""

from __future__ import annotations

import random
import sys

from twisted.internet import reactor, task
from twisted.internet.protocol import DatagramProtocol


class Prober(DatagramProtocol):
    def __init__(self, peers: list[int]) -> None:
        self.peers = peers

    def probe(self) -> None:
        self.transport.write(b"ping", ("127.0.0.1", random.choice(self.peers)))

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        if data == b"ping":
            self.transport.write(b"ack", addr)


def main() -> None:
    interval, port = float(sys.argv[1]), int(sys.argv[2])
    prober = Prober([int(p) for p in sys.argv[3:]])
    reactor.listenUDP(port, prober, interface="127.0.0.1")  # type: ignore[attr-defined]
    task.LoopingCall(prober.probe).start(interval, now=False)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
