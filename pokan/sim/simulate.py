"""N nodes in one process on a virtual clock: ``python -m pokan.simulate``.

Every simulated node is the Engine a real node runs (:class:`pokan.core.engine.Engine`,
the very object the Server drives); every message between them is
encoded with :mod:`pokan.wire` and decoded again on arrival, so the bytes
counted are the bytes a real node would send. The network delays, drops and
partitions datagrams; the clock is a heap of events. Everything random comes
from one seed, so a run is reproducible.

Big clusters start converged: every node's state is built directly (every
node knows every node and its one key) rather than gossiped in, then the
simulator measures what matters, the spread of one fresh write and of one
join.
"""

from __future__ import annotations

import heapq
import math
import random
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from pokan import wire
from pokan.core.detection import FailureDetector
from pokan.core.engine import Engine
from pokan.core.node import Address, Outgoing
from pokan.core.rumours import RumourQueue
from pokan.core.settings import EngineSettings
from pokan.core.state import Entry, NodeInfo
from pokan.sim.nodetection import NoDetection
from pokan.sim.shared import SharedNodeState, SharingClusterState

#: rounds after which a trial gives up (counted as not converged)
MAX_ROUNDS = 200


@attrs.frozen
class Config:
    """The knobs of one simulated cluster."""

    n: int = 100
    interval: float = 1.0
    max_datagram: int = wire.DEFAULT_MAX_DATAGRAM
    #: probability that a datagram is lost
    loss: float = 0.0
    #: one-way latency, uniform in (low, high) seconds
    latency: tuple[float, float] = (0.001, 0.005)
    #: split the cluster in this many groups (1: no partition) ...
    partitions: int = 1
    #: ... for this many rounds at the start of every trial
    partition_rounds: float = 0.0
    #: peers a fresh write is pushed to at once (0: rounds only)
    push_fanout: int = 3
    retransmit_mult: int = 4
    #: retry an exchange whose SynAck did not come within half a round
    retry: bool = True
    seed: int = 1
    #: live peers each node gossips with per round
    fanout: int = 1
    #: the Engine's failure detector ("phi"); None: none (gossip only)
    failure_detector: str | None = None


#: the wall clock of the simulation's start: generations are microseconds
#: since the epoch, checked against it (see pokan.core.plausible)
EPOCH = 1_700_000_000.0


def node_info(index: int) -> NodeInfo:
    """A node address like a real one: 10.x.y.z:5555."""
    address = f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"
    return NodeInfo(f"{address}:5555", 1_700_000_000_000_000, address, 5555, 5555)


class Meter:
    """Bytes each node sent, in total and in the busiest round."""

    def __init__(self) -> None:
        self.total: dict[int, int] = {}
        self.this_round: dict[int, int] = {}
        self.round_max = 0
        self.datagrams = 0

    def count(self, sender: int, size: int) -> None:
        self.total[sender] = self.total.get(sender, 0) + size
        self.this_round[sender] = self.this_round.get(sender, 0) + size
        self.datagrams += 1

    def end_round(self) -> None:
        if self.this_round:
            self.round_max = max(self.round_max, max(self.this_round.values()))
        self.this_round = {}


class Simulation:
    """N gossiping nodes, a virtual clock and a lossy network between them."""

    def __init__(self, config: Config, converged: bool = True) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.nodes: list[Engine] = []
        self.by_address: dict[Address, int] = {}
        self.meter = Meter()
        self.dropped = 0
        self.group: list[int] = []
        self.partitioned_until = -1.0
        #: called with the index of a node after it handled a message
        self.on_receive: Callable[[int], None] | None = None
        infos = [node_info(i) for i in range(config.n)]
        for info in infos:
            self._add_node(info)
        if converged:
            self._converge(infos)
        self._schedule(config.interval, self._end_round)

    # -- building the cluster ---------------------------------------------------

    def _add_node(self, info: NodeInfo) -> int:
        index = len(self.nodes)
        config = self.config
        state = SharingClusterState(info)
        state.write("status", "up", 1.0)
        rumours = RumourQueue(
            retransmit_mult=config.retransmit_mult,
            push_fanout=config.push_fanout,
        )
        settings = EngineSettings(
            gossip_interval=config.interval,
            fanout=config.fanout,
            max_datagram=config.max_datagram,
            failure_detector=config.failure_detector or "phi",
        )
        detector: FailureDetector | None = (
            NoDetection(state) if config.failure_detector is None else None
        )
        node = Engine(
            settings,
            info,
            random.Random(self.rng.getrandbits(64)),
            state=state,
            rumours=rumours,
            detector=detector,
        )
        self.nodes.append(node)
        self.by_address[(info.address, info.udp_port)] = index
        self.group.append(index % max(1, self.config.partitions))
        phase = self.rng.uniform(0, self.config.interval)
        self._schedule(self.now + phase, self._tick, index)
        return index

    def _converge(self, infos: Sequence[NodeInfo]) -> None:
        """Give every node the state it would hold after converging.

        The records of that state are built once and shared by every node
        (copy-on-write, :mod:`pokan.sim.shared`: a node's state copies a
        record before changing it), as are the sorted ids: memory grows with
        the records that changed, not with N x N.
        """
        entries = {"status": Entry("up", 1, 1.0)}
        base = {info.id: SharedNodeState(info, entries, 1, 0) for info in infos}
        ids = sorted(base)
        for node in self.nodes:
            state = node.state
            me = state.me
            nodes = {me.info.id: me}
            nodes.update(base)
            nodes[me.info.id] = me
            state.nodes = nodes
            state._sorted_ids = ids

    # -- the clock ----------------------------------------------------------------

    def _schedule(self, at: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, fn, args))

    def run_until(self, done: Callable[[], bool], deadline: float) -> bool:
        """Run events until ``done()`` or the virtual ``deadline``."""
        events = self._events
        while events and not done():
            at, _, fn, args = events[0]
            if at > deadline:
                self.now = deadline
                return False
            heapq.heappop(events)
            self.now = at
            fn(*args)
        return done()

    def _tick(self, index: int) -> None:
        self._send_all(index, self.nodes[index].tick(self.now).sends)
        self._schedule(self.now + self.config.interval, self._tick, index)
        if self.config.retry:
            self._schedule(self.now + self.config.interval / 2, self._retry, index)

    def _retry(self, index: int) -> None:
        self._send_all(index, self.nodes[index].retry(self.now).sends)

    def _end_round(self) -> None:
        self.meter.end_round()
        self._schedule(self.now + self.config.interval, self._end_round)

    # -- the network --------------------------------------------------------------

    def _send_all(self, sender: int, outgoing: Sequence[Outgoing]) -> None:
        for out in outgoing:
            self.send(sender, out.address, out.message)

    def send(self, sender: int, address: Address, message: wire.Message) -> None:
        """Encode, count, then lose, block or deliver one datagram."""
        limit = self.config.max_datagram - wire.SEAL_HEADROOM
        data = wire.encode(message, limit)
        self.meter.count(sender, len(data))
        target = self.by_address.get(address)
        if target is None:
            return
        if self.config.loss and self.rng.random() < self.config.loss:
            self.dropped += 1
            return
        if (
            self.now < self.partitioned_until
            and self.group[sender] != self.group[target]
        ):
            self.dropped += 1
            return
        low, high = self.config.latency
        source = address_of(self.nodes[sender])
        self._schedule(
            self.now + self.rng.uniform(low, high), self._deliver, target, data, source
        )

    def _deliver(self, target: int, data: bytes, source: Address) -> None:
        message = wire.decode(data, wire.DATAGRAM_TYPES)
        node = self.nodes[target]
        output = node.receive(message, source, None, self.now, wall=EPOCH + self.now)
        if self.on_receive is not None:
            self.on_receive(target)
        self._send_all(target, output.sends)

    # -- what a trial does --------------------------------------------------------

    def write(self, index: int, key: str, value: str) -> int:
        """A local write on node ``index``; its version."""
        node = self.nodes[index]
        self._send_all(index, node.write(key, value, self.now + 1.0, self.now).sends)
        return node.state.me.version

    def join(self) -> int:
        """A new node that syncs its full state with one node (TCP), then gossips."""
        index = self._add_node(node_info(len(self.nodes)))
        seed = self.rng.randrange(index)
        joiner, peer = self.nodes[index], self.nodes[seed]
        hello = wire.decode(
            wire.encode(wire.Hello(joiner.state.me.info.id, joiner.full_state()))
        )
        assert isinstance(hello, wire.Hello)
        wall = EPOCH + self.now
        self._send_all(seed, peer.merge_full(hello.deltas, self.now, wall=wall).sends)
        welcome = wire.decode(
            wire.encode(wire.Welcome(peer.state.me.info.id, peer.full_state()))
        )
        assert isinstance(welcome, wire.Welcome)
        self._send_all(
            index, joiner.merge_full(welcome.deltas, self.now, wall=wall).sends
        )
        # the seed pushes the joiner's news at once (the Server waits a round)
        self._send_all(seed, peer.push().sends)
        return index

    def partition(self, rounds: float) -> None:
        if self.config.partitions > 1 and rounds > 0:
            self.partitioned_until = self.now + rounds * self.config.interval

    def spread(self, informed: Callable[[Engine], bool], start: float) -> float | None:
        """Rounds until ``informed`` holds on every node; None if it never did."""
        pending = {i for i, node in enumerate(self.nodes) if not informed(node)}

        def check(index: int) -> None:
            if index in pending and informed(self.nodes[index]):
                pending.discard(index)

        self.on_receive = check
        deadline = start + MAX_ROUNDS * self.config.interval
        done = self.run_until(lambda: not pending, deadline)
        self.on_receive = None
        return (self.now - start) / self.config.interval if done else None


def address_of(node: Engine) -> Address:
    info = node.state.me.info
    return (info.address, info.udp_port)


@attrs.frozen
class Figures:
    """What a run measured."""

    config: Config
    trials: int
    update_rounds: list[float]
    join_rounds: list[float]
    failed: int
    bytes_mean: float
    bytes_max: float
    round_max: int
    seconds: float
    #: CPU seconds of this process (wall time is inflated on a loaded machine)
    cpu_seconds: float = 0.0

    @property
    def update_median(self) -> float:
        return statistics.median(self.update_rounds) if self.update_rounds else math.inf

    @property
    def update_p99(self) -> float:
        return percentile(self.update_rounds, 99)

    @property
    def join_median(self) -> float:
        return statistics.median(self.join_rounds) if self.join_rounds else math.inf

    @property
    def join_p99(self) -> float:
        return percentile(self.join_rounds, 99)


def _knows(node_id: str) -> Callable[[Engine], bool]:
    return lambda node: node_id in node.state.nodes


def _rounds(rounds: float | None) -> str:
    return "not converged" if rounds is None else f"{rounds:.2f} rounds"


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, in MB (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (inf for no values)."""
    if not values:
        return math.inf
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def measure(
    config: Config,
    trials: int = 20,
    warmup: int = 3,
    progress: Callable[[str], None] | None = None,
) -> Figures:
    """Run ``trials`` fresh writes, then ``trials`` joins, one after another.

    ``progress``, if given, is called with a line after every trial.
    """
    started, cpu_started = time.monotonic(), time.process_time()

    def report(what: str) -> None:
        if progress is not None:
            progress(
                f"n={config.n} loss={config.loss:g} push={config.push_fanout} "
                f"{what}; virtual {sim.now:.1f}s, "
                f"cpu {time.process_time() - cpu_started:.0f}s, "
                f"peak RSS {peak_rss_mb():.0f} MB"
            )

    sim = Simulation(config)
    interval = config.interval
    report("built")
    sim.run_until(lambda: False, warmup * interval)
    sent_before = sum(sim.meter.total.values())
    meter_start = sim.now
    update_rounds: list[float] = []
    join_rounds: list[float] = []
    failed = 0
    for trial in range(trials):
        # start at a random moment of the round, not in step with anyone
        sim.run_until(lambda: False, sim.now + sim.rng.uniform(0, interval))
        writer = sim.rng.randrange(len(sim.nodes))
        key = f"trial-{trial}"
        owner = sim.nodes[writer].state.me.info.id
        start = sim.now
        sim.partition(config.partition_rounds)
        version = sim.write(writer, key, f"value {trial}")

        def has_write(
            node: Engine, owner: str = owner, key: str = key, version: int = version
        ) -> bool:
            known = node.state.nodes.get(owner)
            entry = known.entries.get(key) if known is not None else None
            return entry is not None and entry.version >= version

        rounds = sim.spread(has_write, start)
        report(f"write {trial}: {_rounds(rounds)}")
        if rounds is None:
            failed += 1
        else:
            update_rounds.append(rounds)
    elapsed_rounds = (sim.now - meter_start) / interval
    sent = sum(sim.meter.total.values()) - sent_before
    per_node = [t / elapsed_rounds for t in sim.meter.total.values()]
    bytes_mean = sent / elapsed_rounds / len(sim.nodes)
    bytes_max = max(per_node)
    for trial in range(trials):
        sim.run_until(lambda: False, sim.now + sim.rng.uniform(0, interval))
        start = sim.now
        sim.partition(config.partition_rounds)
        joiner = sim.join()
        new_id = sim.nodes[joiner].state.me.info.id
        rounds = sim.spread(_knows(new_id), start)
        report(f"join {trial}: {_rounds(rounds)}")
        if rounds is None:
            failed += 1
        else:
            join_rounds.append(rounds)
    return Figures(
        config,
        trials,
        update_rounds,
        join_rounds,
        failed,
        bytes_mean,
        bytes_max,
        sim.meter.round_max,
        time.monotonic() - started,
        time.process_time() - cpu_started,
    )


HEADER = (
    "| N | loss | push | update rounds median | p99 | join rounds median | p99 "
    "| bytes/node/round mean | max | busiest node-round | failed | wall s | cpu s |"
)


def row(f: Figures) -> str:
    c = f.config
    return (
        f"| {c.n} | {c.loss:.0%} | {c.push_fanout} | {f.update_median:.2f} "
        f"| {f.update_p99:.2f} | {f.join_median:.2f} | {f.join_p99:.2f} "
        f"| {f.bytes_mean:.0f} | {f.bytes_max:.0f} | {f.round_max} | {f.failed} "
        f"| {f.seconds:.0f} | {f.cpu_seconds:.0f} |"
    )


def _rule() -> str:
    return "|" + "---|" * (HEADER.count("|") - 1)
