"""One measured run of a simulated cluster: writes, kills and stalls over R rounds.

``python -m pokan.simulate --rounds R --kill K --pause F:R' --json``: a
converged cluster of full nodes (the Engine, failure detection included) runs
for R rounds on the simulator's lossy network. From the end of the warm-up
on, nodes write fresh keys (one a round by default, each on a random running
node), K random nodes go silent for good at random times in the first two
thirds of the run, and a fraction F of the nodes stall again and again, R'
rounds at a time (:func:`pokan.sim.faults.plan_pauses`). Measured:

- ``update_rounds``: each write, from the write until every running node
  holds it;
- ``detect_rounds``: each kill, from the kill until every running node holds
  the killed node dead;
- ``false_convictions``: (observer, node) pairs where a running observer
  convicted (``peer_dead``) a node that was neither killed nor stalled at that
  moment; ``convictions_of_paused`` counts those of a node while it stalled;
- ``bytes_per_node_round``: what each node sent (every datagram encoded, so
  real bytes) per round it ran, mean and max over the nodes;
- ``cpu_s``: the CPU seconds of the whole configuration, building included.

A node that stalls, or dies, is no longer waited for by the spreads under
way (it cannot learn anything until it resumes). After the R rounds the run
goes on, with no new write or fault, until every spread is complete, for at
most :data:`DRAIN_ROUNDS` rounds; what is still incomplete then is counted
in ``unfinished`` and makes the p99 ``null``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from pokan.sim import faults
from pokan.sim.watch import Convictions, Spreads, peak_rss_mb, percentile

if TYPE_CHECKING:
    from pokan.core.engine import Output
    from pokan.sim.simulate import Simulation

#: rounds a run may go on past its last round for spreads still under way
DRAIN_ROUNDS = 30


@attrs.frozen
class Scenario:
    """What happens to a cluster during one measured run."""

    rounds: int = 100
    kills: int = 0
    #: the share of nodes that stall, and for how many rounds at a time
    pause_fraction: float = 0.0
    pause_rounds: float = 0.0
    #: fresh writes per round, over the whole cluster
    writes_per_round: float = 1.0
    warmup: int = 3


def _stats(values: list[float], unfinished: int) -> dict[str, Any]:
    def rounded(x: float) -> float | None:
        return None if math.isinf(x) else round(x, 2)

    p99 = math.inf if unfinished else percentile(values, 99)
    return {
        "p50": rounded(percentile(values, 50)),
        "p99": rounded(p99),
        "count": len(values),
        "unfinished": unfinished,
    }


def run(
    sim: Simulation,
    scenario: Scenario,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` on a built :class:`~pokan.sim.simulate.Simulation`;
    the figures as one JSON-ready dict.

    ``progress``, if given, is called with a line every 10 rounds.
    """
    started, cpu_started = time.monotonic(), time.process_time()
    config = sim.config
    interval = config.interval
    n = len(sim.nodes)
    rng = sim.fault_rng
    warm = scenario.warmup * interval
    end = scenario.rounds * interval
    pauses = faults.plan_pauses(
        rng, n, scenario.pause_fraction, scenario.pause_rounds * interval, warm, end
    )
    kills = faults.plan_kills(
        rng,
        n,
        scenario.kills,
        warm,
        warm + (end - warm) * 2 / 3,
        spare={p.index for p in pauses},
    )
    stalled: set[int] = set()
    killed: set[int] = set()
    spreads = Spreads(interval)
    convictions = Convictions(killed, stalled.__contains__)
    index_of = sim.index_of

    def running() -> list[int]:
        return [i for i in range(n) if i not in killed and i not in stalled]

    def on_output(index: int, output: Output) -> None:
        now = sim.now
        for event, node in output.transitions:
            other = index_of.get(node.info.id)
            if other is not None:
                convictions.transition(index, event, other, now)
        spreads.check(index, now)

    sim.on_output = on_output

    def kill(index: int) -> None:
        sim.kill(index)
        killed.add(index)
        spreads.drop(index, sim.now)
        victim = sim.nodes[index].state.me.info.id

        def holds(j: int) -> bool:
            known = sim.nodes[j].state.nodes.get(victim)
            return known is None or known.status != "alive"

        spreads.start(("kill", index), sim.now, running(), holds)

    def stall(pause: faults.Pause) -> None:
        sim.pause(pause.index, pause.end)
        stalled.add(pause.index)
        spreads.drop(pause.index, sim.now)
        sim.schedule(pause.end, wake, pause.index)

    def wake(index: int) -> None:
        stalled.discard(index)
        convictions.resumed_at[index] = sim.now

    writes = 0

    def write() -> None:
        nonlocal writes
        choices = running()
        index = choices[rng.randrange(len(choices))]
        key = f"w-{writes}"
        writes += 1
        version = sim.write(index, key, f"value {writes}")
        owner = sim.nodes[index].state.me.info.id

        def holds(j: int) -> bool:
            known = sim.nodes[j].state.nodes.get(owner)
            entry = known.entries.get(key) if known is not None else None
            return entry is not None and entry.version >= version

        spreads.start(("write", key), sim.now, choices, holds)

    for k in kills:
        sim.schedule(k.at, kill, k.index)
    for p in pauses:
        sim.schedule(p.start, stall, p)
    if scenario.writes_per_round > 0:
        at, last = warm, end - 5 * interval
        gap = interval / scenario.writes_per_round
        while at < last:
            sim.schedule(at + rng.uniform(0, gap), write)
            at += gap
    if progress is not None:

        def report() -> None:
            progress(
                f"n={n} loss={config.loss:g} round {sim.now / interval:.0f}:"
                f" {len(killed)} killed, {len(stalled)} stalled,"
                f" {spreads.pending} spreading, {len(convictions.false)} false"
                f" convictions; cpu {time.process_time() - cpu_started:.0f}s,"
                f" peak RSS {peak_rss_mb():.0f} MB"
            )
            sim.schedule(sim.now + 10 * interval, report)

        sim.schedule(0.0, report)
    sim.run_until(lambda: False, warm)
    sent_before = dict(sim.meter.total)
    sim.run_until(lambda: False, end)
    sent = {i: t - sent_before.get(i, 0) for i, t in sim.meter.total.items()}
    sim.run_until(lambda: not spreads.pending, end + DRAIN_ROUNDS * interval)
    killed_at = {k.index: k.at for k in kills}
    per_node = [
        sent.get(i, 0) * interval / (min(end, killed_at.get(i, end)) - warm)
        for i in range(n)
        if killed_at.get(i, end) > warm
    ]
    return {
        "n": n,
        "loss": config.loss,
        "push": config.push_fanout,
        "interval": interval,
        "probe_interval": sim.settings.probe_period,
        "max_datagram": config.max_datagram,
        "rounds": scenario.rounds,
        "kills": scenario.kills,
        "pause": {
            "fraction": scenario.pause_fraction,
            "rounds": scenario.pause_rounds,
            "stalls": len(pauses),
        },
        "seed": config.seed,
        "update_rounds": _stats(
            spreads.rounds.get("write", []), spreads.unfinished("write")
        ),
        "detect_rounds": _stats(
            spreads.rounds.get("kill", []), spreads.unfinished("kill")
        ),
        "false_convictions": len(convictions.false),
        "convictions_of_paused": len(convictions.of_stalled),
        "revived": convictions.revived,
        "false_after_pause": len(convictions.false_after_stall),
        "false_examples": [
            {
                "observer": o,
                "node": v,
                "round": round(t / interval, 2),
                "rounds_since_pause": None if w is None else round(w / interval, 2),
            }
            for o, v, t, w in convictions.examples
        ],
        "bytes_per_node_round": {
            "mean": round(sum(per_node) / len(per_node), 1) if per_node else 0.0,
            "max": round(max(per_node), 1) if per_node else 0.0,
        },
        "dropped": sim.dropped,
        "virtual_rounds": round(sim.now / interval, 2),
        "cpu_s": round(time.process_time() - cpu_started + sim.build_cpu_s, 2),
        "wall_s": round(time.monotonic() - started + sim.build_wall_s, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


SCENARIO_HEADER = (
    "| N | loss | push | rounds | kills | paused | update rounds p50 | p99 "
    "| detect rounds p50 | p99 | false convictions | of paused "
    "| bytes/node/round mean | max | cpu s | peak RSS MB |"
)


def scenario_row(f: dict[str, Any]) -> str:
    """One line of the table ``python -m pokan.simulate --rounds R`` prints."""

    def cell(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    u, d, b = f["update_rounds"], f["detect_rounds"], f["bytes_per_node_round"]
    pause = f["pause"]
    return (
        f"| {f['n']} | {f['loss']:.0%} | {f['push']} | {f['rounds']} | {f['kills']} "
        f"| {pause['fraction']:g}:{pause['rounds']:g} | {cell(u['p50'])} "
        f"| {cell(u['p99'])} | {cell(d['p50'])} | {cell(d['p99'])} "
        f"| {f['false_convictions']} | {f['convictions_of_paused']} "
        f"| {b['mean']:.0f} | {b['max']:.0f} | {f['cpu_s']:.0f} "
        f"| {f['peak_rss_mb']:.0f} |"
    )
