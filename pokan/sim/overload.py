"""The simulator under overload: writes faster than gossip can carry.

Every node writes ``rate`` times per round (one node, the *hot* writer,
``hot_rate`` times) over ``keys`` keys of its own, for ``rounds`` rounds; then
writes stop. Measured while writes go on: how stale each node's copy of each
key is (the age of the oldest write it lacks, in rounds), per owner too, so a
starved owner shows; the rumour backlog. Measured after: the rounds until
every node holds every key's last write.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import attrs

from pokan.sim.simulate import Config, Simulation, percentile


@attrs.frozen
class OverloadFigures:
    config: Config
    rate: float
    hot_rate: float
    staleness: list[float]  # rounds, one sample per (observer, owner, key, round)
    owner_staleness: dict[int, float]  # mean staleness of each owner's keys
    max_backlog: int
    evicted: int
    bytes_mean: float
    converge_rounds: float | None
    seconds: float

    @property
    def starved_ratio(self) -> float:
        """The most stale owner's mean staleness over the median owner's."""
        means = sorted(self.owner_staleness.values())
        median = statistics.median(means)
        return means[-1] / median if median else float("inf")


def overload(
    config: Config,
    rate: float = 2.0,
    hot_rate: float = 20.0,
    rounds: int = 10,
    keys: int = 10,
    observers: int = 10,
    settle_rounds: int = 100,
) -> OverloadFigures:
    """Run the overload scenario on a converged cluster of ``config.n`` nodes."""
    started = time.monotonic()
    sim = Simulation(config)
    interval = config.interval
    n = len(sim.nodes)
    # history[owner][key]: (version, time) of every write, oldest first
    history: list[dict[str, list[tuple[int, float]]]] = [{} for _ in range(n)]

    def write(index: int) -> None:
        key = f"k{sim.rng.randrange(keys)}"
        version = sim.write(index, key, f"{index}@{sim.now:.3f}")
        history[index].setdefault(key, []).append((version, sim.now))

    def schedule_writes(index: int, per_round: float, until: float) -> None:
        at = sim.now
        while True:
            at += sim.rng.expovariate(per_round) * interval
            if at >= until:
                return
            sim._schedule(at, write, index)

    sim.run_until(lambda: False, 2 * interval)
    start = sim.now
    stop = start + rounds * interval
    for index in range(n):
        schedule_writes(index, hot_rate if index == 0 else rate, stop)
    watchers = sim.rng.sample(range(n), min(observers, n))
    staleness: list[float] = []
    per_owner: dict[int, list[float]] = {i: [] for i in range(n)}
    max_backlog = 0
    sent_before = sum(sim.meter.total.values())
    while sim.now < stop:
        sim.run_until(lambda: False, sim.now + interval)
        max_backlog = max(max_backlog, *(len(node.node.rumours) for node in sim.nodes))
        for w in watchers:
            state = sim.nodes[w].state
            for owner in range(n):
                if owner == w:
                    continue
                known = state.nodes[sim.nodes[owner].state.me.info.id].entries
                for key, writes in history[owner].items():
                    mine = known.get(key)
                    have = mine.version if mine is not None else 0
                    lacking = next((t for v, t in writes if v > have), None)
                    age = 0.0 if lacking is None else (sim.now - lacking) / interval
                    staleness.append(age)
                    per_owner[owner].append(age)
    bytes_mean = (sum(sim.meter.total.values()) - sent_before) / rounds / n

    def converged() -> bool:
        for node in sim.nodes:
            for owner in sim.nodes:
                me = owner.state.me
                if (
                    node is not owner
                    and node.state.nodes[me.info.id].entries != me.entries
                ):
                    return False
        return True

    settled = None
    for r in range(settle_rounds):
        if converged():
            settled = float(r)
            break
        sim.run_until(lambda: False, sim.now + interval)
    return OverloadFigures(
        config,
        rate,
        hot_rate,
        staleness,
        {o: statistics.fmean(v) for o, v in per_owner.items() if v},
        max_backlog,
        sum(node.node.rumours.evicted for node in sim.nodes),
        bytes_mean,
        settled,
        time.monotonic() - started,
    )


OVERLOAD_HEADER = (
    "| N | writes/node/round | hot writer | staleness p50 | p90 | p99 | max "
    "| worst owner / median owner | max backlog | evicted | bytes/node/round "
    "| rounds to converge after | wall s |"
)


def overload_row(f: OverloadFigures) -> str:
    s: Sequence[float] = f.staleness
    settle = "never" if f.converge_rounds is None else f"{f.converge_rounds:.0f}"
    return (
        f"| {f.config.n} | {f.rate:g} | {f.hot_rate:g} | {percentile(s, 50):.1f} "
        f"| {percentile(s, 90):.1f} | {percentile(s, 99):.1f} | {max(s):.1f} "
        f"| {f.starved_ratio:.2f} | {f.max_backlog} | {f.evicted} "
        f"| {f.bytes_mean:.0f} | {settle} | {f.seconds:.0f} |"
    )
