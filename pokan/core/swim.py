"""Membership with SWIM failure detection: the Engine's default detector.

:class:`SwimMembership` keeps what :class:`~pokan.core.membership.Membership`
does for every detector (statuses, their events once per transition, left
versus dead, restarts as one entry, GC of tombstones and of nodes dead or
left too long) and convicts with :class:`~pokan.core.liveness.SwimDetector`
instead of phi on gossiped heartbeats: nobody's heartbeat moves, so an idle
digest stays the same. See docs/membership.md.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import attrs

from pokan import wire
from pokan.core.detection import Detected
from pokan.core.liveness import SwimDetector, SwimSettings, Verdict
from pokan.core.membership import (
    DEFAULT_DEAD_NODE_TTL,
    DEFAULT_TOMBSTONE_TTL,
    Membership,
)
from pokan.core.node import Address
from pokan.core.state import Batch, ClusterState, NodeState


class SwimMembership(Membership):
    """Statuses, SWIM + Lifeguard failure detection and GC for one node."""

    def __init__(
        self,
        state: ClusterState,
        rng: random.Random,
        interval: float,
        tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL,
        dead_node_ttl: float = DEFAULT_DEAD_NODE_TTL,
        idle_interval: float | None = None,
        max_datagram: int = wire.DEFAULT_MAX_DATAGRAM,
        swim: SwimSettings | None = None,
        probe_interval: float | None = None,
        timeout_period: float | None = None,
    ) -> None:
        self.swim = SwimDetector(
            state,
            rng,
            swim if swim is not None else SwimSettings(interval=interval),
            max_datagram,
        )
        super().__init__(
            state,
            interval,
            tombstone_ttl=tombstone_ttl,
            dead_node_ttl=dead_node_ttl,
            idle_interval=idle_interval,
        )
        self.set_interval(interval, idle_interval, probe_interval, timeout_period)

    def set_interval(
        self,
        interval: float,
        idle_interval: float | None = None,
        probe_interval: float | None = None,
        timeout_period: float | None = None,
    ) -> None:
        """Follow new intervals: probe every ``probe_interval`` seconds (half
        the gossip interval if not given), time a probe's stages as shares
        of ``timeout_period`` if shorter, and count suspicion timeouts in
        gossip intervals (or stage periods, if longer), whatever the idle
        pace: the driver's timer (:meth:`next_due`) wakes the detector for
        each probe, so an idle node's rounds can be far apart."""
        super().set_interval(interval, idle_interval)
        self.swim.settings = attrs.evolve(
            self.swim.settings,
            interval=interval,
            probe_period=probe_interval,
            timeout_period=timeout_period,
        )

    def start(self, now: float) -> None:
        self.swim.start(now)

    @property
    def pauses(self) -> int:
        return self.swim.pauses

    def describe(self) -> str:
        s = self.swim.settings
        return (
            f"SWIM, a probe every {s.base_period:g}s, {s.indirect_checks} indirect"
            f" probes, suspicion {s.alpha:g}-{s.alpha * s.beta:g} x log10(N)"
            f" x {s.suspicion_unit:g}s"
        )

    # -- feeding ----------------------------------------------------------------

    def observe(self, now: float, digest: Iterable[wire.DigestEntry] = ()) -> Batch:
        """Only ``left`` flags: heartbeats mean nothing to SWIM."""
        batch = Batch()
        for entry in digest:
            if entry.left:
                batch += self.state.mark(entry.node_id, entry.generation, "left")
        self.state.heartbeat_news.clear()
        return batch

    def check(self, now: float) -> Detected:
        verdict = self.swim.tick(now)
        detected = self._detected(verdict)
        gc_batch = self._collect_due(now)
        if gc_batch:
            detected = attrs.evolve(detected, batch=detected.batch + gc_batch)
        return detected

    def tick(self, now: float) -> Batch:
        return self.check(now).batch

    def handles(self, message: wire.Message) -> bool:
        return isinstance(message, wire.LIVENESS_MESSAGES)

    def receive(
        self,
        message: wire.Message,
        source: Address,
        now: float,
        size: int | None = None,
    ) -> Detected:
        return self._detected(self.swim.receive(message, source, size, now))

    def poll(self, now: float) -> Detected:
        return self._detected(self.swim.poll(now))

    def next_due(self) -> float | None:
        return self.swim.next_due()

    def missed(self, node_id: str, now: float) -> Detected:
        return self._detected(self.swim.hint(node_id, now))

    def heard(self, node_id: str, now: float) -> Detected:
        return self._detected(self.swim.heard_from(node_id, now))

    def view(self, node_id: str, now: float) -> dict[str, Any]:
        return self.swim.view(node_id, now)

    # -- helpers ----------------------------------------------------------------

    def _collect_due(self, now: float) -> Batch:
        if self._next_gc is None:
            self._next_gc = now + self.gc_every
        elif now >= self._next_gc:
            self._next_gc = now + self.gc_every
            return self.collect(now)
        return Batch()

    def _detected(self, verdict: Verdict) -> Detected:
        if not (verdict.sends or verdict.batch or verdict.rejected):
            return _NOTHING
        for record in verdict.batch.nodes:
            if record.status == "dead":
                self.convictions += 1
                note = self.swim.note(record.info.id)
                if note:
                    self._notes[record.info.id] = note
        return Detected(verdict.sends, verdict.batch, verdict.rejected)

    def _reincarnated(self, node: NodeState, now: float) -> None:
        self.swim.forget(node.info.id)

    def _forget(self, node_id: str) -> None:
        super()._forget(node_id)
        self.swim.forget(node_id)


_NOTHING = Detected()
