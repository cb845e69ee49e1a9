"""Membership benchmark: real pokan processes on 127.0.0.1.

    python bench/membership.py [--sizes 10,40] [--trials 3] [--interval 0.3]
                               [--loss-sizes 10,40] [--loss-seconds 60]
                               [--drop-rate 0.2] [--goodbye-size 10] [--seed 1]

Measures, with one process per node (each a small runner around
``pokan.Server`` that prints its membership events as JSON lines):

- kill: a ``kill -9`` of one node; the time until every other node fired
  ``peer_dead`` for it (median and max over all observers and trials);
- loss: false convictions (``peer_dead`` of a live node) over
  ``--loss-seconds`` with ``--drop-rate`` of the datagrams dropped (seeded);
- goodbye: a graceful stop (SIGTERM); the time until every other node fired
  ``peer_left``, in gossip intervals, without loss and with the drop rate.

``python bench/membership.py node ...`` is the runner itself.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

EVENTS = ("peer_joined", "peer_left", "peer_dead", "peer_alive")


# -- the runner: one node ----------------------------------------------------------


def node_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="membership.py node")
    parser.add_argument("--interval", type=float, default=0.3)
    parser.add_argument("--seed-node", default=None, help="HOST:TCP_PORT to join")
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--rng-seed", type=int, default=0)
    parser.add_argument("--phi-threshold", type=float, default=8.0)
    parser.add_argument("--fanout", type=int, default=3)
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    from pokan import Server

    server = Server(
        "127.0.0.1",
        tcp_port=0,
        udp_port=0,
        gossip_interval=args.interval,
        gossip_with=args.seed_node,
        drop_rate=args.drop_rate,
        phi_threshold=args.phi_threshold,
        gossip_fanout=args.fanout,
        rng=random.Random(args.rng_seed),
        reactor=reactor,
    )

    def emit(**fields: Any) -> None:
        sys.stdout.write(json.dumps({"t": time.time(), **fields}) + "\n")
        sys.stdout.flush()

    def handler(event: str) -> Any:
        return lambda peer: emit(event=event, peer=peer.id)

    for event in EVENTS:
        server.on(event, handler(event))
    d = server.startService()
    d.addCallback(lambda _: emit(event="ready", id=server.id, tcp=server.tcp_port))
    d.addErrback(
        lambda f: (emit(event="failed", error=f.getErrorMessage()), reactor.stop())
    )
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    reactor.run()


# -- the parent: clusters of runners -----------------------------------------------


class Node:
    def __init__(self, workdir: str, index: int, args: list[str]) -> None:
        self.path = os.path.join(workdir, f"node{index}.jsonl")
        self.out = open(self.path, "w")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "node", *args],
            stdout=self.out,
            stderr=subprocess.DEVNULL,
        )
        self._offset = 0
        self.lines: list[dict[str, Any]] = []
        self.id: str | None = None
        self.tcp: int | None = None

    def poll(self) -> None:
        with open(self.path) as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind("\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            record = json.loads(line)
            self.lines.append(record)
            if record["event"] == "ready":
                self.id, self.tcp = record["id"], record["tcp"]

    def events(
        self, event: str, peer: str | None = None, after: float = 0
    ) -> list[float]:
        return [
            r["t"]
            for r in self.lines
            if r["event"] == event
            and r["t"] >= after
            and (peer is None or r.get("peer") == peer)
        ]

    def alive_peers(self) -> set[str]:
        state: dict[str, str] = {}
        for r in self.lines:
            if r["event"] in EVENTS:
                state[r["peer"]] = r["event"]
        return {p for p, e in state.items() if e in ("peer_joined", "peer_alive")}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def close(self) -> None:
        self.stop(signal.SIGKILL)
        self.proc.wait()
        self.out.close()


def wait(condition: Any, timeout: float, nodes: list[Node]) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for n in nodes:
            n.poll()
        if condition():
            return True
        time.sleep(0.02)
    return False


class Cluster:
    def __init__(self, n: int, interval: float, drop_rate: float, seed: int) -> None:
        self.workdir = tempfile.mkdtemp(prefix="pokan-bench-")
        base = ["--interval", str(interval), "--drop-rate", str(drop_rate)]
        first = Node(self.workdir, 0, [*base, "--rng-seed", str(seed * 1000)])
        self.nodes = [first]
        if not wait(lambda: first.tcp is not None, 20, self.nodes):
            raise RuntimeError("the first node did not start")
        for i in range(1, n):
            args = [*base, "--rng-seed", str(seed * 1000 + i)]
            args += ["--seed-node", f"127.0.0.1:{first.tcp}"]
            self.nodes.append(Node(self.workdir, i, args))
        ok = wait(
            lambda: all(len(x.alive_peers()) == n - 1 for x in self.nodes),
            60,
            self.nodes,
        )
        if not ok:
            raise RuntimeError("the cluster did not form within 60 s")

    def live(self, but: Node) -> list[Node]:
        return [n for n in self.nodes if n is not but]

    def close(self) -> None:
        for n in self.nodes:
            n.close()


def stop_and_time(
    cluster: Cluster,
    rng: random.Random,
    sig: int,
    event: str,
    timeout: float,
    what: str,
) -> list[float]:
    """Stop a random node (not the seed) with ``sig``; the seconds until each
    other node fired ``event`` about it (those that never did are reported)."""
    node = rng.choice(cluster.nodes[1:])
    start = time.time()
    node.stop(sig)
    others = cluster.live(node)
    wait(lambda: all(o.events(event, node.id, start) for o in others), timeout, others)
    times = [o.events(event, node.id, start) for o in others]
    if not all(times):
        print(f"  {what}: {sum(1 for t in times if not t)} never fired {event}")
    return [t[0] - start for t in times if t]


def kill_trial(n: int, interval: float, rng: random.Random, seed: int) -> list[float]:
    cluster = Cluster(n, interval, 0.0, seed)
    try:
        time.sleep(20 * interval)  # let the windows fill
        return stop_and_time(
            cluster, rng, signal.SIGKILL, "peer_dead", 30, f"kill n={n}"
        )
    finally:
        cluster.close()


def loss_trial(n: int, interval: float, drop: float, seconds: float, seed: int) -> int:
    cluster = Cluster(n, interval, drop, seed)
    try:
        start = time.time()
        wait(lambda: False, seconds, cluster.nodes)
        return sum(len(x.events("peer_dead", after=start)) for x in cluster.nodes)
    finally:
        cluster.close()


def goodbye_trial(
    n: int, interval: float, drop: float, rng: random.Random, seed: int
) -> list[float]:
    cluster = Cluster(n, interval, drop, seed)
    try:
        time.sleep(5 * interval)
        seconds = stop_and_time(
            cluster, rng, signal.SIGTERM, "peer_left", 10, f"goodbye n={n}"
        )
        return [t / interval for t in seconds]
    finally:
        cluster.close()


def summary(values: list[float], unit: str) -> str:
    if not values:
        return "no data"
    return (
        f"median {statistics.median(values):.2f} {unit}, max {max(values):.2f} {unit}"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "node":
        node_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,40")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.3)
    parser.add_argument("--loss-seconds", type=float, default=60.0)
    parser.add_argument("--loss-sizes", default="10,40")
    parser.add_argument("--drop-rate", type=float, default=0.2)
    parser.add_argument("--goodbye-size", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows: list[tuple[str, str]] = []
    for n in sizes:
        times: list[float] = []
        for trial in range(args.trials):
            times += kill_trial(n, args.interval, rng, args.seed + trial)
        rows.append((f"kill -9, {n} nodes, seen dead by all", summary(times, "s")))
        print(rows[-1][0], "|", rows[-1][1], flush=True)
    for n in [int(s) for s in args.loss_sizes.split(",") if s]:
        false = loss_trial(
            n, args.interval, args.drop_rate, args.loss_seconds, args.seed
        )
        label = (
            f"false convictions, {n} nodes, {args.loss_seconds:.0f} s,"
            f" {args.drop_rate:.0%} loss"
        )
        rows.append((label, str(false)))
        print(rows[-1][0], "|", rows[-1][1], flush=True)
    for drop in (0.0, args.drop_rate):
        intervals: list[float] = []
        for trial in range(args.trials):
            intervals += goodbye_trial(
                args.goodbye_size, args.interval, drop, rng, args.seed + trial
            )
        label = f"goodbye, {args.goodbye_size} nodes, {drop:.0%} loss, seen left by all"
        rows.append((label, summary(intervals, "intervals")))
        print(rows[-1][0], "|", rows[-1][1], flush=True)
    print()
    print(f"gossip interval {args.interval} s, default phi threshold 8, fanout 3")
    print("| scenario | result |")
    print("|---|---|")
    for label, result in rows:
        print(f"| {label} | {result} |")


if __name__ == "__main__":
    main()
