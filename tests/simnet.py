"""A small in-process cluster on a virtual clock: the sans-IO core, no sockets.

Each node is the very Engine the Server drives (pokan.core.engine); datagrams go through
the real codec and an in-memory network that can lose them (seeded) or cut
links, and arrive after a fixed latency on a ``task.Clock``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from twisted.internet import task
from twisted.trial import unittest

from pokan import wire
from pokan.core.engine import Engine, Output
from pokan.core.node import Address, GossipNode
from pokan.core.settings import EngineSettings
from pokan.core.state import Batch, ClusterState, NodeInfo


class SimNode:
    def __init__(self, sim: SimCluster, index: int, generation: int = 1) -> None:
        self.sim = sim
        self.index = index
        self.address: Address = (f"10.0.{index // 250}.{index % 250 + 1}", 5555)
        info = NodeInfo(
            f"{self.address[0]}:5555", generation, self.address[0], 5555, 5555
        )
        settings = EngineSettings(
            gossip_interval=sim.interval, fanout=sim.fanout, **sim.options
        )
        self.engine = Engine(settings, info, random.Random(sim.seed * 1000 + index))
        self.sent = 0
        self.events: list[tuple[float, str, str]] = []
        self.running = True
        self.call: task.DelayedCall | None = None
        #: the detector's timer (a probe or a timeout due)
        self.due: task.DelayedCall | None = None

    @property
    def id(self) -> str:
        return self.state.me.info.id

    @property
    def state(self) -> ClusterState:
        return self.engine.state

    @property
    def node(self) -> GossipNode:
        return self.engine.node

    def carry_out(self, output: Output) -> None:
        """Send what the engine asks, note its transitions and batch; then
        set the detector's timer, as the Server's Pacing does."""
        self._carry_out(output)
        self._reschedule()

    def _reschedule(self) -> None:
        due = self.engine.next_due() if self.running else None
        current = self.due if self.due is not None and self.due.active() else None
        if due is None:
            if current is not None:
                current.cancel()
            return
        delay = max(0.005, due - self.sim.clock.seconds())
        if current is not None:
            current.reset(delay)
        else:
            self.due = self.sim.clock.callLater(delay, self._poll)

    def _poll(self) -> None:
        self.due = None
        if self.running:
            self.carry_out(self.engine.poll(self.sim.clock.seconds()))

    def _carry_out(self, output: Output) -> None:
        for out in output.sends:
            self.sim.send(self.address, out.address, out.message)
        now = self.sim.clock.seconds()
        for event, node in output.transitions:
            self.events.append((now, event, node.info.id))
        self.sim.on_batch(self, output.batch)

    def write(self, key: str, value: str) -> None:
        """Store one of this node's keys, pushing it at once as the Server does."""
        now = self.sim.clock.seconds()
        self.carry_out(self.engine.write(key, value, now, now))

    def round(self) -> None:
        if not self.running:
            return
        self.carry_out(self.engine.tick(self.sim.clock.seconds()))
        jitter = self.sim.rng.uniform(-self.sim.jitter, self.sim.jitter)
        self.call = self.sim.clock.callLater(
            self.sim.interval * (1 + jitter), self.round
        )

    def receive(self, message: wire.Message, source: Address) -> None:
        if not self.running:
            return
        now = self.sim.clock.seconds()
        self.carry_out(self.engine.receive(message, source, None, now))

    def status_of(self, other: SimNode) -> str | None:
        node = self.state.nodes.get(other.id)
        return None if node is None else node.status


class SimCluster:
    def __init__(
        self,
        n: int,
        interval: float = 1.0,
        loss: float = 0.0,
        seed: int = 1,
        latency: float = 0.001,
        jitter: float = 0.0,
        fanout: int = 3,
        **options: float,
    ) -> None:
        self.clock = task.Clock()
        self.fanout = fanout
        self.interval = interval
        self.loss = loss
        self.seed = seed
        self.latency = latency
        self.jitter = jitter
        self.options = options
        self.rng = random.Random(seed)
        self.cut: set[frozenset[Address]] = set()
        self.sent = 0
        self.on_batch: Callable[[SimNode, Batch], None] = lambda node, batch: None
        self.nodes = [SimNode(self, i) for i in range(n)]
        self.by_address = {n.address: n for n in self.nodes}
        for node in self.nodes:
            self.join(node)

    def join(self, node: SimNode) -> None:
        """A full sync with node 0 (both ways), then gossip rounds."""
        seed = self.nodes[0]
        if node is not seed:
            now = self.clock.seconds()
            node.carry_out(node.engine.merge_full(seed.engine.full_state(), now))
            seed.carry_out(seed.engine.merge_full(node.engine.full_state(), now))
        phase = self.rng.uniform(0, self.interval)
        node.call = self.clock.callLater(phase, node.round)

    def send(self, source: Address, to: Address, message: wire.Message) -> None:
        self.sent += 1
        self.by_address[source].sent += 1
        if frozenset((source, to)) in self.cut:
            return
        if self.loss and self.rng.random() < self.loss:
            return
        data = wire.encode(message, wire.DEFAULT_MAX_DATAGRAM - wire.SEAL_HEADROOM)
        target = self.by_address.get(to)
        if target is not None:
            self.clock.callLater(
                self.latency, target.receive, wire.decode(data), source
            )

    def kill(self, node: SimNode) -> None:
        node.running = False
        for call in (node.call, node.due):
            if call is not None and call.active():
                call.cancel()

    def leave(self, node: SimNode) -> None:
        for out in node.engine.goodbye(self.clock.seconds()):
            self.send(node.address, out.address, out.message)
        self.kill(node)

    def restart(self, node: SimNode, generation: int) -> SimNode:
        self.kill(node)
        fresh = SimNode(self, node.index, generation)
        self.nodes[node.index] = fresh
        self.by_address[fresh.address] = fresh
        self.join(fresh)
        return fresh

    def partition(self, left: list[SimNode], right: list[SimNode]) -> None:
        self.cut = {frozenset((a.address, b.address)) for a in left for b in right}

    def heal(self) -> None:
        self.cut = set()

    def run(self, seconds: float, step: float = 0.01) -> None:
        steps = round(seconds / step)
        for _ in range(steps):
            self.clock.advance(step)

    def run_until(
        self, condition: Callable[[], bool], limit: float, step: float = 0.01
    ) -> float | None:
        """Advance until ``condition`` holds; the time taken, None if never."""
        start = self.clock.seconds()
        while self.clock.seconds() - start < limit:
            if condition():
                return self.clock.seconds() - start
            self.clock.advance(step)
        return self.clock.seconds() - start if condition() else None

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes if n.running]

    def kill_until_convicted(self, victim: SimNode, limit: float) -> float | None:
        """Kill ``victim``; the time until every live node holds it dead."""
        self.kill(victim)
        return self.run_until(
            lambda: all(n.status_of(victim) == "dead" for n in self.live()), limit
        )

    def events_about(self, node: SimNode) -> Counter[str]:
        """How many times each event about ``node`` fired, on all nodes."""
        return Counter(
            e for n in self.nodes for _, e, who in n.events if who == node.id
        )


def assert_convicted_once_by_all(
    test: unittest.TestCase, sim: SimCluster, victim: SimNode, limit: float
) -> None:
    """Kill ``victim``: every other node holds it dead within ``limit`` s, and
    5 s later each has fired peer_dead about it once and peer_alive never."""
    test.assertIsNotNone(sim.kill_until_convicted(victim, limit))
    sim.run(5)
    counts = sim.events_about(victim)
    test.assertEqual(counts["peer_dead"], len(sim.nodes) - 1)
    test.assertEqual(counts["peer_alive"], 0)
