"""SWIM failure detection with Lifeguard's refinements, sans-IO.

Each node probes one member per probe period (``probe_period`` seconds,
or half the interval), and at once a member whose gossip exchange went
unanswered, in a shuffled round-robin (a random affine permutation of
the member list, new for every cycle: no per-member state). A probe is a
:class:`~pokan.wire.Ping`; without a :class:`~pokan.wire.PingAck` by the
probe timeout, ``indirect_checks`` other members are asked to probe it
(:class:`~pokan.wire.PingReq`), and they answer with the ack or,
Lifeguard's addition, a
:class:`~pokan.wire.Nack` that says "I tried and heard nothing". Without any
ack by the end of the period the target becomes *suspect*.

A suspicion is a rumour, ``(generation, incarnation)`` ordered: the suspect
refutes it by raising its incarnation and rumouring ``alive``. Each member
runs its own suspicion timer, which shrinks from ``max`` to ``min`` as
independent suspicions (other origins) arrive (Lifeguard's dynamic
suspicion timeout); on expiry two last-chance pings go out and, without a
refutation in reply, it declares the node dead. A declaration from another
member is passed on at once and checked the same way (one more suspicion,
the last-chance pings, then the conviction): a lone forged ``dead`` about a
live node is refuted by it. A ping to a node held suspect carries the
suspicion (the buddy system), so the suspect hears of it at once.

Lifeguard's *local health multiplier* (LHM, 0..``max_lhm``) grows when
this node misses nacks or must refute a suspicion of itself (signs that it
is the slow one) and shrinks with each successful probe; the probe period
and timeout are scaled by ``LHM + 1``. A node whose own calls came far
apart (it was paused) convicts nobody for that silence: its probe is
dropped, its suspicion timers restart and it refutes at once whatever was
said of it meanwhile.

Rumours ride on every probe message (up to :data:`pokan.wire.MAX_RUMOURS`,
the ones about the receiver first) and, when new, are pushed at once to
``push_fanout`` members in a :class:`~pokan.wire.Notice` (deaths and
refutations with a token bucket of their own), so they spread in O(log N)
hops; recent convictions fill what room a message has left, for members
that missed them. Per-member records exist only for members in a non-default
state (suspect, dead, or an incarnation above 0). See docs/membership.md.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

import attrs

from pokan import wire
from pokan.core.node import Address, Outgoing, address_of
from pokan.core.plausible import MAX_REPLIES_PER_SOURCE
from pokan.core.state import Batch, ClusterState, NodeState

#: suspicion timeout: min = ALPHA * log10(N) units, max = BETA * min (a unit:
#: :attr:`SwimSettings.suspicion_unit`)
DEFAULT_ALPHA = 1.65
DEFAULT_BETA = 3.0
#: independent suspicions after which the timeout is at its minimum
DEFAULT_CONFIRMATIONS = 3
DEFAULT_INDIRECT_CHECKS = 5
DEFAULT_MAX_LHM = 8
#: liveness rumours are pushed to this many members when new
DEFAULT_PUSH_FANOUT = 4
#: an incarnation more than this above what we know is implausible (forged)
MAX_INCARNATION_JUMP = 2**20
#: relayed probes (PingReq) this node runs at once, at most
MAX_RELAYS = 64
#: rumours queued at most; the most sent is dropped first
MAX_QUEUED = 512
#: a conviction rides as filler for this many minimum suspicion timeouts
RECENT_DEAD_FOR = 8.0
#: last-chance pings sent together before a conviction
LAST_CHANCE_PINGS = 2
#: recent convictions carried per message, at most
RECENT_PER_MESSAGE = 2
#: new claims (a suspicion or a death, of a member by an origin, not held
#: yet) one sender may bring at once, and per probe period after that: a
#: member makes at most one of its own a period, so the rest is relaying
CLAIM_BURST = 16
CLAIMS_PER_PERIOD = 4.0


@attrs.frozen
class Verdict:
    """What one call to the detector produced: sends, status changes, refusals."""

    sends: tuple[Outgoing, ...] = ()
    batch: Batch = attrs.field(factory=Batch)
    rejected: tuple[tuple[str, str], ...] = ()


@attrs.define
class _Record:
    """A member in a non-default state, at one generation."""

    generation: int
    incarnation: int = 0
    status: str = "alive"  # alive | suspect | dead
    since: float = 0.0
    origins: set[str] = attrs.field(factory=set)
    #: a peer declared it dead before our own suspicion was old enough
    declared: str | None = None
    #: when our last-chance ping went out (the timeout was over by then)
    final: float | None = None
    #: the sequence numbers of those pings: an answer to one, from the
    #: member's own address, is proof of life whatever incarnation it holds
    final_seqs: tuple[int, ...] = ()
    repinged: bool = False


@attrs.define
class _Probe:
    target: str
    generation: int
    seq: int
    started: float
    timeout: float
    #: the stage period it runs on: it ends 0.9 of it after it started
    stages: float
    helpers: list[Address] = attrs.field(factory=list)
    #: when the indirect probes went out; the probe ends no sooner than
    #: ``timeout`` after them
    asked: float | None = None
    nacks: int = 0
    acked: bool = False


@attrs.define
class _Relay:
    requester: Address
    seq: int
    target: str
    deadline: float


@attrs.define
class _Queued:
    rumour: wire.Rumour
    transmits: int = 0
    hot: bool = True


@attrs.frozen
class SwimSettings:
    """The tunables of :class:`SwimDetector` (see docs/membership.md)."""

    #: the gossip interval (suspicion timeouts are counted in it, or in the
    #: stage period if longer: see :attr:`suspicion_unit`)
    interval: float
    #: the probe period, as a share of ``interval``
    probe_share: float = 0.5
    #: the probe period in seconds, whatever ``interval`` is (None: the share)
    probe_period: float | None = None
    #: the period a probe's timeouts are shares of, in seconds, if shorter
    #: than the probe period (None: the probe period); see :attr:`stage_period`
    timeout_period: float | None = None
    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA
    confirmations: int = DEFAULT_CONFIRMATIONS
    indirect_checks: int = DEFAULT_INDIRECT_CHECKS
    max_lhm: int = DEFAULT_MAX_LHM
    #: direct probe timeout, as a share of :attr:`stage_period`
    probe_timeout: float = 0.4
    #: a helper's nack after this share of :attr:`stage_period` without the ack
    nack_timeout: float = 0.25
    retransmit_mult: int = 4
    push_fanout: int = DEFAULT_PUSH_FANOUT
    push_burst: int = 3
    #: calls more than this many intervals apart mean this node was paused
    pause_factor: float = 2.5
    #: a peer's dead declaration is taken once our own suspicion is this
    #: share of the minimum suspicion timeout old (and a last-chance ping
    #: went unanswered); 0: as soon as that ping goes unanswered
    accept_dead_after: float = 0.0

    @property
    def base_period(self) -> float:
        """Seconds between probes, before the local health multiplier."""
        if self.probe_period is not None:
            return self.probe_period
        return self.probe_share * self.interval

    @property
    def stage_period(self) -> float:
        """What a probe's stages are shares of (the direct timeout, the
        nack, the probe's end, the last-chance wait), before the local
        health multiplier: ``timeout_period`` if given and shorter than the
        probe period, else the probe period. Probes far apart need not
        wait long for an answer: a dead node's probe fails as fast."""
        base = self.base_period
        if self.timeout_period is None:
            return base
        return min(base, self.timeout_period)

    @property
    def suspicion_unit(self) -> float:
        """What suspicion timeouts are counted in: the interval, or the stage
        period if longer. A suspicion must outlast a probe's own stages, or
        a suspect gets less time to refute than a probe takes to fail: at a
        0.2 s interval with 0.5 s stages the shortest timeout would be 0.66
        s, and a live node stalled for 2 s on a loaded machine, or whose
        refutation met 20 % loss, would be convicted."""
        return max(self.interval, self.stage_period)


class SwimDetector:
    """SWIM + Lifeguard over one node's :class:`ClusterState`."""

    kind = "swim"

    def __init__(
        self,
        state: ClusterState,
        rng: random.Random,
        settings: SwimSettings,
        max_datagram: int = wire.DEFAULT_MAX_DATAGRAM,
    ) -> None:
        self.state = state
        self.rng = rng
        self.settings = settings
        self.max_datagram = max_datagram
        self.lhm = 0
        self.incarnation = 0
        self._generation = state.me.info.generation
        self._records: dict[str, _Record] = {}
        self._suspects: set[str] = set()
        self._probe: _Probe | None = None
        self._next_probe: float | None = None
        self._relays: dict[int, _Relay] = {}
        self._seq = rng.randrange(wire.MAX_SEQ)
        self._queue: dict[str, _Queued] = {}
        self._push_tokens = float(settings.push_burst)
        self._urgent_tokens = float(settings.push_burst)
        #: when the push tokens were last given back (None: not yet)
        self._tokens_at: float | None = None
        self._replies: dict[Address, int] = {}
        #: when the reply budgets were last given back (None: not yet)
        self._replies_at: float | None = None
        #: when _advance last ran, and how long before that it had not
        self._last_call: float | None = None
        self._gap = 0.0
        #: members convicted lately (id -> when), carried as filler so that
        #: a member that missed the rumour (it was paused) learns it
        self._recent_dead: dict[str, float] = {}
        #: the probe order: index i of the cycle is ids[(a*i + b) % p]
        self._perm = (1, 0, 0)  # empty: the first probe draws a cycle
        self._perm_i = 0
        self._notes: dict[str, str] = {}
        self._hinted: str | None = None
        #: a suspect to probe as soon as no probe of ours is in flight
        self._checking: str | None = None
        self._rejected: list[tuple[str, str]] = []
        #: sender id -> (tokens, when counted): its budget of new claims
        self._claim_budget: dict[str, tuple[float, float]] = {}
        #: counters for stats
        self.probes = 0
        self.suspicions = 0
        self.convictions = 0
        self.refutations = 0
        self.pauses = 0
        #: suspects saved by answering our last-chance pings
        self.answered_last_chance = 0
        #: claims whose origin this node did not know (not taken)
        self.early_claims = 0

    # -- the Engine's calls ------------------------------------------------------

    def start(self, now: float) -> None:
        self._last_call = now
        self._next_probe = now

    def tick(self, now: float) -> Verdict:
        """Once per gossip round: the pause check, then whatever is due."""
        sends: list[Outgoing] = []
        batch = Batch()
        self._refill(now)
        self._check_pause(now)
        self._forget_full_budgets(now)
        if self._next_probe is None:
            self._next_probe = now
        batch += self._advance(now, sends)
        batch += self._push(sends)
        return self._verdict(sends, batch)

    def poll(self, now: float) -> Verdict:
        """Between rounds (a retry, the driver's timer): whatever is due."""
        sends: list[Outgoing] = []
        batch = Batch()
        self._refill(now)
        self._check_pause(now)
        batch += self._advance(now, sends)
        return self._verdict(sends, batch)

    def _refill(self, now: float) -> None:
        """Give back push tokens, one per gossip interval since the last
        time (up to ``push_burst``), and every source's reply budget once a
        gossip interval: by the clock, not per round, since an idle node's
        rounds pause while its detector still works (a peer probing it every
        period ran out of replies and suspected it, each idle interval)."""
        if self._replies_at is None or now - self._replies_at >= self.settings.interval:
            self._replies.clear()
            self._replies_at = now
        at, self._tokens_at = self._tokens_at, now
        if at is None or now <= at:
            return
        gained = (now - at) / self.settings.interval
        burst = float(self.settings.push_burst)
        self._push_tokens = min(burst, self._push_tokens + gained)
        self._urgent_tokens = min(burst, self._urgent_tokens + gained)

    def next_due(self) -> float | None:
        """When this detector next has something to do (a probe to start, a
        probe stage, a relay's nack, a suspicion's end), for the driver's
        timer; None before :meth:`start`."""
        if self._next_probe is None:
            return None
        probe = self._probe
        due: list[float] = []
        if probe is None or probe.acked:
            # else the next starts when the unanswered one ends (its stages)
            due.append(self._next_probe)
        if self._last_call is not None:
            # never a gap the pause check would take for a stall (only
            # earlier than the next probe while the LHM slows the probes)
            due.append(self._last_call + self._pace())
        if probe is not None and not probe.acked:
            if probe.asked is None:
                due.append(probe.started + probe.timeout)
            else:
                due.append(
                    max(probe.started + 0.9 * probe.stages, probe.asked + probe.timeout)
                )
        due.extend(relay.deadline for relay in self._relays.values())
        wait = self.settings.probe_timeout * self._stage_period()
        accept = self._accept_after()
        for node_id in self._suspects:
            record = self._records.get(node_id)
            if record is None:
                continue
            if record.final is not None:
                due.append(record.final + wait)
            elif record.declared is not None:
                due.append(record.since + accept)
            else:
                due.append(record.since + self.suspicion_timeout(len(record.origins)))
        return min(due)

    def receive(
        self,
        message: wire.Message,
        source: Address,
        size: int | None,
        now: float,
    ) -> Verdict:
        """Handle one liveness message (Ping, PingReq, PingAck, Nack, Notice)."""
        sends: list[Outgoing] = []
        batch = Batch()
        self._refill(now)
        self._check_pause(now)
        sender = self.state.nodes.get(getattr(message, "sender", ""))
        member = (
            sender is not None
            and sender is not self.state.me
            and sender.status != "left"
            and address_of(sender) == source
        )
        # the news first: a refutation it brings saves a suspect whose
        # timeout is over too
        if member and (rumours := getattr(message, "rumours", ())):
            assert sender is not None
            batch += self._take_all(rumours, now, sends, sender.info.id)
        batch += self._advance(now, sends)
        if isinstance(message, wire.Ping):
            self._on_ping(message, source, size, member, sends)
        elif isinstance(message, wire.PingReq):
            if member:
                self._on_ping_req(message, source, now, sends)
        elif isinstance(message, wire.PingAck):
            self._on_ack(message, source, sends)
        elif isinstance(message, wire.Nack):
            probe = self._probe
            if (
                probe is not None
                and message.seq == probe.seq
                and (source in probe.helpers)
            ):
                probe.nacks += 1
        self._check_suspect(now, sends)  # an ack may have freed the probe
        return self._verdict(sends, batch)

    def heard_from(self, node_id: str, now: float) -> Verdict:
        """A datagram came from ``node_id``'s own socket (any message).

        If we hold it suspect or dead, it is sent our claim at once (a buddy
        ping), so that a live node held dead after a partition or a pause
        hears of it and refutes.
        """
        record = self._records.get(node_id)
        node = self.state.nodes.get(node_id)
        if record is None or node is None or record.status == "alive":
            return Verdict()
        if record.generation != node.info.generation:
            return Verdict()
        sends: list[Outgoing] = []
        self._seq = (self._seq + 1) % (wire.MAX_SEQ + 1)
        ping = wire.Ping(
            self.state.me.info.id, self._seq, node_id, self._rumours_for(node_id)
        )
        sends.append(Outgoing(address_of(node), ping, node))
        return self._verdict(sends, Batch())

    def hint(self, node_id: str, now: float) -> Verdict:
        """A gossip exchange with ``node_id`` went unanswered: probe it now.

        Free evidence: each node opens a few exchanges a round, so a dead
        node is probed within a fraction of a period of its death instead
        of waiting for its turn in the round-robin. With a probe of our own
        still unanswered, the hinted node is the next one probed.
        """
        self._hinted = node_id
        sends: list[Outgoing] = []
        batch = self._advance(now, sends)
        probe = self._probe
        if self._hinted is not None and (probe is None or probe.acked):
            self._probe = None
            self._start_probe(now, sends)
        return self._verdict(sends, batch)

    def forget(self, node_id: str) -> None:
        if self._checking == node_id:
            self._checking = None
        self._records.pop(node_id, None)
        self._suspects.discard(node_id)
        self._queue.pop(node_id, None)
        self._notes.pop(node_id, None)

    def note(self, node_id: str) -> str:
        """Why ``node_id`` was just convicted, for the log; given once."""
        return self._notes.pop(node_id, "")

    def view(self, node_id: str, now: float) -> dict[str, object]:
        """What this detector holds of ``node_id``, for the control API."""
        node = self.state.nodes.get(node_id)
        record = self._current(node) if node is not None else None
        if record is not None:
            status = record.status
        else:  # no record: as the membership holds it (dead, say, as restored)
            status = "dead" if node is not None and node.status == "dead" else "alive"
        view: dict[str, object] = {
            "kind": self.kind,
            "lhm": self.lhm,
            "status": status,
            "incarnation": (
                self.incarnation
                if node is self.state.me
                else (0 if record is None else record.incarnation)
            ),
        }
        if record is not None and record.status == "suspect":
            view["suspected_for"] = round(now - record.since, 3)
            view["confirmations"] = len(record.origins)
            view["timeout"] = round(self.suspicion_timeout(len(record.origins)), 3)
        return view

    # -- timing ------------------------------------------------------------------

    def min_timeout(self) -> float:
        n = max(len(self.state.nodes), 2)
        s = self.settings
        return s.alpha * max(2.0, math.log10(n)) * s.suspicion_unit

    def suspicion_timeout(self, origins: int) -> float:
        """Lifeguard's timeout for a suspicion held by ``origins`` members."""
        low = self.min_timeout()
        high = self.settings.beta * low
        expected = min(self.settings.confirmations, len(self.state.nodes) - 2)
        if expected < 1:
            return low
        confirmations = max(0, origins - 1)
        shrink = math.log(confirmations + 1) / math.log(expected + 1)
        return max(low, high - (high - low) * shrink)

    def _base_period(self) -> float:
        return self.settings.base_period

    def _period(self) -> float:
        return self._base_period() * (self.lhm + 1)

    def _stage_period(self) -> float:
        return self.settings.stage_period

    def _stages(self) -> float:
        """The stage period under the local health multiplier."""
        return self._stage_period() * (self.lhm + 1)

    def _pace(self) -> float:
        """The longest normal gap between two calls: the interval, or the
        probe period if longer (the driver's timer may be all that wakes an
        idle node, once per probe). A slower probe period of the local
        health multiplier does not widen it: :meth:`next_due` asks for a
        call at least this often instead."""
        return max(self.settings.interval, self._base_period())

    def _advance(self, now: float, sends: list[Outgoing]) -> Batch:
        """Everything due at ``now``: probe stages, relays, suspicion expiry."""
        self._check_generation()
        if self._last_call is not None:
            self._gap = now - self._last_call
        self._last_call = now
        batch = Batch()
        probe = self._probe
        if probe is not None and not probe.acked:
            if probe.asked is None and now >= probe.started + probe.timeout:
                probe.asked = now
                self._indirect(probe, sends)
            if probe.asked is not None and now >= max(
                probe.started + 0.9 * probe.stages, probe.asked + probe.timeout
            ):
                batch += self._failed(probe, now, sends)
                self._probe = None
        elif probe is not None and now >= probe.started + 0.9 * probe.stages:
            self._probe = None
        for seq, relay in list(self._relays.items()):
            if now >= relay.deadline:
                del self._relays[seq]
                nack = wire.Nack(self.state.me.info.id, relay.seq, relay.target)
                sends.append(Outgoing(relay.requester, nack))
        if self._suspects:
            batch += self._expire(now, sends)
        self._check_suspect(now, sends)
        if (
            not self._unanswered()
            and self._next_probe is not None
            and now >= self._next_probe - 1e-9
        ):
            self._start_probe(now, sends)
        return batch

    def _check_pause(self, now: float) -> None:
        """The first call (a round, the driver's timer, a datagram) long
        after the last one of any kind: this node was paused."""
        last = self._last_call
        if last is not None and now - last > self.settings.pause_factor * self._pace():
            self._paused(now)

    def _paused(self, now: float) -> None:
        """This node stalled: blame nobody for it, and say we are alive."""
        self.pauses += 1
        self._probe = None
        self._relays.clear()
        for node_id in self._suspects:
            record = self._records[node_id]
            record.since, record.declared, record.final = now, None, None
            record.repinged = False
        self.lhm = min(self.settings.max_lhm, max(self.lhm, 2))
        self._refute(0)
        self._next_probe = now

    def _check_generation(self) -> None:
        """A new generation of ours starts at incarnation 0."""
        generation = self.state.me.info.generation
        if generation != self._generation:
            self._generation = generation
            self.incarnation = 0

    # -- probing -----------------------------------------------------------------

    def _check_suspect(self, now: float, sends: list[Outgoing]) -> None:
        """Probe the suspect a member told us of first-hand, out of turn.

        A dead node is then confirmed by a few independent probes within a
        stage period of its first suspicion, and Lifeguard's timeout shrinks
        to its minimum, instead of waiting for the round-robin to reach it
        elsewhere; a live one gets our claim on the ping and its refutation
        rides back on the ack. Only the few members an origin pushes a
        fresh suspicion to check it, so it costs a handful of probes per
        suspicion whatever N is.

        It waits only for a probe of ours still unanswered (it goes out when
        that one ends, a time :meth:`next_due` asks for); an answered one
        does not hold it back till our next wakeup, which at an idle node
        is its next probe.
        """
        if self._checking is None or self._unanswered():
            return
        node_id, self._checking = self._checking, None
        node = self.state.nodes.get(node_id)
        record = self._records.get(node_id)
        if (
            node is None
            or node.status != "alive"
            or record is None
            or record.status != "suspect"
            or self.state.me.info.id in record.origins
        ):
            return
        self._start_probe(now, sends, node)

    def _unanswered(self) -> bool:
        """A probe of ours is in flight, not yet answered: no other starts
        (an answered one lingers to the end of its stages, holding nothing)."""
        probe = self._probe
        return probe is not None and not probe.acked

    def _start_probe(
        self, now: float, sends: list[Outgoing], target: NodeState | None = None
    ) -> None:
        """Probe ``target`` (a check), or the round-robin's next member; a
        check leaves the round-robin's time as it was, so that a member's
        claims, however many, never stop it."""
        if target is None:
            self._next_probe = now + self._period()
            target = self._next_target()
        if target is None:
            return
        self.probes += 1
        self._seq = (self._seq + 1) % (wire.MAX_SEQ + 1)
        stages = self._stages()
        self._probe = _Probe(
            target.info.id,
            target.info.generation,
            self._seq,
            now,
            self.settings.probe_timeout * stages,
            stages,
        )
        ping = wire.Ping(
            self.state.me.info.id,
            self._seq,
            target.info.id,
            self._rumours_for(target.info.id),
        )
        sends.append(Outgoing(address_of(target), ping, target))

    def _next_target(self) -> NodeState | None:
        """The next member of the shuffled round-robin (dead ones now and then).

        A member hinted at (an unanswered exchange) comes first.
        """
        ids = self.state.sorted_ids()
        nodes, me = self.state.nodes, self.state.me
        hinted, self._hinted = self._hinted, None
        if hinted is not None:
            node = nodes.get(hinted)
            record = self._records.get(hinted)
            if (
                node is not None
                and node is not me
                and node.status == "alive"
                and (record is None or record.status == "alive")
            ):
                return node  # not one suspected already: its timer runs
        a, b, p = self._perm
        for _ in range(2 * len(ids) + 2):
            if self._perm_i >= p:
                p = _next_prime(max(len(ids), 2))
                a, b = self.rng.randrange(1, p), self.rng.randrange(p)
                self._perm, self._perm_i = (a, b, p), 0
            index = (a * self._perm_i + b) % p
            self._perm_i += 1
            if index >= len(ids):
                continue
            node = nodes.get(ids[index])
            if node is None or node is me or node.status == "left":
                continue
            if node.status == "dead" and self.rng.random() >= 0.25:
                continue
            return node
        return None

    def _indirect(self, probe: _Probe, sends: list[Outgoing]) -> None:
        """Ask ``indirect_checks`` random members to probe the target for us."""
        me = self.state.me.info.id
        request = wire.PingReq(
            me, probe.seq, probe.target, self._rumours_for(probe.target, 4)
        )
        for helper in self._random_members(
            self.settings.indirect_checks, exclude={probe.target}
        ):
            address = address_of(helper)
            probe.helpers.append(address)
            sends.append(Outgoing(address, request, helper))

    def _failed(self, probe: _Probe, now: float, sends: list[Outgoing]) -> Batch:
        """No ack by the end of the period: suspect the target."""
        if probe.helpers and probe.nacks == 0:
            self.lhm = min(self.settings.max_lhm, self.lhm + 1)  # we may be slow
        node = self.state.nodes.get(probe.target)
        if node is None or node.info.generation != probe.generation:
            return Batch()
        return self._suspect_unanswered(probe.target, now, sends)

    def _suspect_unanswered(
        self, node_id: str, now: float, sends: list[Outgoing]
    ) -> Batch:
        """Our probe of ``node_id`` went unanswered: suspect it, and tell it."""
        node = self.state.nodes.get(node_id)
        if node is None or node.status != "alive":
            return Batch()
        record = self._current(node)
        incarnation = 0 if record is None else record.incarnation
        me = self.state.me.info.id
        rumour = wire.Rumour(
            wire.SUSPECT, node_id, node.info.generation, incarnation, me
        )
        fresh = record is None or record.status != "suspect"
        batch = self._take(rumour, now, sends)
        if fresh:  # the buddy system: the suspect hears it first-hand
            sends.append(Outgoing(address_of(node), wire.Notice(me, (rumour,)), node))
        return batch

    def _on_ping(
        self,
        ping: wire.Ping,
        source: Address,
        size: int | None,
        member: bool,
        sends: list[Outgoing],
    ) -> None:
        me = self.state.me.info.id
        if ping.target != me or not self._may_reply(source):
            return
        if member:
            ack = wire.PingAck(me, ping.seq, me, self._rumours_for(ping.sender))
        else:  # a stranger gets no more bytes than it sent, and no news
            ack = wire.PingAck(me, ping.seq, me)
            if size is not None and len(wire.encode_body(ack)) + 9 > size:
                self._reject("stranger-ping", "ack bigger than the ping, withheld")
                return
        sends.append(Outgoing(source, ack, self.state.nodes.get(ping.sender)))

    def _on_ping_req(
        self, request: wire.PingReq, source: Address, now: float, sends: list[Outgoing]
    ) -> None:
        target = self.state.nodes.get(request.target)
        if (
            target is None
            or target is self.state.me
            or target.status == "left"
            or not self._may_reply(source)
        ):
            return
        if len(self._relays) >= MAX_RELAYS:
            self._reject("rate-limited", "indirect probe withheld")
            return
        self._seq = (self._seq + 1) % (wire.MAX_SEQ + 1)
        self._relays[self._seq] = _Relay(
            source,
            request.seq,
            request.target,
            now + self.settings.nack_timeout * self._stage_period(),
        )
        ping = wire.Ping(
            self.state.me.info.id,
            self._seq,
            request.target,
            self._rumours_for(request.target, 4),
        )
        sends.append(Outgoing(address_of(target), ping, target))

    def _on_ack(
        self, ack: wire.PingAck, source: Address, sends: list[Outgoing]
    ) -> None:
        me = self.state.me.info.id
        relay = self._relays.get(ack.seq)
        if relay is not None and ack.target == relay.target:
            target = self.state.nodes.get(relay.target)
            if target is not None and address_of(target) == source:
                del self._relays[ack.seq]
                forward = wire.PingAck(me, relay.seq, relay.target)
                sends.append(Outgoing(relay.requester, forward))
            return
        if self._answered_last_chance(ack, source):
            return
        probe = self._probe
        if probe is None or probe.acked or ack.seq != probe.seq:
            return
        if ack.target != probe.target:
            return
        target = self.state.nodes.get(probe.target)
        direct = target is not None and address_of(target) == source
        if direct or source in probe.helpers:
            probe.acked = True
            self.lhm = max(0, self.lhm - 1)

    def _answered_last_chance(self, ack: wire.PingAck, source: Address) -> bool:
        """A suspect answered one of our last-chance pings from its own
        address: it is alive, whatever the claims say. A claim far above
        the incarnation it holds (a forged chain of ``alive`` rumours walks
        our record up, and the suspect refuses such a claim as implausible)
        or a refutation we refuse (its incarnation pushed out of our reach)
        no longer convicts a node that answers."""
        record = self._records.get(ack.target)
        if record is None or record.status != "suspect":
            return False
        if ack.seq not in record.final_seqs:
            return False
        node = self.state.nodes.get(ack.target)
        if (
            node is None
            or address_of(node) != source
            or node.info.generation != record.generation
        ):
            return False
        self._suspects.discard(ack.target)
        record.status, record.origins, record.declared = "alive", set(), None
        record.final, record.final_seqs, record.repinged = None, (), False
        self.answered_last_chance += 1
        return True

    def _may_reply(self, source: Address) -> bool:
        sent = self._replies.get(source, 0)
        if sent >= MAX_REPLIES_PER_SOURCE or (
            not sent and len(self._replies) >= 4 * self.state.max_nodes
        ):
            self._reject("rate-limited", "probe reply withheld")
            return False
        self._replies[source] = sent + 1
        return True

    def _random_members(self, count: int, exclude: set[str]) -> list[NodeState]:
        """Up to ``count`` distinct random live members, none in ``exclude``."""
        ids = self.state.sorted_ids()
        nodes, me = self.state.nodes, self.state.me
        chosen: dict[str, NodeState] = {}
        for _ in range(4 * count):
            if len(chosen) >= count or len(ids) < 2:
                break
            node = nodes.get(ids[self.rng.randrange(len(ids))])
            if (
                node is None
                or node is me
                or node.status != "alive"
                or node.info.id in exclude
            ):
                continue
            chosen[node.info.id] = node
        return list(chosen.values())

    # -- rumours -----------------------------------------------------------------

    def _current(self, node: NodeState) -> _Record | None:
        """Our record of ``node`` if it is of its current generation."""
        record = self._records.get(node.info.id)
        if record is not None and record.generation != node.info.generation:
            self.forget(node.info.id)  # an old incarnation (the node restarted)
            return None
        return record

    def _take_all(
        self,
        rumours: Iterable[wire.Rumour],
        now: float,
        sends: list[Outgoing],
        sender: str,
    ) -> Batch:
        batch = Batch()
        for rumour in dict.fromkeys(rumours):  # a rumour repeated counts once
            batch += self._take(rumour, now, sends, sender)
        return batch

    def _take(
        self,
        r: wire.Rumour,
        now: float,
        sends: list[Outgoing],
        sender: str | None = None,
    ) -> Batch:
        """Apply one rumour (ours, or a peer's that ``sender`` brought); news
        is queued and pushed."""
        me = self.state.me
        if r.node_id == me.info.id:
            if self._about_me(r) and sender is not None:
                self._answer_claim(sender, sends)
            return self._push(sends)
        node = self.state.nodes.get(r.node_id)
        if node is None or node.status == "left":
            return Batch()
        if r.generation != node.info.generation:
            return Batch()  # another incarnation: gossip brings the new one
        record = self._current(node)
        known = 0 if record is None else record.incarnation
        if r.incarnation > known + MAX_INCARNATION_JUMP:
            self._reject("implausible-incarnation", repr(r.node_id))
            return Batch()
        batch = Batch()
        if r.kind == wire.ALIVE:
            batch = self._alive(node, record, r)
        elif node.status == "dead" or r.incarnation < known:
            return Batch()  # already convicted, or stale
        elif sender is not None and not self._claim_allowed(r, record, sender, now):
            return Batch()
        elif r.kind == wire.SUSPECT:
            fresh = node.info.id not in self._suspects
            self._suspect(node, record, r, now)
            if fresh and sender == r.origin:
                self._checking = node.info.id  # first-hand: see _check_suspect
        else:
            batch = self._declared(node, record, r, now)
        return batch + self._push(sends)

    def _claim_allowed(
        self, r: wire.Rumour, record: _Record | None, sender: str, now: float
    ) -> bool:
        """A peer's suspicion or death claim: its origin must be a member we
        know, and a claim new to us costs its sender one of its budget
        (:data:`CLAIM_BURST`, :data:`CLAIMS_PER_PERIOD`): a member naming
        the whole cluster at once gets a few claims checked, not all.

        An origin we do not know is not taken, but not refused as bad input
        either: in a cluster that is still joining it is often a member we
        have not heard of yet (the claim comes again once we have), and a
        forged one changes nothing. Only :attr:`early_claims` counts them.
        """
        origin = self.state.nodes.get(r.origin)
        if origin is None:
            self.early_claims += 1
            return False
        if origin.status == "left":
            self._reject("unknown-origin", f"{r.origin!r} left")
            return False
        held = (
            record is not None
            and record.status == "suspect"
            and record.incarnation == r.incarnation
            and r.origin in record.origins
            and (r.kind == wire.SUSPECT or record.declared is not None)
        )
        if held:
            return True  # old news, relayed again: costs nothing
        tokens, at = self._claim_budget.get(sender, (float(CLAIM_BURST), now))
        rate = CLAIMS_PER_PERIOD / self._base_period()
        tokens = min(float(CLAIM_BURST), tokens + max(0.0, now - at) * rate)
        if tokens < 1.0:
            self._claim_budget[sender] = (tokens, now)
            self._reject("claims-over-rate", repr(sender))
            return False
        self._claim_budget[sender] = (tokens - 1.0, now)
        return True

    def _forget_full_budgets(self, now: float) -> None:
        """Drop the budgets that have refilled (bounded by the members)."""
        if not self._claim_budget:
            return
        full = CLAIM_BURST * self._base_period() / CLAIMS_PER_PERIOD
        for sender, (_, at) in list(self._claim_budget.items()):
            if now - at >= full:
                del self._claim_budget[sender]

    def _about_me(self, r: wire.Rumour) -> bool:
        """A rumour about us: refute a suspicion or declaration, outlive a
        forgery. True if it was a claim against us that we now refute."""
        me = self.state.me.info
        if r.generation != me.generation:
            return False
        if r.kind != wire.ALIVE and r.incarnation < self.incarnation:
            # a claim we refuted already, still held somewhere (it missed
            # our refutation): say it again, no higher
            self._enqueue(self._alive_rumour())
            return True
        if (
            not self.incarnation
            <= r.incarnation
            <= (self.incarnation + MAX_INCARNATION_JUMP)
        ):
            return False
        if r.kind == wire.ALIVE and r.incarnation == self.incarnation:
            return False
        if r.kind != wire.ALIVE:
            self.lhm = min(self.settings.max_lhm, self.lhm + 1)
        self._refute(r.incarnation)
        return r.kind != wire.ALIVE

    def _alive_rumour(self) -> wire.Rumour:
        me = self.state.me.info
        return wire.Rumour(wire.ALIVE, me.id, me.generation, self.incarnation, me.id)

    def _answer_claim(self, sender: str, sends: list[Outgoing]) -> None:
        """A member brought a claim against us: it most likely holds it, so
        it gets our refutation first-hand, whatever the push's random
        choice of members (one small notice per message, to the member's
        own address only)."""
        node = self.state.nodes.get(sender)
        if node is None or node is self.state.me:
            return
        notice = wire.Notice(self.state.me.info.id, (self._alive_rumour(),))
        answer = Outgoing(address_of(node), notice, node)
        if answer not in sends:
            sends.append(answer)

    def _refute(self, above: int) -> None:
        """Raise our incarnation above ``above`` and rumour that we are alive."""
        self._check_generation()
        self.incarnation = min(max(self.incarnation, above) + 1, wire.MAX_COUNTER)
        self.refutations += 1
        self._enqueue(self._alive_rumour())

    def _alive(self, node: NodeState, record: _Record | None, r: wire.Rumour) -> Batch:
        if r.origin != r.node_id:
            return Batch()  # only a node itself says it is alive
        known = 0 if record is None else record.incarnation
        if r.incarnation <= known:
            return Batch()
        self._suspects.discard(node.info.id)
        self._records[node.info.id] = _Record(node.info.generation, r.incarnation)
        self._enqueue(r)
        if node.status != "dead":
            return Batch()
        node = self.state.set_status(node, "alive")
        return Batch((), (node.record(),))

    def _suspect(
        self, node: NodeState, record: _Record | None, r: wire.Rumour, now: float
    ) -> None:
        if (
            record is not None
            and record.status == "suspect"
            and (record.incarnation == r.incarnation)
        ):
            if r.origin in record.origins or (
                len(record.origins) > self.settings.confirmations
            ):
                return
            record.origins.add(r.origin)
            self._enqueue(r)  # a confirmation: news for the others' timers
            return
        self.suspicions += 1
        self._records[node.info.id] = _Record(
            node.info.generation, r.incarnation, "suspect", now, {r.origin}
        )
        self._suspects.add(node.info.id)
        self._enqueue(r)

    def _declared(
        self, node: NodeState, record: _Record | None, r: wire.Rumour, now: float
    ) -> Batch:
        """A peer declared ``node`` dead: believed once we suspect it long enough."""
        if (
            record is None
            or record.status != "suspect"
            or (record.incarnation != r.incarnation)
        ):
            suspicion = r._replace(kind=wire.SUSPECT)
            self._suspect(node, record, suspicion, now)
            record = self._records[node.info.id]
        else:
            record.origins.add(r.origin)
        if record.declared is None:
            self._enqueue(r)  # passed on at once: every member checks it
        record.declared = r.origin  # convicted once old enough: see _expire
        return Batch()

    def _accept_after(self) -> float:
        return self.settings.accept_dead_after * self.min_timeout()

    def _expire(self, now: float, sends: list[Outgoing]) -> Batch:
        batch = Batch()
        accept = self._accept_after()
        for node_id in list(self._suspects):
            record = self._records.get(node_id)
            node = self.state.nodes.get(node_id)
            if (
                record is None
                or node is None
                or node.status != "alive"
                or (record.generation != node.info.generation)
            ):
                self._suspects.discard(node_id)
                continue
            held = now - record.since
            timeout = self.suspicion_timeout(len(record.origins))
            if held < timeout and (record.declared is None or held < accept):
                continue
            wait = self.settings.probe_timeout * self._stage_period()
            if (
                record.final is not None
                and not record.repinged
                and now - record.final > wait
                and self._gap > self._pace()
            ):
                # we were not called for a while (stalled, though not long
                # enough to count as paused): the suspect may have come
                # back meanwhile, ask it once more
                record.final, record.repinged = None, True
            if record.final is None:
                # a last chance: a node that was only paused answers these
                # pings with its refutation, before we convict it (two, so
                # that one lost datagram does not convict a live node)
                record.final = now
                claim = self._rumours_for(node_id, 4)
                seqs = []
                for _ in range(LAST_CHANCE_PINGS):
                    self._seq = (self._seq + 1) % (wire.MAX_SEQ + 1)
                    seqs.append(self._seq)
                    ping = wire.Ping(self.state.me.info.id, self._seq, node_id, claim)
                    sends.append(Outgoing(address_of(node), ping, node))
                record.final_seqs = tuple(seqs)
                continue
            if now - record.final < wait:
                continue
            if record.declared is not None and held < timeout:
                why = f"declared dead by {record.declared!r}"
            else:
                why = f"suspected {held:.1f}s by {len(record.origins)}, not refuted"
            batch += self._convict(node, record, now, why)
        if batch:
            batch += self._push(sends)
        return batch

    def _convict(self, node: NodeState, record: _Record, now: float, why: str) -> Batch:
        node_id = node.info.id
        self._suspects.discard(node_id)
        record.status, record.since, record.declared = "dead", now, None
        self._recent_dead[node_id] = now
        if len(self._recent_dead) > MAX_QUEUED:
            del self._recent_dead[next(iter(self._recent_dead))]
        self.convictions += 1
        self._notes[node_id] = why
        me = self.state.me.info.id
        self._enqueue(
            wire.Rumour(wire.DEAD, node_id, record.generation, record.incarnation, me)
        )
        node = self.state.set_status(node, "dead")
        return Batch((), (node.record(),))

    def _enqueue(self, rumour: wire.Rumour) -> None:
        key = rumour.node_id
        if key not in self._queue and len(self._queue) >= MAX_QUEUED:
            stalest = max(self._queue, key=lambda k: self._queue[k].transmits)
            del self._queue[stalest]
        self._queue[key] = _Queued(rumour)

    def _limit(self) -> int:
        n = len(self.state.nodes)
        return self.settings.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def _rumours_for(
        self, node_id: str, count: int = wire.MAX_RUMOURS
    ) -> tuple[wire.Rumour, ...]:
        """Rumours to piggyback on a message to ``node_id``: its own first.

        A node we hold suspect or dead always gets our claim (the buddy
        system), queued or not, so it can refute at once.
        """
        claim = self._claim(node_id)
        if not self._queue:
            recent = self._recent(node_id, (), count - (claim is not None))
            return (*(() if claim is None else (claim,)), *recent)
        chosen: list[str] = []
        me = self.state.me.info.id
        if me in self._queue:  # our refutation first: it may save us
            chosen.append(me)
        if node_id in self._queue:
            chosen.append(node_id)
            claim = None
        if len(self._queue) > len(chosen):
            ranked = sorted(self._queue, key=lambda k: self._queue[k].transmits)
            chosen.extend(k for k in ranked[:count] if k not in (node_id, me))
        sent = self._send(chosen[: count - (claim is not None)])
        recent = self._recent(node_id, chosen, count - len(sent) - (claim is not None))
        return (*sent, *recent) if claim is None else (claim, *sent, *recent)

    def _recent(
        self, node_id: str, chosen: Iterable[str], room: int
    ) -> tuple[wire.Rumour, ...]:
        """Up to :data:`RECENT_PER_MESSAGE` of our recent convictions, oldest
        first and then rotated, for ``room`` slots left in a message."""
        if not self._recent_dead or room <= 0:
            return ()
        horizon = (self._last_call or 0.0) - RECENT_DEAD_FOR * self.min_timeout()
        out: list[wire.Rumour] = []
        taken = set(chosen)
        for dead_id in list(self._recent_dead):
            if len(out) >= min(room, RECENT_PER_MESSAGE):
                break
            at = self._recent_dead.pop(dead_id)
            record = self._records.get(dead_id)
            if at < horizon or record is None or record.status != "dead":
                continue
            self._recent_dead[dead_id] = at  # to the back: the next go round
            if dead_id != node_id and dead_id not in taken:
                out.append(self._claim(dead_id))  # type: ignore[arg-type]
        return tuple(out)

    def _claim(self, node_id: str) -> wire.Rumour | None:
        """What we hold against ``node_id`` (suspect or dead), as a rumour."""
        record = self._records.get(node_id)
        if record is None or record.status == "alive":
            return None
        kind = wire.SUSPECT if record.status == "suspect" else wire.DEAD
        me = self.state.me.info.id
        return wire.Rumour(kind, node_id, record.generation, record.incarnation, me)

    def _send(self, keys: list[str], copies: int = 1) -> tuple[wire.Rumour, ...]:
        limit = self._limit()
        out = []
        for key in keys:
            item = self._queue[key]
            out.append(item.rumour)
            item.transmits += copies
            item.hot = False
            if item.transmits >= limit:
                del self._queue[key]
        return tuple(out)

    def _push(self, sends: list[Outgoing]) -> Batch:
        """Push hot rumours at once to a few members, if a token allows."""
        hot = [k for k, item in self._queue.items() if item.hot]
        if not hot or self.settings.push_fanout <= 0:
            return Batch()
        # deaths and refutations have a bucket of their own, so that a burst
        # of suspicions does not hold them back
        urgent_only = self._push_tokens < 1
        if urgent_only:
            hot = [k for k in hot if self._queue[k].rumour.kind != wire.SUSPECT]
            if not hot or self._urgent_tokens < 1:
                return Batch()
        peers = self._random_members(self.settings.push_fanout, exclude=set())
        if not peers:
            return Batch()
        if urgent_only:
            self._urgent_tokens -= 1
        else:
            self._push_tokens -= 1
        notice = wire.Notice(
            self.state.me.info.id,
            self._send(hot[: wire.MAX_RUMOURS], copies=len(peers)),
        )
        sends.extend(Outgoing(address_of(p), notice, p) for p in peers)
        return Batch()

    def _reject(self, reason: str, detail: str) -> None:
        if len(self._rejected) < 64:
            self._rejected.append((reason, detail))

    def _verdict(self, sends: list[Outgoing], batch: Batch) -> Verdict:
        rejected, self._rejected = tuple(self._rejected), []
        if not (sends or batch or rejected):
            return _NOTHING
        return Verdict(tuple(sends), batch, rejected)


_NOTHING = Verdict()


def _next_prime(n: int) -> int:
    """The smallest prime >= n (n small: trial division)."""
    candidate = max(n, 2)
    while True:
        if all(candidate % d for d in range(2, math.isqrt(candidate) + 1)):
            return candidate
        candidate += 1
