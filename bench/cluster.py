"""N pokan nodes as separate processes on 127.0.0.1 (bench/cluster_node.py).

    PYTHONPATH=. .venv/bin/python bench/cluster.py --n 5,20,50 --interval 0.2

Measures, for each N: the time for an update stored on one node to reach
every other node (median and max over 10 updates, each on a random node);
the time for a joining node's first key to reach every node (its join, as
the others see it); the idle CPU per node (from /proc, over a quiet window),
its RSS, and the bytes per second it sends.
"""

from __future__ import annotations

import argparse
import os
import random
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def command(impl: str, port: int, interval: float) -> list[str]:
    """The command that starts one node of ``impl``."""
    if impl == "pokan":
        script, args = "cluster_node.py", [port, port, interval, "-"]
    elif impl.startswith("pokan-idle"):  # pokan-idle1: idle interval 1 s
        idle = float(impl.removeprefix("pokan-idle"))
        script, args = "cluster_node.py", [port, port, interval, idle]
    elif impl == "kinship":
        script, args = "cluster_kinship.py", [port, interval]
    elif impl == "swim":
        script, args = "cluster_swim.py", [port, interval]
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    return [sys.executable, str(HERE / script), *map(str, args)]


TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


class Node:
    def __init__(self, impl: str, interval: float, seed: str | None) -> None:
        self.port = free_port()
        args = command(impl, self.port, interval)
        self.proc = subprocess.Popen(
            args + ([seed] if seed else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.address = f"127.0.0.1:{self.port}"
        self.keys: dict[str, float] = {}
        self.ready = False
        self.stats: tuple[int, int] | None = None
        self.partial = b""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def cpu_seconds(self) -> float:
        fields = (
            Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        )
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


class Cluster:
    def __init__(self, impl: str, interval: float) -> None:
        self.impl = impl
        self.interval = interval
        self.nodes: list[Node] = []
        self.selector = selectors.DefaultSelector()

    def add(self) -> Node:
        seed = self.nodes[0].address if self.nodes else None
        node = Node(self.impl, self.interval, seed)
        assert node.proc.stdout is not None
        self.selector.register(node.proc.stdout, selectors.EVENT_READ, node)
        self.nodes.append(node)
        return node

    def pump(self, until: float) -> None:
        """Read what the nodes print until ``until`` (time.time())."""
        while (left := until - time.time()) > 0:
            for key, _ in self.selector.select(min(left, 0.05)):
                node: Node = key.data
                data = os.read(key.fd, 65536)
                if not data:
                    self.selector.unregister(key.fileobj)
                    continue
                node.partial += data
                *lines, node.partial = node.partial.split(b"\n")
                for line in lines:
                    self.handle(node, line.decode().split())

    def handle(self, node: Node, words: list[str]) -> None:
        if words[:1] == ["ready"]:
            node.ready = True
        elif words[:1] == ["key"]:
            node.keys.setdefault(words[1], float(words[3]))
        elif words[:1] == ["stats"]:
            node.stats = (int(words[1]), int(words[2]))

    def wait(self, done: object, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if done():  # type: ignore[operator]
                return True
            self.pump(min(deadline, time.time() + 0.05))
        return bool(done())  # type: ignore[operator]

    def stop(self) -> None:
        for node in self.nodes:
            node.proc.terminate()
        for node in self.nodes:
            try:
                node.proc.wait(5)
            except subprocess.TimeoutExpired:
                node.proc.kill()


def spread(cluster: Cluster, writer: Node, key: str, timeout: float) -> float | None:
    """Seconds from a store on ``writer`` until every other node has the key."""
    others = [n for n in cluster.nodes if n is not writer]
    started = time.time()
    writer.send(f"store {key} x")
    if not cluster.wait(lambda: all(key in n.keys for n in others), timeout):
        return None
    return max(n.keys[key] for n in others) - started


def measure(impl: str, n: int, interval: float, updates: int = 10) -> dict[str, float]:
    cluster = Cluster(impl, interval)
    try:
        for _ in range(n):
            cluster.add()
        if not cluster.wait(lambda: all(x.ready for x in cluster.nodes), 300):
            raise RuntimeError("nodes did not start")
        # converged: every node holds every node's first key
        for i, node in enumerate(cluster.nodes):
            node.send(f"store boot-{i} x")
        everyone = [f"boot-{i}" for i in range(n)]
        cluster.wait(
            lambda: all(
                all(k in x.keys for k in everyone if k != f"boot-{i}")
                for i, x in enumerate(cluster.nodes)
            ),
            120,
        )
        rng = random.Random(1)
        times = []
        for u in range(updates):
            t = spread(cluster, rng.choice(cluster.nodes), f"update-{u}", 60)
            times.append(float("inf") if t is None else t)
            cluster.pump(time.time() + interval)
        # idle: CPU and bytes over a quiet window
        window = max(5.0, 20 * interval)
        for node in cluster.nodes:
            node.send("stats")
        cluster.wait(lambda: all(x.stats for x in cluster.nodes), 10)
        before = [(x.cpu_seconds(), x.stats) for x in cluster.nodes]
        for node in cluster.nodes:
            node.stats = None
        cluster.pump(time.time() + window)
        for node in cluster.nodes:
            node.send("stats")
        cluster.wait(lambda: all(x.stats for x in cluster.nodes), 10)
        cpu = [
            (x.cpu_seconds() - b[0]) / window * 100
            for x, b in zip(cluster.nodes, before, strict=True)
        ]
        rates = [
            (x.stats[0] - b[1][0]) / window  # type: ignore[index]
            if x.stats[0] >= 0  # type: ignore[index]
            else float("nan")  # the implementation counts no bytes
            for x, b in zip(cluster.nodes, before, strict=True)
        ]
        rss = [x.rss_mb() for x in cluster.nodes]
        # join: a new node and its first key, as every node sees it
        started = time.time()
        joiner = cluster.add()
        cluster.wait(lambda: joiner.ready, 30)
        joiner.send("store joined x")
        others = cluster.nodes[:-1]
        joined = cluster.wait(lambda: all("joined" in x.keys for x in others), 60)
        join = (
            max(x.keys["joined"] for x in others) - started if joined else float("inf")
        )
        return {
            "update median s": statistics.median(times),
            "update max s": max(times),
            "join s": join,
            "idle CPU %/node": statistics.fmean(cpu),
            "RSS MB/node": statistics.fmean(rss),
            "bytes/s/node": statistics.fmean(rates),
        }
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", default="5,20,50")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--impl", default="pokan,kinship")
    args = parser.parse_args()
    columns = None
    for n in (int(x) for x in args.n.split(",")):
        for impl in args.impl.split(","):
            figures = measure(impl, n, args.interval)
            if columns is None:
                columns = list(figures)
                print("| N | impl | " + " | ".join(columns) + " |")
                print("|---" * (len(columns) + 2) + "|")
            cells = " | ".join(f"{figures[c]:.3f}" for c in columns)
            print(f"| {n} | {impl} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
