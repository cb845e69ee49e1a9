"""N nodes in one process on a virtual clock: ``python -m pokan.simulate``.

Every simulated node is a full node's sans-IO core, the very
:class:`pokan.core.engine.Engine` a Server drives (gossip, failure detection,
GC); every message between them is
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
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from pokan import wire
from pokan.core.detection import FailureDetector
from pokan.core.engine import Engine, Output
from pokan.core.node import Address, Outgoing
from pokan.core.rumours import RumourQueue
from pokan.core.settings import EngineSettings
from pokan.core.state import Entry, NodeInfo
from pokan.sim.nodetection import NoDetection
from pokan.sim.shared import SharedNodeState, SharingClusterState
from pokan.sim.watch import peak_rss_mb, percentile

#: rounds after which a trial gives up (counted as not converged)
MAX_ROUNDS = 200
#: datagrams a stalled node's socket holds; more are lost (about 200 KB)
BACKLOG_DATAGRAMS = 150
#: the wall clock of the simulation's start: generations are microseconds
#: since the epoch, checked against it (see pokan.core.plausible)
EPOCH = 1_700_000_000.0


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
    #: live peers each round's exchange goes to (the simulator's figures
    #: have always been for 1; a Server's default is 3)
    fanout: int = 1
    #: the Engine's failure detector ("phi"...); None: none, the gossip alone
    #: (:mod:`pokan.sim.nodetection`)
    failure_detector: str | None = None
    #: SWIM's probe period in seconds; None: half the interval, as the
    #: simulator's figures were measured (a Server's default is 2 s at most
    #: intervals: fewer wakeups for an idle process)
    probe_interval: float | None = None
    seed: int = 1


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
    """N full nodes (Engines), a virtual clock and a lossy network between them.

    The clock is a heap of timed events. A message is encoded once, however
    many peers it goes to (its size counted for each), and decoded once, on
    its first arrival; every target gets the same decoded message. Nodes can
    be killed (:meth:`kill`: silent for good) and stalled (:meth:`pause`:
    nothing processed until a time, then the round that was due and the
    datagrams that queued up meanwhile, as after a real process's stall).
    """

    def __init__(self, config: Config, converged: bool = True) -> None:
        built, cpu_built = time.monotonic(), time.process_time()
        self.config = config
        self.rng = random.Random(config.seed)
        #: the faults' own randomness: planning them changes nothing else
        self.fault_rng = random.Random(config.seed + 0x5EED)
        self.settings = EngineSettings.checked(
            gossip_interval=config.interval,
            # every node gossips every round, as the targets were measured
            idle_interval=config.interval,
            fanout=config.fanout,
            probe_interval=(
                config.probe_interval
                if config.probe_interval is not None
                else config.interval / 2
            ),
            max_datagram=config.max_datagram,
            # no detector: heartbeats on, as the gossip was always measured
            failure_detector=config.failure_detector or "phi",
        )
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.nodes: list[Engine] = []
        self.by_address: dict[Address, int] = {}
        #: node id -> index
        self.index_of: dict[str, int] = {}
        self.meter = Meter()
        self.dropped = 0
        #: full syncs the engines asked for (resets after GC; not carried out)
        self.syncs_asked = 0
        self.group: list[int] = []
        self.partitioned_until = -1.0
        self.killed: set[int] = set()
        #: stalled node -> when it resumes
        self.stalled_until: dict[int, float] = {}
        #: datagrams that arrived at a stalled node, handled when it resumes
        self._backlog: dict[int, list[tuple[list[Any], Address]]] = {}
        #: stalled nodes whose round fell due while stalled
        self._round_due: set[int] = set()
        #: called with the index of a node after it handled a message
        self.on_receive: Callable[[int], None] | None = None
        #: called with a node's index and every Output it produced
        self.on_output: Callable[[int, Output], None] | None = None
        infos = [node_info(i) for i in range(config.n)]
        for info in infos:
            self._add_node(info)
        if converged:
            self._converge(infos)
        self._schedule(config.interval, self._end_round)
        self.build_wall_s = time.monotonic() - built
        self.build_cpu_s = time.process_time() - cpu_built

    # -- building the cluster ---------------------------------------------------

    def _add_node(self, info: NodeInfo) -> int:
        index = len(self.nodes)
        state = SharingClusterState(info)
        state.write("status", "up", 1.0)
        rumours = RumourQueue(
            retransmit_mult=self.config.retransmit_mult,
            push_fanout=self.config.push_fanout,
        )
        detector: FailureDetector | None = (
            NoDetection(state) if self.config.failure_detector is None else None
        )
        engine = Engine(
            self.settings,
            info,
            random.Random(self.rng.getrandbits(64)),
            state=state,
            rumours=rumours,
            detector=detector,
        )
        self.nodes.append(engine)
        self.by_address[(info.address, info.udp_port)] = index
        self.index_of[info.id] = index
        self.group.append(index % max(1, self.config.partitions))
        phase = self.rng.uniform(0, self.config.interval)
        engine.start(self.now)
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
        # every node counts as announced alive already (one shared mapping):
        # its first transition is then an event (peer_dead...), not silence
        announced = {info.id: (info.generation, "alive") for info in infos}
        for node in self.nodes:
            adopt_shared = getattr(node.detector, "adopt_shared", None)
            if adopt_shared is not None:
                adopt_shared(announced)
            state = node.state
            me = state.me
            nodes = {me.info.id: me}
            nodes.update(base)
            nodes[me.info.id] = me
            state.nodes = nodes
            state._sorted_ids = ids

    # -- the clock ----------------------------------------------------------------

    def schedule(self, at: float, fn: Callable[..., None], *args: Any) -> None:
        """Call ``fn(*args)`` at virtual time ``at``."""
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, fn, args))

    _schedule = schedule

    def run_until(self, done: Callable[[], bool], deadline: float) -> bool:
        """Run events until ``done()`` or the virtual ``deadline``."""
        events = self._events
        pop = heapq.heappop
        while events and not done():
            at, _, fn, args = events[0]
            if at > deadline:
                self.now = deadline
                return False
            pop(events)
            self.now = at
            fn(*args)
        return done()

    def _tick(self, index: int) -> None:
        if index in self.killed:
            return
        if index in self.stalled_until:
            self._round_due.add(index)
            return
        self._carry_out(index, self.nodes[index].tick(self.now))
        interval = self.config.interval
        self._schedule(self.now + interval, self._tick, index)
        if self.config.retry:
            self._schedule(self.now + interval / 2, self._retry, index)

    def _retry(self, index: int) -> None:
        if index in self.killed or index in self.stalled_until:
            return
        self._carry_out(index, self.nodes[index].retry(self.now))

    def _end_round(self) -> None:
        self.meter.end_round()
        self._schedule(self.now + self.config.interval, self._end_round)

    # -- faults -------------------------------------------------------------------

    def kill(self, index: int) -> None:
        """Node ``index`` goes silent for good (kill -9: no goodbye)."""
        self.killed.add(index)
        self.stalled_until.pop(index, None)
        self._backlog.pop(index, None)

    def pause(self, index: int, until: float) -> None:
        """Node ``index`` handles nothing until ``until``, then catches up."""
        if index in self.killed:
            return
        self.stalled_until[index] = until
        self._schedule(until, self._resume, index)

    def _resume(self, index: int) -> None:
        if self.stalled_until.get(index, math.inf) > self.now:
            return  # killed meanwhile, or stalled again for longer
        del self.stalled_until[index]
        if index in self._round_due:
            # the round's timer fires late, before the socket is read
            self._round_due.discard(index)
            self._tick(index)
        for holder, source in self._backlog.pop(index, ()):
            self._deliver(index, holder, source)

    # -- the network --------------------------------------------------------------

    def _carry_out(self, index: int, output: Output) -> None:
        """Send what an Engine call produced; tell the watchers."""
        if output.sends:
            self._send_all(index, output.sends)
        if output.syncs:
            self.syncs_asked += len(output.syncs)
        if self.on_output is not None:
            self.on_output(index, output)

    def _send_all(self, sender: int, outgoing: Sequence[Outgoing]) -> None:
        encoded: dict[int, list[Any]] = {}
        for out in outgoing:
            message = out.message
            holder = encoded.get(id(message))
            if holder is None:
                holder = encoded[id(message)] = [self._encode(message), None]
            self._transmit(sender, out.address, holder)

    def _encode(self, message: wire.Message) -> bytes:
        return wire.encode(message, self.config.max_datagram - wire.SEAL_HEADROOM)

    def send(self, sender: int, address: Address, message: wire.Message) -> None:
        """Encode, count, then lose, block or deliver one datagram."""
        self._transmit(sender, address, [self._encode(message), None])

    def _transmit(self, sender: int, address: Address, holder: list[Any]) -> None:
        """Count one datagram (``holder``: its bytes, and its decoded message
        once decoded), then lose, block or deliver it."""
        self.meter.count(sender, len(holder[0]))
        target = self.by_address.get(address)
        if target is None or target in self.killed:
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
            self.now + self.rng.uniform(low, high),
            self._deliver,
            target,
            holder,
            source,
        )

    def _deliver(self, target: int, holder: list[Any], source: Address) -> None:
        if target in self.killed:
            return
        if target in self.stalled_until:
            backlog = self._backlog.setdefault(target, [])
            if len(backlog) < BACKLOG_DATAGRAMS:
                backlog.append((holder, source))
            else:
                self.dropped += 1  # the socket's buffer is full
            return
        message = holder[1]
        if message is None:
            message = holder[1] = wire.decode(holder[0], wire.DATAGRAM_TYPES)
        node = self.nodes[target]
        output = node.receive(
            message, source, len(holder[0]), self.now, wall=EPOCH + self.now
        )
        self._carry_out(target, output)
        if self.on_receive is not None:
            self.on_receive(target)

    # -- what a trial does --------------------------------------------------------

    def write(self, index: int, key: str, value: str) -> int:
        """A local write on node ``index``; its version."""
        node = self.nodes[index]
        self._carry_out(index, node.write(key, value, self.now + 1.0, self.now))
        return node.state.me.version

    def join(self) -> int:
        """A new node that syncs its full state with one node (TCP), then gossips."""
        index = self._add_node(node_info(len(self.nodes)))
        seed = self.rng.randrange(index)
        joiner, peer = self.nodes[index], self.nodes[seed]
        wall = EPOCH + self.now
        hello = wire.decode(wire.encode(wire.Hello(joiner.id, joiner.full_state())))
        assert isinstance(hello, wire.Hello)
        self._carry_out(seed, peer.merge_full(hello.deltas, self.now, wall=wall))
        welcome = wire.decode(wire.encode(wire.Welcome(peer.id, peer.full_state())))
        assert isinstance(welcome, wire.Welcome)
        self._carry_out(index, joiner.merge_full(welcome.deltas, self.now, wall=wall))
        # the seed pushes the joiner's news at once (the Server waits a round)
        self._carry_out(seed, peer.push())
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
