"""Who is alive, dead or gone: statuses, their transitions, and GC (sans-IO).

:class:`Membership` sits beside a :class:`~pokan.core.node.GossipNode` over the
same :class:`~pokan.core.state.ClusterState`. The driver (the Server, or a
simulator) calls, with the current time:

- :meth:`Membership.observe` after every message or sync it merged: heartbeat
  arrivals feed the failure detector, a dead node heard again is revived, a
  ``left`` flag in a digest marks the node left;
- :meth:`Membership.tick` once per gossip round: conviction of silent nodes
  (unless this node itself stalled) and, now and then, garbage collection;
- :meth:`Membership.settle` on every batch before committing it: returns the
  membership events (``peer_joined``, ``peer_alive``, ``peer_dead``,
  ``peer_left``), each once per transition.

Statuses: ``alive`` (heard recently), ``dead`` (convicted by the detector;
revived by fresh heartbeats), ``left`` (said goodbye; only a new generation
comes back). See docs/membership.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from pokan import wire
from pokan.core import gc
from pokan.core.detection import Detected, Transition
from pokan.core.failure import DEFAULT_THRESHOLD, PhiAccrualDetector
from pokan.core.node import Address
from pokan.core.settings import (
    DEFAULT_DEAD_NODE_TTL,
    DEFAULT_TOMBSTONE_TTL,
    check_membership_options,
    check_ttl,
)
from pokan.core.state import Batch, ClusterState, NodeState, Status
from pokan.wire import DigestEntry

__all__ = [
    "DEFAULT_DEAD_NODE_TTL",
    "DEFAULT_TOMBSTONE_TTL",
    "REVIVE_MARGIN",
    "Membership",
    "Transition",
    "check_membership_options",
    "check_ttl",
]

#: a convicted node is revived once its heartbeat is this much past the
#: conviction: a late copy of its last heartbeats is not a sign of life
REVIVE_MARGIN = 2


class Membership:
    """Statuses, the failure detector and GC for one node's cluster state.

    The phi-accrual :class:`~pokan.core.detection.FailureDetector`: it
    convicts on gossiped heartbeats, and has no messages of its own.
    """

    def __init__(
        self,
        state: ClusterState,
        interval: float,
        phi_threshold: float = DEFAULT_THRESHOLD,
        tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL,
        dead_node_ttl: float = DEFAULT_DEAD_NODE_TTL,
        idle_interval: float | None = None,
    ) -> None:
        self.state = state
        self.detector = PhiAccrualDetector(interval, phi_threshold)
        self.tombstone_ttl = tombstone_ttl
        self.dead_node_ttl = dead_node_ttl
        self.gc_every = interval
        self.set_interval(interval, idle_interval)
        self.convictions = 0
        self._announced: dict[str, tuple[int, Status]] = {}
        #: what was announced before this node's own changes, shared by many
        #: nodes (the simulator's converged start): see adopt_shared()
        self._baseline: Mapping[str, tuple[int, Status]] = {}
        self._status_since: dict[str, float] = {}
        self._convicted_at: dict[str, int] = {}  # heartbeat at conviction
        self._forgotten_at: dict[str, float] = {}
        #: why a node's next transition happens, for the log: see note()
        self._notes: dict[str, str] = {}
        self._next_gc: float | None = None

    def set_interval(
        self,
        interval: float,
        idle_interval: float | None = None,
        probe_interval: float | None = None,
        timeout_period: float | None = None,
    ) -> None:
        """Follow a new gossip interval (and idle interval, if longer; phi
        sends no probes, so ``probe_interval`` and ``timeout_period`` mean
        nothing to it).

        With an idle interval the detector paces itself on it: an idle node
        hears the others' heartbeats only a few times per idle interval, and
        a mean learnt while the cluster was busy would convict peers for
        silences that are normal when it is idle, so the mean interval is
        floored at one idle interval (a quarter of the gossip interval
        without one): a silent peer is convicted after at least
        ``threshold`` idle intervals.
        """
        if idle_interval is None or idle_interval <= interval:
            pace, floor = interval, interval / 4
        else:
            pace, floor = idle_interval, idle_interval
        self.detector.interval = pace
        self.detector.max_interval = 10 * pace
        self.detector.min_mean = floor
        self._next_scan = -math.inf  # the floor changed: check everyone
        #: how often GC runs: a tenth of the shorter TTL, within [pace, 60s]
        self.gc_every = max(
            pace, min(60.0, self.tombstone_ttl / 10, self.dead_node_ttl / 10)
        )

    def adopt(self, now: float) -> None:
        """Take the statuses already in the state (restored) without events."""
        for node in self.state.others():
            self._announced[node.info.id] = (node.info.generation, node.status)
            self._status_since.setdefault(node.info.id, now)

    def adopt_shared(self, baseline: Mapping[str, tuple[int, Status]]) -> None:
        """Take ``baseline`` (id -> (generation, status)) as announced already,
        without copying it: one mapping serves every node of a converged
        simulated cluster, instead of N entries per node (:meth:`adopt`)."""
        self._baseline = baseline

    def start(self, now: float) -> None:
        """The rounds start now: a first round late by a stall (a handler
        that blocked during the join) convicts nobody, as later ones."""
        self.detector.start(now)

    # -- the FailureDetector interface ----------------------------------------

    @property
    def pauses(self) -> int:
        return self.detector.pauses

    def describe(self) -> str:
        return f"phi threshold {self.detector.threshold:g}"

    def check(self, now: float) -> Detected:
        return Detected(batch=self.tick(now))

    def handles(self, message: wire.Message) -> bool:
        return False  # heartbeats ride in the gossip itself

    def receive(
        self,
        message: wire.Message,
        source: Address,
        now: float,
        size: int | None = None,
    ) -> Detected:
        return Detected()

    def poll(self, now: float) -> Detected:
        return Detected()  # phi has no timeouts between rounds

    def next_due(self) -> float | None:
        return None  # phi checks at the rounds only

    def missed(self, node_id: str, now: float) -> Detected:
        return Detected()  # heartbeats, not exchanges, tell phi

    def heard(self, node_id: str, now: float) -> Detected:
        return Detected()  # heartbeats count, not who sent the datagram

    def view(self, node_id: str, now: float) -> dict[str, Any]:
        """``{"kind": "phi", "phi": ..., "silence": ..., "threshold": ...}``."""
        detector = self.detector
        return {
            "kind": "phi",
            "phi": detector.phi(node_id, now),
            "silence": detector.silence(node_id, now),
            "threshold": detector.threshold,
        }

    # -- feeding ----------------------------------------------------------------

    def observe(self, now: float, digest: Iterable[DigestEntry] = ()) -> Batch:
        """Take heartbeat arrivals (and ``left`` flags of a digest) at ``now``."""
        batch = Batch()
        for entry in digest:
            if entry.left:
                batch += self.state.mark(entry.node_id, entry.generation, "left")
        news, self.state.heartbeat_news = self.state.heartbeat_news, set()
        nodes, heartbeat = self.state.nodes, self.detector.heartbeat
        for node_id in sorted(news):
            node = nodes.get(node_id)
            if node is None:
                continue
            heartbeat(node_id, now)
            if node.status == "dead" and node.heartbeat >= (
                self._convicted_at.get(node_id, 0) + REVIVE_MARGIN
            ):
                node = self.state.set_status(node, "alive")
                batch += Batch((), (node.record(),))
        return batch

    def tick(self, now: float) -> Batch:
        """Once per gossip round: convict the silent, collect garbage.

        The live nodes are only asked about once one of them could be over
        the threshold (or one has no window yet): an idle node's rounds do
        not walk the whole membership.
        """
        batch = Batch()
        detector = self.detector
        if detector.tick(now) and (
            now >= self._next_scan or len(detector) < len(self.state.nodes) - 1
        ):
            alive = []
            for node in self.state.others():
                if node.status != "alive":
                    continue
                node_id = node.info.id
                if node_id not in detector:
                    detector.heartbeat(node_id, now)  # start its window
                elif detector.is_dead(node_id, now):
                    self._notes[node_id] = _conviction_note(detector, node_id, now)
                    node = self.state.set_status(node, "dead")
                    self.convictions += 1
                    self._convicted_at[node_id] = node.heartbeat
                    self._status_since[node_id] = now
                    batch += Batch((), (node.record(),))
                    continue
                alive.append(node_id)
            self._next_scan = detector.silent_until(alive)
        if self._next_gc is None:
            self._next_gc = now + self.gc_every
        elif now >= self._next_gc:
            self._next_gc = now + self.gc_every
            batch += self.collect(now)
        return batch

    def collect(self, now: float) -> Batch:
        """Remove old tombstones and forget nodes dead or left for too long."""
        changes = gc.collect_tombstones(self.state, now, self.tombstone_ttl)
        forgotten = []
        for node in list(self.state.others()):
            node_id = node.info.id
            if node.status == "alive":
                continue
            since = self._status_since.setdefault(node_id, now)
            if since + self.dead_node_ttl <= now:
                gc.forget(self.state, node_id)
                self._forget(node_id)
                self._forgotten_at[node_id] = now
                forgotten.append(node_id)
        # remember a forgotten incarnation for another TTL, then let it go
        for node_id, when in list(self._forgotten_at.items()):
            if when + self.dead_node_ttl <= now:
                del self._forgotten_at[node_id]
                self.state.forgotten.pop(node_id, None)
        forgotten_set = set(forgotten)
        changes = [c for c in changes if c.node_id not in forgotten_set]
        return Batch(tuple(changes), (), tuple(forgotten))

    def forget(self, node_id: str, now: float, remember: bool = True) -> None:
        """Forget a node now (an operator's forget, or a peer's Forget).

        ``remember``: gossip about its current generation is ignored for a
        dead-node TTL (only a restart brings it back); without, its next
        gossip brings it back (a live node forgotten by force).
        """
        gc.forget(self.state, node_id)
        self._forget(node_id)
        if remember:
            self._forgotten_at[node_id] = now
        else:
            self.state.forgotten.pop(node_id, None)

    def _forget(self, node_id: str) -> None:
        self.detector.forget(node_id)
        self._announced.pop(node_id, None)
        self._status_since.pop(node_id, None)
        self._convicted_at.pop(node_id, None)
        self._notes.pop(node_id, None)

    # -- events -----------------------------------------------------------------

    def settle(self, batch: Batch, now: float) -> list[Transition]:
        """The membership events ``batch`` makes, in order; each fires once.

        A node first heard of, or a new generation of a known node (a restart),
        that is alive gives ``peer_joined``; within one generation, alive to
        dead gives ``peer_dead``, dead to alive ``peer_alive``, and a goodbye
        ``peer_left``. Nodes first heard of as left give nothing.
        """
        events: list[Transition] = []
        for record in batch.nodes:
            node = self.state.nodes.get(record.info.id)
            if node is None or node is self.state.me:
                continue
            node_id = node.info.id
            current = (node.info.generation, node.status)
            previous = self._announced.get(node_id) or self._baseline.get(node_id)
            if previous == current:
                continue
            self._announced[node_id] = current
            if previous is None or previous[1] != node.status:
                self._status_since[node_id] = now
            if previous is not None and previous[0] != current[0]:
                self._reincarnated(node, now)
            event = _event(previous, current)
            if event == "peer_joined" and previous is not None:
                self._notes[node_id] = "restarted: new generation"
            elif event != "peer_dead":  # a conviction's note stays for its event
                self._notes.pop(node_id, None)
            if event is not None:
                events.append((event, node))
        return events

    def _reincarnated(self, node: NodeState, now: float) -> None:
        """A new generation of ``node`` (a restart): a new window."""
        node_id = node.info.id
        self.detector.forget(node_id)
        self._convicted_at.pop(node_id, None)
        if node.heartbeat:
            self.detector.heartbeat(node_id, now)

    def note(self, node_id: str) -> str:
        """Why the transition :meth:`settle` just returned for ``node_id`` happened.

        ``silent 8.4s, phi 8.41 > 8`` for a conviction, ``restarted: new
        generation`` for a known node back under a new generation; else "".
        Each note is given once.
        """
        return self._notes.pop(node_id, "")


def _conviction_note(detector: PhiAccrualDetector, node_id: str, now: float) -> str:
    """``silent 8.4s, phi 8.41 > 8``: phi rounded up, so it reads as above."""
    phi = math.ceil(detector.phi(node_id, now) * 100) / 100
    silence = detector.silence(node_id, now)
    return f"silent {silence:.1f}s, phi {phi:.2f} > {detector.threshold:g}"


def _event(
    previous: tuple[int, Status] | None, current: tuple[int, Status]
) -> str | None:
    generation, status = current
    if previous is None or previous[0] != generation:
        if status == "alive":
            return "peer_joined"
        if previous is not None and previous[1] != status:
            return "peer_left" if status == "left" else "peer_dead"
        return None
    if status == "left":
        return "peer_left"
    if status == "dead":
        return "peer_dead"
    return "peer_alive" if previous[1] == "dead" else None
