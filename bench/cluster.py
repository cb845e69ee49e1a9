"""N pokan nodes as separate processes on 127.0.0.1 (bench/cluster_node.py).

    PYTHONPATH=. .venv/bin/python bench/cluster.py --n 5,20,50 --interval 0.2 \
        --impl pokan,pokan-idle1,pokan-idle2,kinship,swim

Measures, for each N: the time for an update stored on one node to reach
every other node (median and max over 10 updates, each on a random node);
the idle CPU per node (from /proc, over a quiet window), its RSS, and the
bytes per second it sends (on the loopback wire, IP headers included,
counted by nftables for every implementation: needs root and Debian's
``nftables``, else nan; pokan's own count of its payload bytes beside it);
the dead reports seen until then ("false dead":
nobody was killed yet); the time for a joining node's first key to reach
every node (its join, as the others see it; ``--joins`` samples); the time
from a ``kill -9`` of a random node until every other node reports it dead
(``--kills`` samples). ``--impl`` takes pokan (default settings),
pokan-idleS (idle interval S seconds), pokan-probeS (probe interval S
seconds), both (pokan-idle2-probe0.5), kinship and swim (swim-protocol).
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

from bench.wire_bytes import CounterUnavailable, LoopbackByteCounter

HERE = Path(__file__).parent


def command(impl: str, port: int, interval: float) -> list[str]:
    """The command that starts one node of ``impl``."""
    if impl == "pokan" or impl.startswith("pokan-"):
        # pokan-idle1: idle interval 1 s; pokan-idle2-probe0.5: and probes
        # every 0.5 s
        chosen = {"idle": "-", "probe": "-"}
        for part in impl.split("-")[1:]:
            name = part.rstrip("0123456789.")
            if name not in chosen or name == part:
                raise ValueError(f"unknown pokan variant {impl!r}")
            chosen[name] = str(float(part.removeprefix(name)))
        script = "cluster_node.py"
        args = [port, port, interval, chosen["idle"], chosen["probe"]]
    elif impl == "kinship":
        script, args = "cluster_kinship.py", [port, interval]
    elif impl == "swim":
        script, args = "cluster_swim.py", [port, interval]
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    return [sys.executable, str(HERE / script), *map(str, args)]


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The user and system CPU seconds process ``pid`` has used (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid``, in MB (/proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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
        #: peer address -> times this node reported it dead
        self.dead: dict[str, list[float]] = {}
        self.partial = b""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)


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

    def started(self) -> bool:
        """All nodes ready; one that died starting (its port taken in the
        meantime) is replaced by a new one on another port."""
        for i, node in enumerate(self.nodes):
            if not node.ready and node.proc.poll() is not None:
                seed = self.nodes[0].address if i else None
                fresh = Node(self.impl, self.interval, seed)
                assert fresh.proc.stdout is not None
                self.selector.register(fresh.proc.stdout, selectors.EVENT_READ, fresh)
                self.nodes[i] = fresh
        return all(x.ready for x in self.nodes)

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
        elif words[:1] == ["dead"]:
            node.dead.setdefault(words[1], []).append(float(words[2]))
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
            if node.proc.poll() is None:
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


def join(cluster: Cluster, name: str, timeout: float = 60) -> float:
    """Seconds from a new node's process start until every node has its key."""
    others = list(cluster.nodes)
    started = time.time()
    joiner = cluster.add()
    cluster.wait(lambda: joiner.ready, 30)
    joiner.send(f"store {name} x")
    if not cluster.wait(lambda: all(name in x.keys for x in others), timeout):
        return float("inf")
    return max(x.keys[name] for x in others) - started


def kill(cluster: Cluster, victim: Node, timeout: float = 60) -> float:
    """Seconds from a ``kill -9`` of ``victim`` until every other node says dead."""
    cluster.nodes.remove(victim)
    killed = time.time()
    victim.proc.kill()
    victim.proc.wait()

    def seen(node: Node) -> float | None:
        return next((t for t in node.dead.get(victim.address, []) if t > killed), None)

    if not cluster.wait(lambda: all(seen(x) for x in cluster.nodes), timeout):
        return float("inf")
    return max(seen(x) or 0.0 for x in cluster.nodes) - killed


def wire_bytes_over(cluster: Cluster, window: float) -> float:
    """Pump for ``window`` seconds; the cluster's loopback bytes per second.

    nan, with a note on stderr, where nftables cannot count them.
    """
    try:
        with LoopbackByteCounter(x.port for x in cluster.nodes) as counter:
            cluster.pump(time.time() + window)
            return counter.bytes() / window
    except CounterUnavailable as e:
        print(f"wire bytes not counted: {e}", file=sys.stderr)
        cluster.pump(time.time() + window)
        return float("nan")


def converge(cluster: Cluster, n: int) -> None:
    """Start ``n`` nodes; return once every node holds every node's first key."""
    for _ in range(n):
        cluster.add()
    if not cluster.wait(cluster.started, 300):
        raise RuntimeError("nodes did not start")
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


def measure(
    impl: str,
    n: int,
    interval: float,
    updates: int = 10,
    joins: int = 3,
    kills: int = 2,
    window: float = 30.0,
) -> dict[str, float]:
    cluster = Cluster(impl, interval)
    try:
        converge(cluster, n)
        rng = random.Random(1)
        times = []
        for u in range(updates):
            t = spread(cluster, rng.choice(cluster.nodes), f"update-{u}", 60)
            times.append(float("inf") if t is None else t)
            if t is None:
                break  # one update never arrived everywhere: the rest would not
            cluster.pump(time.time() + interval)
        # idle: CPU and bytes over a quiet window (/proc counts CPU in ticks
        # of 10 ms: a long window, or an idle node's 0.1% is all rounding)
        cluster.pump(time.time() + 5)
        for node in cluster.nodes:
            node.send("stats")
        cluster.wait(lambda: all(x.stats for x in cluster.nodes), 10)
        before = [(x.cpu_seconds(), x.stats) for x in cluster.nodes]
        for node in cluster.nodes:
            node.stats = None
        wire = wire_bytes_over(cluster, window)
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
        # dead reports so far are false: nobody was killed yet
        false_dead = sum(len(t) for x in cluster.nodes for t in x.dead.values())
        # join: a new node and its first key, as every node sees it
        joined = []
        for j in range(joins):
            joined.append(join(cluster, f"joined-{j}"))
            if joined[-1] == float("inf"):
                break
            cluster.pump(time.time() + 1)
        # kill -9 of a random node (never the seed), until all others say dead
        detected = []
        for _ in range(kills):
            detected.append(kill(cluster, rng.choice(cluster.nodes[1:])))
            if detected[-1] == float("inf"):
                break
            cluster.pump(time.time() + 2)
        return {
            "update median s": statistics.median(times),
            "update max s": max(times),
            "join median s": statistics.median(joined),
            "join max s": max(joined),
            "kill -9 seen by all s": statistics.median(detected),
            "kill -9 max s": max(detected),
            "idle CPU %/node": statistics.fmean(cpu),
            "RSS MB/node": statistics.fmean(rss),
            "wire bytes/s/node": wire / n,
            "own count bytes/s/node": statistics.fmean(rates),
            "false dead": false_dead,
        }
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", default="5,20,50")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument(
        "--impl",
        default="pokan,pokan-idle1,pokan-idle2,kinship,swim",
        help="pokan (defaults), pokan-idleS (idle interval S seconds), kinship, swim",
    )
    parser.add_argument("--joins", type=int, default=3, help="join samples per N")
    parser.add_argument("--kills", type=int, default=2, help="kill -9 samples per N")
    parser.add_argument("--window", type=float, default=30, help="idle window, s")
    args = parser.parse_args()
    columns: list[str] = []
    results: dict[tuple[int, str], dict[str, float]] = {}
    for n in (int(x) for x in args.n.split(",")):
        for impl in args.impl.split(","):
            figures = measure(
                impl,
                n,
                args.interval,
                joins=args.joins,
                kills=args.kills,
                window=args.window,
            )
            results[n, impl] = figures
            if not columns:
                columns = list(figures)
                print("| N | impl | " + " | ".join(columns) + " |")
                print("|---" * (len(columns) + 2) + "|")
            cells = " | ".join(f"{figures[c]:.3f}" for c in columns)
            print(f"| {n} | {impl} | {cells} |", flush=True)
    print_ratios(results, columns)
    return 0


def print_ratios(
    results: dict[tuple[int, str], dict[str, float]], columns: list[str]
) -> None:
    """Each pokan variant against each other implementation: theirs / pokan's.

    Above 1: pokan is faster or lighter (every column is "less is better").
    """
    compared = [c for c in columns if c not in ("own count bytes/s/node", "false dead")]
    print()
    print("| N | pokan | vs | " + " | ".join(compared) + " |")
    print("|---" * (len(compared) + 3) + "|")
    for (n, impl), ours in results.items():
        if not impl.startswith("pokan"):
            continue
        for (m, other), theirs in results.items():
            if m != n or other.startswith("pokan"):
                continue
            cells = []
            for c in compared:
                a, b = theirs[c], ours[c]
                cells.append(f"{a / b:.2f}" if b and b == b and a == a else "-")
            print(f"| {n} | {impl} | {other} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
