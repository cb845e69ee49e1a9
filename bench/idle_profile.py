"""Where an idle node's CPU goes, in a real cluster of idle processes.

    PYTHONPATH=. .venv/bin/python bench/idle_profile.py [--n 50] \
        [--interval 0.2] [--idle 1] [--window 30]

Starts ``--n`` pokan nodes as processes on 127.0.0.1 (as bench/cluster.py
does), lets them settle, and times one of them over ``--window`` seconds of
idleness: its CPU (user + system, from /proc) and the CPU spent inside the
main steps of handling a datagram and of a round, each measured with
``time.process_time`` around the call. The step figures are CPU per call in
a process that sleeps between wakeups, with the caches cold: several times
what bench/micro.py measures for the same code run in a tight loop.

The timed node runs this file with ``--node``: it wraps the steps, then runs
bench/cluster_node.py; SIGUSR1 starts the count, SIGUSR2 writes it out.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

#: (module, attribute path) of each step timed in the profiled node
STEPS = [
    ("pokan.net.protocols", "GossipProtocol.datagramReceived"),
    ("pokan.wire", "decode"),
    ("pokan.core.node", "GossipNode.receive"),
    ("pokan.core.reconcile", "respond_to_syn"),
    ("pokan.core.reconcile", "respond_to_syn_ack"),
    ("pokan.core.membership", "Membership.observe"),
    ("pokan.net.protocols", "GossipProtocol.send"),
    ("pokan.net.pacing", "Pacing._resume_rounds"),
    ("pokan.net.pacing", "Pacing._gossip_round"),
    ("pokan.core.node", "GossipNode.gossip_round"),
    ("pokan.core.reconcile", "make_syn"),
]


def run_node(out: str, argv: list[str]) -> None:
    """In the profiled node: wrap the steps, then run cluster_node.py."""
    import importlib

    spent: dict[str, list[float]] = {}
    for module_name, path in STEPS:
        owner: Any = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        spent[path] = [0.0, 0]
        setattr(owner, name, _timed(getattr(owner, name), spent[path]))
    started = [time.process_time()]

    def start(*_: object) -> None:
        started[0] = time.process_time()
        for figures in spent.values():
            figures[:] = [0.0, 0]

    def dump(*_: object) -> None:
        total = time.process_time() - started[0]
        Path(out).write_text(json.dumps({"total": total, "steps": spent}))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, dump)
    sys.argv = [str(HERE / "cluster_node.py"), *argv]
    runpy.run_path(sys.argv[0], run_name="__main__")


def _timed(fn: Callable[..., Any], figures: list[float]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            figures[0] += time.process_time() - began
            figures[1] += 1

    return timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--idle", default="1", help="idle interval, s, or -")
    parser.add_argument("--window", type=float, default=30)
    parser.add_argument("--node", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.node:
        run_node(args.node[0], args.node[1:])
        return 0

    import bench.cluster as cluster

    out = Path(tempfile.mkdtemp()) / "steps.json"
    impl = "pokan" if args.idle == "-" else f"pokan-idle{args.idle}"
    plain = cluster.command
    started = 0

    def command(impl: str, port: int, interval: float) -> list[str]:
        nonlocal started
        started += 1
        argv = plain(impl, port, interval)
        if started != 2:  # the second node is profiled (never the seed)
            return argv
        return [argv[0], __file__, "--node", str(out), *argv[2:]]

    cluster.command = command
    nodes = cluster.Cluster(impl, args.interval)
    try:
        for _ in range(args.n):
            nodes.add()
        if not nodes.wait(nodes.started, 300):
            raise RuntimeError("nodes did not start")
        for i, node in enumerate(nodes.nodes):
            node.send(f"store boot-{i} x")
        nodes.pump(time.time() + 15)  # the writes spread, the nodes go idle
        target = nodes.nodes[1]
        cpu = [n.cpu_seconds() for n in nodes.nodes]
        os.kill(target.proc.pid, signal.SIGUSR1)
        nodes.pump(time.time() + args.window)
        os.kill(target.proc.pid, signal.SIGUSR2)
        mean = sum(
            n.cpu_seconds() - c for n, c in zip(nodes.nodes, cpu, strict=True)
        ) / len(nodes.nodes)
        nodes.pump(time.time() + 1)
        report = json.loads(out.read_text())
    finally:
        nodes.stop()
    window = args.window
    print(f"{args.n} nodes, interval {args.interval} s, idle interval {args.idle}")
    print(f"idle CPU per node (/proc, mean of all): {mean / window * 100:.3f}%")
    print(f"profiled node, CPU while timed: {report['total'] / window * 1e3:.2f} ms/s")
    print(f"{'step':34} {'calls/s':>8} {'us/call':>8} {'ms/s':>6}")
    for path, (seconds, calls) in report["steps"].items():
        if calls:
            print(
                f"{path:34} {calls / window:8.2f} {seconds / calls * 1e6:8.0f}"
                f" {seconds / window * 1e3:6.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
