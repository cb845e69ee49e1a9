"""One pokan node for bench/cluster.py: commands on stdin, events on stdout.

    python bench/cluster_node.py UDP_PORT TCP_PORT INTERVAL IDLE PROBE [SEED_HOST:PORT]

IDLE is the idle interval and PROBE the probe interval in seconds, each
``-`` for the default.

stdin:  ``store KEY VALUE`` | ``stats``
stdout: ``ready ID`` | ``key KEY VALUE TIME`` (a key of another node arrived,
        TIME = time.time()) | ``dead ID TIME`` (a peer was convicted) |
        ``stats BYTES_SENT NODES CONVICTIONS``
"""

from __future__ import annotations

import sys
import time

from twisted.internet import reactor, stdio
from twisted.protocols.basic import LineReceiver

from pokan import Server


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, server: Server) -> None:
        self.server = server

    def lineReceived(self, line: bytes) -> None:
        words = line.decode().split()
        if words[:1] == ["store"]:
            self.server.store(words[1], words[2])
        elif words[:1] == ["stats"]:
            stats = self.server.stats
            say(f"stats {stats['bytes_sent']} {stats['nodes']} {stats['convictions']}")


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main() -> None:
    udp, tcp, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    idle = None if sys.argv[4] == "-" else float(sys.argv[4])
    probe = None if sys.argv[5] == "-" else float(sys.argv[5])
    seeds = sys.argv[6:] or None
    server = Server(
        "127.0.0.1",
        tcp_port=tcp,
        udp_port=udp,
        gossip_interval=interval,
        idle_interval=idle,
        probe_interval=probe,
        reactor=reactor,
    )

    def arrived(key: str, value: object, peer: object = None) -> None:
        say(f"key {key} {value} {time.time():.6f}")

    server.on("new_key", arrived)
    server.on("key_changed", arrived)
    server.on("peer_dead", lambda peer: say(f"dead {peer.id} {time.time():.6f}"))
    server.on("start", lambda: say(f"ready {server.id}"))
    stdio.StandardIO(Control(server))
    server.start(gossip_with=seeds)  # runs the reactor


if __name__ == "__main__":
    main()
