"""A program embedding pokan: it joins a cluster, says what it serves, and
prints what the other nodes announce, until it is stopped (Ctrl-C, SIGTERM)
or --run-for seconds have passed. pokan's log goes to stderr.

    python docs/examples/embedded.py --address 127.0.0.1 --port 7001 \\
        --gossip-with 127.0.0.1:5555 --service cache
"""

import argparse
import sys

from pokan import ConfigurationError, Peer, Server, StartupError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5555, help="TCP and UDP port")
    parser.add_argument(
        "--gossip-with", action="append", default=[], help="HOST[:PORT] of a seed"
    )
    parser.add_argument("--service", default="worker", help="what this node serves")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--run-for", type=float, default=None)
    args = parser.parse_args(argv)

    try:
        server = Server(
            args.address,
            tcp_port=args.port,
            udp_port=args.port,
            gossip_with=",".join(args.gossip_with) or None,
            gossip_interval=args.interval,
        )
    except ConfigurationError as e:  # a bad address, port, seed or interval
        parser.error(str(e))
    server.store("service", args.service)

    @server.on("start")
    def started() -> None:
        print(f"node {server.id} started", flush=True)
        if args.run_for is not None:
            from twisted.internet import reactor

            reactor.callLater(args.run_for, server.stop)

    @server.after("sync")
    def synced(peer: Peer) -> None:
        alive = len(server.peers("alive"))
        print(f"synced with {peer.id}; {alive} nodes alive", flush=True)

    @server.on("new_key")
    @server.on("key_changed")
    def announced(key: str, value: object, peer: Peer) -> None:
        if peer.id != server.id:
            print(f"{peer.id} {key}={value!r}", flush=True)

    @server.on("key_removed")
    def removed(key: str, value: object, peer: Peer) -> None:
        print(f"{peer.id} removed {key}", flush=True)

    @server.on("shutdown")
    def shutdown() -> None:
        print(f"node {server.id} stopping", flush=True)

    try:
        server.start()
    except StartupError as e:  # e.g. its port in use: pokan logs nothing of it
        print(f"cannot start: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
