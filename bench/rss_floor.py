"""Where a node's resident memory goes: import floors beside live nodes.

    PYTHONPATH=. .venv/bin/python bench/rss_floor.py --n 20

Each floor is the RSS of a fresh interpreter right after one set of
imports (the median of ``--repeat`` processes): the bare interpreter,
asyncio (what kinship runs on), kinship itself, Twisted's reactor, the
reactor with everything else pokan imports from outside (a Twisted service,
``twisted.protocols.policies``, msgpack). Then
``--n`` live nodes of pokan and of kinship are converged as bench/cluster.py
does and their mean RSS is read. Every figure is printed with its ratio to
the live kinship node measured in the same run, and the last line says how
much room a 1.4x budget leaves for pokan over the Twisted floor.

pokan's own share is read from the live node, not from an import floor:
importing pokan before or after the reactor moves RSS by about 1.3 MB
(the heap's layout after the imports' transient allocations), more than
the budget's room.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from bench.cluster import Cluster, converge, rss_mb

RSS_LINE = (  # no imports of its own: they would be counted in every floor
    "with open('/proc/self/status') as status:\n"
    "    print(next(int(x.split()[1]) for x in status if x.startswith('VmRSS:')))\n"
)

TWISTED = "from twisted.internet import reactor\n"
TWISTED_FLOOR = TWISTED + (
    "import twisted.application.service, twisted.protocols.policies, msgpack\n"
)

FLOOR_NAME = "twisted floor (service, policies, msgpack)"
FLOORS: dict[str, str] = {
    "python": "",
    "python + asyncio": "import asyncio\n",
    "python + kinship": "import kinship, kinship.blocking\n",
    "twisted reactor": TWISTED,
    FLOOR_NAME: TWISTED_FLOOR,
}


def floor_mb(code: str, repeat: int) -> float:
    """The median RSS, in MB, of ``repeat`` interpreters that ran ``code``."""
    samples = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", code + RSS_LINE],
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append(int(out.stdout.split()[-1]) / 1024)
    return statistics.median(samples)


def live_mb(impl: str, n: int) -> float:
    """The mean RSS, in MB, of ``n`` converged live nodes of ``impl``."""
    cluster = Cluster(impl, 0.2)
    try:
        converge(cluster, n)
        cluster.pump(time.time() + 2.0)  # settle: the last deltas land
        return statistics.fmean(rss_mb(x.proc.pid) for x in cluster.nodes)
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20, help="live nodes per impl")
    parser.add_argument("--repeat", type=int, default=5, help="processes per floor")
    parser.add_argument("--budget", type=float, default=1.4, help="x kinship's RSS")
    args = parser.parse_args()
    figures = {name: floor_mb(code, args.repeat) for name, code in FLOORS.items()}
    floor = figures[FLOOR_NAME]
    pokan = figures[f"live pokan node (N = {args.n})"] = live_mb("pokan", args.n)
    kinship = figures[f"live kinship node (N = {args.n})"] = live_mb("kinship", args.n)
    print(f"{'RSS':44s} {'MB':>7s} {'x kinship':>10s}")
    for name, mb in figures.items():
        print(f"{name:44s} {mb:7.2f} {mb / kinship:10.2f}")
    budget = args.budget * kinship
    print(
        f"a {args.budget:g}x budget is {budget:.2f} MB: {budget - floor:.2f} MB over"
        f" the Twisted floor for all of pokan, which takes"
        f" {pokan - floor:.2f} MB live"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
