"""``python -m pokan.simulate``: the simulator's command line.

It runs :func:`pokan.sim.simulate.measure` (the spread of fresh writes and
joins), or with ``--rounds``, ``--kill``, ``--pause`` or ``--json`` one
measured liveness run per configuration (:func:`pokan.sim.scenario.run`),
or with ``--overload`` :func:`pokan.sim.overload.overload`, over rows of
configurations, and prints a Markdown table (or JSON objects, one a line).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pokan import wire
from pokan.core.settings import EngineSettings
from pokan.sim import simulate
from pokan.sim.faults import parse_pause
from pokan.sim.overload import OVERLOAD_HEADER, overload, overload_row
from pokan.sim.scenario import SCENARIO_HEADER, Scenario, run, scenario_row
from pokan.sim.simulate import HEADER, Config, Simulation, _rule, measure, row

#: ``--failure-detector none``: no failure detection, the gossip alone
NONE = "none"


def detector(name: str, scenario: Scenario | None) -> str | None:
    """The Config's failure detector for ``--failure-detector name``.

    Unset: the Engine's default for a liveness run (full nodes), none for
    the write and join trials (the gossip alone, as always measured).
    """
    if name == NONE:
        return None
    if name:
        return name
    return EngineSettings().failure_detector if scenario is not None else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pokan.simulate",
        description=simulate.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    parser.add_argument(
        "--fanout", type=int, default=1, help="peers each round's exchange goes to"
    )
    parser.add_argument(
        "--failure-detector",
        default="",
        help="the Engine's failure detector, or none (the gossip alone);"
        " default: the Engine's default for liveness runs, none for the"
        " write and join trials",
    )
    parser.add_argument(
        "--probe-interval",
        type=float,
        default=None,
        help="SWIM's probe period, s (default: half the interval, as the"
        " figures in docs/performance.md were measured)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--progress",
        action="store_true",
        help="print a line after every trial (every 10 rounds with --rounds),"
        " with CPU time and peak memory, to stderr",
    )
    parser.add_argument(
        "--overload",
        default="",
        help="instead: the overload scenario at these writes/node/round"
        " (comma-separated; one node writes 20 times as fast)",
    )
    faults = parser.add_argument_group(
        "liveness runs",
        "any of these runs one measured run of R rounds per configuration"
        " instead of the write and join trials (see pokan.sim.scenario)",
    )
    faults.add_argument("--rounds", type=int, help="rounds a run lasts (default 100)")
    faults.add_argument(
        "--kill",
        type=int,
        default=0,
        metavar="K",
        help="K random nodes go silent for good, at random times",
    )
    faults.add_argument(
        "--pause",
        default="",
        metavar="F:R",
        help="a fraction F of the nodes stall for R rounds at a time, then resume",
    )
    faults.add_argument(
        "--writes",
        type=float,
        default=1.0,
        help="fresh writes per round over the cluster (default 1)",
    )
    faults.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per configuration instead of a table",
    )
    args = parser.parse_args(argv)
    low, high = (float(x) for x in args.latency.split(","))
    log = _stderr if args.progress else None
    try:
        pause = parse_pause(args.pause) if args.pause else (0.0, 0.0)
    except ValueError as e:
        parser.error(str(e))
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be 1 or more, got {args.rounds}")
    if args.kill < 0:
        parser.error(f"--kill must be 0 or more, got {args.kill}")
    if args.overload:
        print(OVERLOAD_HEADER)
        print("|" + "---|" * (OVERLOAD_HEADER.count("|") - 1))
        for n in (int(x) for x in args.n.split(",")):
            for rate in (float(x) for x in args.overload.split(",")):
                config = Config(n=n, interval=args.interval, seed=args.seed)
                print(overload_row(overload(config, rate, 20 * rate)), flush=True)
        return 0
    scenario = None
    if args.rounds is not None or args.kill or args.pause or args.json:
        scenario = Scenario(
            rounds=100 if args.rounds is None else args.rounds,
            kills=args.kill,
            pause_fraction=pause[0],
            pause_rounds=pause[1],
            writes_per_round=args.writes,
        )
        if not args.json:
            print(SCENARIO_HEADER)
            print("|" + "---|" * (SCENARIO_HEADER.count("|") - 1))
    else:
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
                    fanout=args.fanout,
                    failure_detector=detector(args.failure_detector, scenario),
                    probe_interval=args.probe_interval,
                    seed=args.seed,
                )
                if scenario is None:
                    print(row(measure(config, args.trials, progress=log)), flush=True)
                    continue
                figures = run(Simulation(config), scenario, progress=log)
                if args.json:
                    print(json.dumps(figures), flush=True)
                else:
                    print(scenario_row(figures), flush=True)
    return 0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
