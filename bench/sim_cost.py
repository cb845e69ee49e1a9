"""What the simulator costs per round, and how much of the shared start it copies.

    PYTHONPATH=. .venv/bin/python bench/sim_cost.py rounds 1000,2000
    PYTHONPATH=. .venv/bin/python bench/sim_cost.py copies 10000 10,20,40

``rounds``: CPU seconds of this process per simulated round (20 rounds after
17 of warm-up, past any periodic work), and per node and round. ``copies``:
how many records of the shared converged start a node has copied (changed)
after so many rounds, on 50 sampled nodes (rounds only, no eager push).
"""

from __future__ import annotations

import argparse
import sys
import time

from pokan.sim.simulate import Config, Simulation


def rounds(sizes: list[int]) -> None:
    for n in sizes:
        sim = Simulation(Config(n=n))
        sim.run_until(lambda: False, 17.0)
        started = time.process_time()
        sim.run_until(lambda: False, 37.0)
        per_round = (time.process_time() - started) / 20
        print(
            f"N={n}: {per_round:.3f} s CPU per round,"
            f" {per_round / n * 1e6:.0f} us per node and round",
            flush=True,
        )


def copies(n: int, marks: list[int]) -> None:
    sim = Simulation(Config(n=n, push_fanout=0))
    sample = sim.nodes[:: max(1, n // 50)]
    for mark in marks:
        sim.run_until(lambda: False, float(mark))
        copied = [
            sum(1 for r in node.state.nodes.values() if not getattr(r, "shared", False))
            - 1
            for node in sample
        ]
        print(
            f"after {mark} rounds: {sum(copied) / len(copied):.0f} of {n - 1}"
            f" records copied per node (mean of {len(sample)}, max {max(copied)})",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("rounds").add_argument("sizes")
    cp = sub.add_parser("copies")
    cp.add_argument("n", type=int)
    cp.add_argument("marks")
    args = parser.parse_args(argv)
    if args.what == "rounds":
        rounds([int(x) for x in args.sizes.split(",")])
    else:
        copies(args.n, [int(x) for x in args.marks.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
