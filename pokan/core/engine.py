"""The Engine: every decision one node makes, sans-IO.

One object composes the gossip node (:mod:`pokan.core.node`), the failure
detector with its statuses and GC (:mod:`pokan.core.detection`,
:mod:`pokan.core.membership`), the reset of a peer behind our GC point and
the re-assert of our own state over a forgery. Messages, writes and timer
ticks go in, with the time; plain values come out (:class:`Output`): the
messages to send, one batch to persist, the membership transitions it made,
the full syncs to open. The Twisted shell (:class:`pokan.net.server.Server`),
the simulator (:mod:`pokan.sim.simulate`) and the tests' in-process network
(``tests/simnet.py``) all drive this same object.

Every batch an Engine returns has been settled already: its transitions are
in the same Output, and the driver persists the batch, then fires the
transitions' events, then the batch's key events.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import attrs

from pokan import wire
from pokan.core import gc, plausible
from pokan.core.detection import Detected, FailureDetector, Transition
from pokan.core.membership import Membership
from pokan.core.node import Address, GossipNode, Outgoing
from pokan.core.rumours import RumourQueue
from pokan.core.settings import EngineSettings
from pokan.core.state import Batch, ClusterState, NodeDelta, NodeInfo, NodeState, Value
from pokan.core.swim import SwimMembership


@attrs.frozen
class Output:
    """What one call into the Engine produced, for the driver to carry out."""

    #: datagrams to send now
    sends: tuple[Outgoing, ...] = ()
    #: what changed: persist it, then fire the transitions, then its key events
    batch: Batch = attrs.field(factory=Batch)
    #: membership events the batch made: (``peer_dead``..., the node)
    transitions: tuple[Transition, ...] = ()
    #: why each transition happened, for the log (one per transition; may be "")
    notes: tuple[str, ...] = ()
    #: full TCP syncs to open now (host, TCP port): resets of peers behind us
    syncs: tuple[tuple[str, int], ...] = ()
    #: the ids of the peers the syncs are for (one per sync)
    behind: tuple[str, ...] = ()
    #: what was refused: (reason, detail), to count as bad input
    rejected: tuple[tuple[str, str], ...] = ()
    #: our own state was written again over a forgery (in the batch)
    reasserted: bool = False
    #: the peer an exchange this node opened just completed with
    exchanged_with: NodeState | None = None
    #: keys of our previous incarnation taken back by a full sync
    taken_back: int = 0


def make_detector(
    settings: EngineSettings, state: ClusterState, rng: random.Random
) -> FailureDetector:
    """The failure detector ``settings.failure_detector`` names."""
    if settings.failure_detector == "swim":
        return SwimMembership(
            state,
            rng,
            settings.gossip_interval,
            settings.tombstone_ttl,
            settings.dead_node_ttl,
            settings.idle_interval,
            settings.max_datagram,
            probe_interval=settings.probe_period,
            timeout_period=settings.probe_stage_period,
        )
    if settings.failure_detector == "phi":
        return Membership(
            state,
            settings.gossip_interval,
            settings.phi_threshold,
            settings.tombstone_ttl,
            settings.dead_node_ttl,
            settings.idle_interval,
        )
    raise ValueError(f"no failure detector {settings.failure_detector!r}")


class Engine:
    """One pokan node's protocol: gossip, membership, failure detection, GC.

    ``state``, ``rumours`` and ``detector``: for the simulator, which
    builds them its own way (converged records shared copy-on-write, push
    settings, no detector); by default a new :class:`ClusterState` of
    ``identity``, a default RumourQueue and the detector the settings name.
    """

    def __init__(
        self,
        settings: EngineSettings,
        identity: NodeInfo,
        rng: random.Random,
        *,
        state: ClusterState | None = None,
        rumours: RumourQueue | None = None,
        detector: FailureDetector | None = None,
    ) -> None:
        self.settings = settings
        self.state = state if state is not None else ClusterState(identity)
        self.state.max_nodes = settings.max_nodes
        self.node = GossipNode(self.state, rng, settings.max_datagram, rumours=rumours)
        self.node.fanout = settings.fanout
        self.node.idle_rounds = settings.idle_rounds
        self.detector: FailureDetector = (
            make_detector(settings, self.state, random.Random(rng.getrandbits(64)))
            if detector is None
            else detector
        )
        #: SWIM probes: heartbeats stay out of the digest (it stays the same
        #: while idle); phi convicts on them
        self.node.heartbeats = settings.failure_detector == "phi"
        #: peer id -> when a reset sync may be asked for it again
        self._reset_syncs: dict[str, float] = {}
        #: the store had no record of this node: its first full sync takes
        #: back what the cluster holds of it (docs/redis.md)
        self.take_back = False

    # -- configuration --------------------------------------------------------

    @property
    def id(self) -> str:
        return self.state.me.info.id

    def rename(self, identity: NodeInfo) -> None:
        """Take a new identity (ports bound, a generation) before gossiping."""
        self.state.rename_self(identity)

    def reconfigure(self, settings: EngineSettings) -> None:
        """Follow new intervals (the only settings that change at run time)."""
        self.settings = settings
        self.node.idle_rounds = settings.idle_rounds
        self.detector.set_interval(
            settings.gossip_interval,
            settings.idle_interval,
            settings.probe_period,
            settings.probe_stage_period,
        )

    # -- time -----------------------------------------------------------------

    def plausible_now(self, now: float, wall: float | None = None) -> None:
        """Tell the core the time: generations are wall-clock microseconds.

        ``wall``: the wall clock (seconds since the epoch) when ``now`` is
        another clock's (a test's); by default ``now``.
        """
        self.state.now = now
        self.state.max_generation = plausible.max_generation(
            now if wall is None else wall
        )

    # -- the node's life ------------------------------------------------------

    def restored(self, now: float) -> Output:
        """After the store's snapshot was restored and the identity taken:
        adopt the statuses without events; our record to persist."""
        self.detector.adopt(now)
        return self._settled(now, Batch((), (self.state.me.record(),)))

    def start(self, now: float) -> None:
        """The rounds start now: a late first round convicts nobody."""
        self.detector.start(now)

    def tick(self, now: float) -> Output:
        """One gossip round: failure checks (and probes), GC, then Syns.

        A quiet round of an idle node (see :attr:`quiet_rounds`) opens no
        exchange and runs only what the detector has due (:meth:`poll`): the
        Server sleeps through those, its timer calling :meth:`poll` instead.
        """
        if self.node.quiet_rounds:
            polled = self.detector.poll(now)
            sends = polled.sends + tuple(self.node.gossip_round())
            return self._settled(
                now, polled.batch, sends=sends, rejected=polled.rejected
            )
        checked = self.detector.check(now)
        sends = checked.sends + tuple(self.node.gossip_round())
        return self._settled(now, checked.batch, sends=sends, rejected=checked.rejected)

    def poll(self, now: float) -> Output:
        """The detector's timer (see :meth:`next_due`): probes and timeouts."""
        polled = self.detector.poll(now)
        return self._settled(
            now, polled.batch, sends=polled.sends, rejected=polled.rejected
        )

    def next_due(self) -> float | None:
        """When :meth:`poll` should next be called (None: not between rounds)."""
        return self.detector.next_due()

    def retry(self, now: float) -> Output:
        """Half a round on: a new exchange if this round's went unanswered."""
        polled = self.detector.poll(now)
        self.node.missed = None
        sends = polled.sends + tuple(self.node.retry_round())
        batch, rejected = polled.batch, polled.rejected
        if self.node.missed is not None:
            # an exchange went unanswered: evidence for the detector
            probed = self.detector.missed(self.node.missed.info.id, now)
            sends += probed.sends
            batch, rejected = batch + probed.batch, rejected + probed.rejected
        return self._settled(now, batch, sends=sends, rejected=rejected)

    def lost_contact(self, node_id: str, now: float) -> Output:
        """The driver saw a sign of ``node_id``'s death (its watch connection
        closed): evidence for the detector, as an unanswered exchange is."""
        node = self.state.nodes.get(node_id)
        if node is None or node is self.state.me or node.status != "alive":
            return self._settled(now, Batch())
        probed = self.detector.missed(node_id, now)
        return self._settled(
            now, probed.batch, sends=probed.sends, rejected=probed.rejected
        )

    def skip_rounds(self, count: int) -> None:
        """Account for up to ``count`` quiet rounds the driver slept through."""
        self.node.skip_rounds(count)

    @property
    def idle(self) -> bool:
        """Whether the node is in its idle pace (nothing to spread)."""
        return self.node.idle

    @property
    def awaiting(self) -> bool:
        """Whether this round's exchange still waits for its SynAck."""
        return self.node.awaiting

    @property
    def quiet_rounds(self) -> int:
        """Rounds ahead that send nothing unless news comes first."""
        return self.node.quiet_rounds

    def has_live_peer(self) -> bool:
        return any(n.status == "alive" for n in self.state.others())

    # -- datagrams ------------------------------------------------------------

    def receive(
        self,
        message: wire.Message,
        source: Address,
        size: int | None = None,
        now: float = 0.0,
        *,
        wall: float | None = None,
    ) -> Output:
        """One datagram's message from ``source`` (``size``: its length)."""
        self.plausible_now(now, wall)
        if self.detector.handles(message):
            detected = self.detector.receive(message, source, now, size)
            return self._settled(
                now, detected.batch, sends=detected.sends, rejected=detected.rejected
            )
        result = self.node.receive(message, source, size)
        for node_id in result.batch.forgotten:  # a peer's Forget, checked
            self.detector.forget(node_id, now)
        digest: tuple[wire.DigestEntry, ...] = getattr(message, "digest", ())
        batch = result.batch + self.detector.observe(now, digest)
        sends = result.outgoing
        polled = self.detector.poll(now)
        if self.node.is_member(message, source):
            heard = self.detector.heard(getattr(message, "sender", ""), now)
            polled = Detected(
                polled.sends + heard.sends,
                polled.batch + heard.batch,
                polled.rejected + heard.rejected,
            )
        if polled.sends or polled.batch or polled.rejected:
            sends += polled.sends
            batch += polled.batch
            result = attrs.evolve(result, rejected=result.rejected + polled.rejected)
        if result.reasserted:
            sends += tuple(self.node.wrote(result.reasserted))
            batch += result.reasserted
        syncs: tuple[tuple[str, int], ...] = ()
        behind: tuple[str, ...] = ()
        if isinstance(message, wire.Syn | wire.SynAck):
            peer = self._reset_if_behind(message.sender, digest, now)
            if peer is not None:
                syncs = ((peer.info.address, peer.info.tcp_port),)
                behind = (peer.info.id,)
        return self._settled(
            now,
            batch,
            sends=sends,
            syncs=syncs,
            behind=behind,
            rejected=result.rejected,
            reasserted=bool(result.reasserted),
            exchanged_with=result.exchanged_with,
        )

    def _reset_if_behind(
        self, sender: str, digest: Iterable[wire.DigestEntry], now: float
    ) -> NodeState | None:
        """A peer behind our GC point of some node gets a full sync (a reset),
        asked again only after ``max(10 rounds, sync timeout)``."""
        node = self.state.nodes.get(sender)
        if node is None or node is self.state.me or not gc.behind(self.state, digest):
            return None
        if now < self._reset_syncs.get(sender, 0.0):
            return None
        wait = max(10 * self.settings.gossip_interval, self.settings.sync_timeout)
        self._reset_syncs[sender] = now + wait
        return node

    # -- local writes ---------------------------------------------------------

    def write(
        self, key: str, value: Value | None, timestamp: float | None, now: float
    ) -> Output:
        """Store (``value`` None: delete) one of our keys; push it at once.

        ``timestamp`` None: ``now``, or the key's current timestamp if the
        clock stepped back (a plain write wins). An older ``timestamp``
        changes nothing.
        """
        if timestamp is None:
            current = self.state.me.entries.get(key)
            timestamp = now if current is None else max(now, current.timestamp)
        batch = self.state.write(key, value, timestamp)
        sends = tuple(self.node.wrote(batch)) if batch else ()
        return self._settled(now, batch, sends=sends)

    # -- full sync (TCP) ------------------------------------------------------

    def full_state(self) -> tuple[NodeDelta, ...]:
        """What a Hello or Welcome sends: every node's full state.

        Not our own record while we would take it back (the peer would drop
        its view of us on seeing our new generation).
        """
        deltas = self.node.full_state()
        if not self.take_back:
            return deltas
        return tuple(d for d in deltas if d.info.id != self.id)

    def merge_full(
        self,
        deltas: Iterable[NodeDelta],
        now: float,
        *,
        new_limit: int | None = None,
        wall: float | None = None,
    ) -> Output:
        """Merge a full state (a Hello's or a Welcome's).

        ``new_limit``: nodes new to us it may add (a joiner's Hello: its
        join budget; None: up to ``max_nodes``). The first full sync after a
        start the store knew nothing of takes back our previous keys.
        """
        self.plausible_now(now, wall)
        state = self.state
        state.adopt_previous, self.take_back = self.take_back, False
        batch = self.node.merge_full(deltas, new_limit)
        state.adopt_previous = False
        taken_back, state.adopted = state.adopted or 0, None
        rejected = state.drain_rejected()
        reasserted = self.node.reassert()
        batch += self.detector.observe(now)
        sends: tuple[Outgoing, ...] = ()
        if reasserted:
            sends = tuple(self.node.wrote(reasserted))
            batch += reasserted
        return self._settled(
            now,
            batch,
            sends=sends,
            rejected=rejected,
            reasserted=bool(reasserted),
            taken_back=taken_back,
        )

    def forget(self, node_id: str, now: float, *, remember: bool = True) -> Output:
        """Forget a node now (an operator's forget); the batch dropping it.

        ``remember``: gossip about its current generation is ignored for a
        dead-node TTL; without, its next gossip brings it back.
        """
        self.detector.forget(node_id, now, remember)
        return self._settled(now, Batch((), (), (node_id,)))

    def push(self) -> Output:
        """Push the hot rumours (a joiner just merged) to a few peers now."""
        return Output(sends=tuple(self.node.push()))

    def goodbye(self, now: float = 0.0) -> tuple[Outgoing, ...]:
        """Goodbyes for every node that has not left, to send when stopping."""
        return tuple(self.node.goodbye())

    # -- what the detector thinks ---------------------------------------------

    def detector_view(self, node_id: str, now: float) -> dict[str, Any]:
        """The failure detector's view of ``node_id`` (``{"kind": ...}``)."""
        return self.detector.view(node_id, now)

    @property
    def convictions(self) -> int:
        return self.detector.convictions

    @property
    def pauses(self) -> int:
        return self.detector.pauses

    # -- settling -------------------------------------------------------------

    def _settled(self, now: float, batch: Batch, **fields: Any) -> Output:
        """An Output of ``batch`` with the transitions it makes, settled once."""
        if not batch:
            return Output(batch=batch, **fields)
        transitions = tuple(self.detector.settle(batch, now))
        notes = tuple(self.detector.note(node.info.id) for _, node in transitions)
        return Output(batch=batch, transitions=transitions, notes=notes, **fields)

    def settle(self, detected: Detected, now: float) -> Output:
        """An Output of what a detector step produced (for drivers)."""
        return self._settled(now, detected.batch, sends=detected.sends)
