"""Idle CPU per node of a bare Twisted prober beside pokan and kinship.

    PYTHONPATH=. .venv/bin/python bench/idle_floor.py --n 50 \
        --impl floor1,floor2,pokan-idle1,pokan-idle2,kinship

``floorS``: N bench/floor_node.py processes, each sending one ``ping`` every
S seconds to a random other and answering every ``ping`` with an ``ack``:
the reactor's wakeups of a SWIM-style probe and nothing else. The others
are started and converged as bench/cluster.py does (every node stores a key
and holds everyone's). Each cluster then settles for ``--settle`` seconds
and its CPU per node is read from /proc over ``--window`` seconds. One
cluster at a time, in the order given.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from bench.cluster import HERE, Cluster, converge, cpu_seconds, free_port, rss_mb


def floor_cluster(n: int, interval: float) -> list[subprocess.Popen[str]]:
    ports = [free_port() for _ in range(n)]
    procs = []
    script = str(HERE / "floor_node.py")
    for port in ports:
        peers = [str(p) for p in ports if p != port]
        procs.append(
            subprocess.Popen(
                [sys.executable, script, str(interval), str(port), *peers],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("a floor node did not start")
    return procs


def idle_cpu(
    pids: list[int], wait: Callable[[float], None], settle: float, window: float
) -> tuple[float, float]:
    """Mean CPU per process, in % of a core, over ``window`` after ``settle``,
    and the mean RSS per process then, in MB.

    ``wait(seconds)`` lets the time pass (a cluster's pump reads the nodes'
    lines meanwhile: a full pipe would block them).
    """
    wait(settle)
    before = [cpu_seconds(pid) for pid in pids]
    wait(window)
    after = [cpu_seconds(pid) for pid in pids]
    used = [b - a for a, b in zip(before, after, strict=True)]
    rss = statistics.fmean(rss_mb(pid) for pid in pids)
    return statistics.fmean(used) / window * 100, rss


def measure(impl: str, n: int, settle: float, window: float) -> tuple[float, float]:
    if impl.startswith("floor"):
        procs = floor_cluster(n, float(impl.removeprefix("floor")))
        try:
            return idle_cpu([p.pid for p in procs], time.sleep, settle, window)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()
    cluster = Cluster(impl, 0.2)
    try:
        converge(cluster, n)
        return idle_cpu(
            [x.proc.pid for x in cluster.nodes],
            lambda seconds: cluster.pump(time.time() + seconds),
            settle,
            window,
        )
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument(
        "--impl", default="floor1,floor2,pokan-idle1,pokan-idle2,kinship"
    )
    parser.add_argument("--settle", type=float, default=5)
    parser.add_argument("--window", type=float, default=30)
    args = parser.parse_args()
    print(f"{args.n} nodes, idle CPU per node over {args.window:g} s, RSS per node")
    for impl in args.impl.split(","):
        cpu, rss = measure(impl, args.n, args.settle, args.window)
        print(f"{impl:24s} {cpu:.3f}%  {rss:.1f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
