"""A network of SWIM detectors alone, on virtual time: for the detector's tests.

Every node holds the same converged membership (no gossip runs: only the
detector's own messages travel), ticks once per interval at its own phase and
polls half an interval later, as the Engine's round and retry do. Datagrams go
through the real codec, are lost with probability ``loss`` and arrive after 1
to 10 ms. Nodes can be killed (silent for ever) or paused (silent, deaf, then
back). It records every node's view changes, so a test can ask when every
live node held a killed one dead, and whether a live node was ever convicted.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

from pokan import wire
from pokan.core.liveness import SwimDetector, SwimSettings, Verdict
from pokan.core.node import Address, address_of
from pokan.core.state import ClusterState, NodeInfo, NodeState


class SwimNet:
    def __init__(
        self,
        n: int,
        loss: float = 0.0,
        seed: int = 1,
        interval: float = 1.0,
        codec: bool = True,
        gossip_fanout: int = 0,
        **options: object,
    ) -> None:
        #: model the gossip's unanswered exchanges as hints (Engine.retry)
        self.gossip_fanout = gossip_fanout
        self.rng = random.Random(seed)
        self.loss = loss
        self.interval = interval
        self.codec = codec
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._order = 0
        infos = [
            NodeInfo(
                f"n{i:05d}",
                1,
                f"10.{i // 62500}.{i // 250 % 250}.{i % 250}",
                5555,
                5555,
            )
            for i in range(n)
        ]
        settings = SwimSettings(interval=interval, **options)  # type: ignore[arg-type]
        self.states: list[ClusterState] = []
        self.detectors: list[SwimDetector] = []
        self.by_address: dict[Address, int] = {}
        ids = sorted(info.id for info in infos)
        for i, info in enumerate(infos):
            state = ClusterState(info)
            for other in infos:
                if other is not info:
                    state.nodes[other.id] = NodeState(other)
            state._sorted_ids = ids
            self.states.append(state)
            self.detectors.append(
                SwimDetector(state, random.Random(seed * 7919 + i), settings)
            )
            self.by_address[(info.address, info.udp_port)] = i
        self.killed: dict[int, float] = {}
        self.paused_until: dict[int, float] = {}
        self._backlog: dict[int, list[tuple[wire.Message, Address, int | None]]] = {}
        #: (time, observer, node) of every conviction
        self.convictions: list[tuple[float, int, int]] = []
        #: convictions of a node never killed nor paused
        self.false: list[tuple[float, int, int]] = []
        #: convictions of a node paused before, made after it resumed (a
        #: conviction due during the pause, decided as its refutation flies)
        self.boundary: list[tuple[float, int, int]] = []
        self.sent = 0
        self.bytes = 0
        for i, detector in enumerate(self.detectors):
            phase = self.rng.uniform(0, interval)
            detector.start(phase)
            self._at(phase, lambda i=i: self._round(i))

    # -- the loop ----------------------------------------------------------------

    def _at(self, when: float, call: Callable[[], None]) -> None:
        self._order += 1
        heapq.heappush(self._events, (when, self._order, call))

    def run_until(self, end: float) -> None:
        while self._events and self._events[0][0] <= end:
            when, _, call = heapq.heappop(self._events)
            self.now = when
            call()
        self.now = end

    def _up(self, i: int) -> bool:
        return i not in self.killed and self.paused_until.get(i, -1.0) <= self.now

    def _round(self, i: int) -> None:
        if i in self.killed:
            return
        self._at(self.now + self.interval, lambda: self._round(i))
        if not self._up(i):
            return
        self._apply(i, self.detectors[i].tick(self.now))
        self._at(self.now + self.interval / 2, lambda: self._poll(i))

    def _poll(self, i: int) -> None:
        if not self._up(i):
            return
        if self.gossip_fanout:
            # the gossip's first exchange of the round (not simulated but
            # for this): unanswered if its peer is down or a datagram was lost
            j = self.rng.randrange(len(self.states))
            answered = self._up(j) and self.rng.random() >= 1 - (1 - self.loss) ** 2
            if j != i and not answered:
                hinted = self.states[j].me.info.id
                self._apply(i, self.detectors[i].hint(hinted, self.now))
        self._apply(i, self.detectors[i].poll(self.now))

    def _apply(self, i: int, verdict: Verdict) -> None:
        for record in verdict.batch.nodes:
            if record.status == "dead":
                j = self.index_of(record.info.id)
                self.convictions.append((self.now, i, j))
                if self._up(j):
                    bucket = self.boundary if j in self.paused_until else self.false
                    bucket.append((self.now, i, j))
        source = address_of(self.states[i].me)
        for out in verdict.sends:
            self.sent += 1
            message = out.message
            if self.codec:
                data = wire.encode(message, wire.DEFAULT_MAX_DATAGRAM)
                self.bytes += len(data)
                message = wire.decode(data, wire.DATAGRAM_TYPES)
            if self.rng.random() < self.loss:
                continue
            j = self.by_address.get(out.address)
            if j is None:
                continue
            delay = self.rng.uniform(0.001, 0.010)
            size = len(wire.encode(message)) if self.codec else None
            self._at(self.now + delay, self._delivery(j, message, source, size))

    def _delivery(
        self, j: int, message: wire.Message, source: Address, size: int | None
    ) -> Callable[[], None]:
        return lambda: self._deliver(j, message, source, size)

    def _deliver(
        self, j: int, message: wire.Message, source: Address, size: int | None
    ) -> None:
        if j in self.killed:
            return
        if not self._up(j):  # a stalled process's socket keeps its datagrams
            self._backlog.setdefault(j, []).append((message, source, size))
            return
        self._apply(j, self.detectors[j].receive(message, source, size, self.now))

    # -- faults and questions ----------------------------------------------------

    def index_of(self, node_id: str) -> int:
        return int(node_id[1:])

    def kill(self, i: int) -> None:
        self.killed[i] = self.now

    def pause(self, i: int, seconds: float) -> None:
        """Node ``i`` handles nothing for ``seconds``; then its late round
        runs at once (as a stalled reactor's overdue timer does), then the datagrams
        that arrived meanwhile."""
        until = self.paused_until[i] = self.now + seconds
        self._at(until, lambda: self._resume(i, until))

    def _resume(self, i: int, until: float) -> None:
        if self.paused_until.get(i) == until and i not in self.killed:
            self._apply(i, self.detectors[i].tick(self.now))
            for message, source, size in self._backlog.pop(i, []):
                self._deliver(i, message, source, size)

    def seen_dead_by_all(self, j: int) -> float | None:
        """When the last live node convicted ``j`` (None: not all yet)."""
        node_id = self.states[j].me.info.id
        last = 0.0
        for i, state in enumerate(self.states):
            if i == j or i in self.killed:
                continue
            if state.nodes[node_id].status != "dead":
                return None
        for when, _, node in self.convictions:
            if node == j:
                last = max(last, when)
        return last

    def false_convictions(self) -> list[tuple[float, int, int]]:
        """Convictions of nodes never killed (paused ones included)."""
        return [c for c in self.convictions if c[2] not in self.killed]

    def held_dead_now(self) -> list[tuple[int, int]]:
        """(observer, node) pairs where a live node holds a live, unpaused one dead."""
        pairs = []
        for i, state in enumerate(self.states):
            if not self._up(i):
                continue
            for node_id, node in state.nodes.items():
                j = self.index_of(node_id)
                if node.status == "dead" and self._up(j):
                    pairs.append((i, j))
        return pairs
