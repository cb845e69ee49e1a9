"""``python -m pokan.simulate``: the simulator's command line.

It runs :func:`pokan.sim.simulate.measure` (the spread of fresh writes and
joins) or, with ``--overload``, :func:`pokan.sim.overload.overload`, over
rows of configurations, and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pokan import wire
from pokan.sim import simulate
from pokan.sim.overload import OVERLOAD_HEADER, overload, overload_row
from pokan.sim.simulate import HEADER, Config, _rule, measure, row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pokan.simulate", description=simulate.__doc__
    )
    parser.add_argument(
        "--n", default="10,100,1000", help="cluster sizes, comma-separated"
    )
    parser.add_argument("--loss", default="0,0.2", help="loss rates, comma-separated")
    parser.add_argument("--push", default="3", help="push fanouts, comma-separated")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--max-datagram", type=int, default=wire.DEFAULT_MAX_DATAGRAM)
    parser.add_argument("--latency", default="0.001,0.005", help="low,high seconds")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--partition-rounds", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--progress",
        action="store_true",
        help="print a line after every trial, with CPU time and peak memory, to stderr",
    )
    parser.add_argument(
        "--overload",
        default="",
        help="instead: the overload scenario at these writes/node/round"
        " (comma-separated; one node writes 20 times as fast)",
    )
    args = parser.parse_args(argv)
    low, high = (float(x) for x in args.latency.split(","))
    log = _stderr if args.progress else None
    if args.overload:
        print(OVERLOAD_HEADER)
        print("|" + "---|" * (OVERLOAD_HEADER.count("|") - 1))
        for n in (int(x) for x in args.n.split(",")):
            for rate in (float(x) for x in args.overload.split(",")):
                config = Config(n=n, interval=args.interval, seed=args.seed)
                print(overload_row(overload(config, rate, 20 * rate)), flush=True)
        return 0
    print(HEADER)
    print(_rule())
    for n in (int(x) for x in args.n.split(",")):
        for push in (int(x) for x in args.push.split(",")):
            for loss in (float(x) for x in args.loss.split(",")):
                config = Config(
                    n=n,
                    interval=args.interval,
                    max_datagram=args.max_datagram,
                    loss=loss,
                    latency=(low, high),
                    partitions=args.partitions,
                    partition_rounds=args.partition_rounds,
                    push_fanout=push,
                    seed=args.seed,
                )
                print(row(measure(config, args.trials, progress=log)), flush=True)
    return 0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
