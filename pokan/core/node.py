"""One gossiping node, sans-IO: messages in, messages and batches out.

The Twisted protocols (and the simulator) feed :meth:`GossipNode.receive`
with decoded messages and send whatever it returns; a ``LoopingCall`` (or the
simulator's virtual clock) calls :meth:`GossipNode.gossip_round`. Randomness
comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import attrs

from pokan import wire
from pokan.core import gc, plausible, reconcile
from pokan.core.peerview import PeerView
from pokan.core.rumours import RumourQueue, Selection
from pokan.core.state import Batch, ClusterState, NodeDelta, NodeState

Address = tuple[str, int]

#: after news, a node with an idle pace runs full rounds for this many rounds
#: (or its idle interval's, if fewer) before idling again: a write spreads
#: to 3^10 nodes in fewer, and a long idle interval does not mean a long
#: busy spell after every write
BUSY_ROUNDS = 10


@attrs.frozen
class Outgoing:
    """A message to send, and the node it is for when known."""

    address: Address
    message: wire.Message
    peer: NodeState | None = None


@attrs.frozen
class Result:
    """What handling one message produced."""

    outgoing: tuple[Outgoing, ...] = ()
    batch: Batch = attrs.field(factory=Batch)
    #: the peer an exchange this node opened just completed with
    exchanged_with: NodeState | None = None
    #: what was refused: (reason, detail), for the driver to count and log
    rejected: tuple[tuple[str, str], ...] = ()
    #: this node's own state written again over a forgery: to persist,
    #: announce and push like a local write (see :meth:`GossipNode.wrote`)
    reasserted: Batch = attrs.field(factory=Batch)


def address_of(node: NodeState) -> Address:
    return (node.info.address, node.info.udp_port)


class GossipNode:
    """The Scuttlebutt protocol for one node over a :class:`ClusterState`."""

    def __init__(
        self,
        state: ClusterState,
        rng: random.Random,
        max_datagram: int = wire.DEFAULT_MAX_DATAGRAM,
        seeds: Iterable[Address] = (),
        rumours: RumourQueue | None = None,
    ) -> None:
        self.state = state
        self.rng = rng
        self.max_datagram = max_datagram
        self.seeds: list[Address] = list(seeds)
        self._cursor = 0
        #: the peer of this round's exchange until its SynAck arrives
        self._awaiting: Address | None = None
        #: the node this round's exchange was opened with, when known
        self._awaiting_peer: NodeState | None = None
        #: the node whose SynAck the last retry gave up on (a hint for SWIM)
        self.missed: NodeState | None = None
        self.rumours = RumourQueue() if rumours is None else rumours
        self._view = PeerView(state)
        #: whether this node bumps its heartbeat (phi detection); False under
        #: SWIM, whose probes need none, so an idle digest stays the same
        self.heartbeats = True
        #: open exchanges with a summary Syn when the last one found the
        #: digests equal (False: always the digest, as protocol version 2)
        self.summaries = True
        #: every this many Syns one lists the digest even when in sync, so a
        #: hash collision (or a forged "in sync") delays deltas a while only
        self.full_every = 8
        #: the last exchange we opened found both digests equal in its range
        self._agreed = False
        #: Syns opened since the last digest Syn
        self._since_full = 0
        #: the cursor and peer of this round's summary Syn, to send the
        #: digest of the same range if the peer says it differs (once)
        self._summarised: tuple[Address, NodeState | None, int] | None = None
        #: exchanges opened with a summary, and those answered "in sync"
        self.summaries_sent = 0
        self.summaries_matched = 0
        #: live peers contacted per round (more: faster failure detection)
        self.fanout = 1
        #: rounds between the exchanges of an idle node (1: every round)
        self.idle_rounds = 1
        #: rounds left before this node counts as idle again
        self._busy = 0
        #: rounds until the next idle round
        self._idle_wait = 0
        #: something learnt or taught since the last round
        self._news = False
        #: rounds run, and those that opened no exchange because idle
        self.rounds = 0
        self.idle_skipped = 0
        #: replies (SynAcks, Acks) one source address gets per round at most
        self.max_replies = plausible.MAX_REPLIES_PER_SOURCE
        #: replies sent per source address this round
        self._replies: dict[Address, int] = {}
        #: nodes new to us brought per source host this round
        self._new_from: dict[str, int] = {}
        #: whether this round re-asserted our state already (one per round)
        self._reasserted = False

    @property
    def budget(self) -> int:
        return reconcile.message_budget(self.max_datagram, self.state.me.info.id)

    # -- rounds -----------------------------------------------------------------

    def gossip_round(self) -> list[Outgoing]:
        """Bump our heartbeat and open exchanges with this round's targets.

        With ``idle_rounds`` above 1, a node with nothing to spread (no
        rumour queued, nothing merged or taught for ``idle_rounds`` rounds,
        or :data:`BUSY_ROUNDS` if fewer) opens one exchange, with a single
        live peer, every ``idle_rounds`` rounds only, and sends nothing in
        the others.
        """
        self.rounds += 1
        self.rumours.tick()
        self._new_round()
        fanout = self.fanout
        if self.idle_rounds > 1:
            if self._news or len(self.rumours):
                self._news = False
                self._busy = min(self.idle_rounds, BUSY_ROUNDS)
            if self._busy > 0:
                self._busy -= 1
                self._idle_wait = 0
            elif self._idle_wait > 0:
                self._idle_wait -= 1
                self._awaiting = None
                self.idle_skipped += 1
                return []
            else:
                self._idle_wait = self.idle_rounds - 1
                fanout = 1
        if self.heartbeats:
            self.state.me.heartbeat += 1
        targets = self.pick_targets(fanout)
        self._awaiting = targets[0][0] if targets else None
        self._awaiting_peer = targets[0][1] if targets else None
        return self._open(targets)

    @property
    def quiet_rounds(self) -> int:
        """Rounds ahead that send nothing unless news comes first."""
        return self._idle_wait if self.idle else 0

    def skip_rounds(self, count: int) -> None:
        """Account for up to ``count`` quiet rounds the driver did not run."""
        count = min(count, self._idle_wait)
        if count > 0:
            self._idle_wait -= count
            self.rounds += count
            self.idle_skipped += count
            self.rumours.tick()
            self._new_round()

    def _new_round(self) -> None:
        """Per-round limits start again."""
        self._replies.clear()
        self._new_from.clear()
        self._reasserted = False

    @property
    def awaiting(self) -> bool:
        """Whether this round's exchange still waits for its SynAck."""
        return self._awaiting is not None

    @property
    def idle(self) -> bool:
        """Whether this node is in its idle pace (never with ``idle_rounds`` 1)."""
        return (
            self.idle_rounds > 1
            and self._busy == 0
            and not self._news
            and not len(self.rumours)
        )

    def retry_round(self) -> list[Outgoing]:
        """Half a round later: if this round's SynAck never came, try another peer.

        Under datagram loss this keeps the exchanges a node completes close
        to one per round; without loss it sends nothing.
        """
        if self._awaiting is None:
            return []
        missed, self._awaiting = self._awaiting, None
        self.missed = self._awaiting_peer
        for _ in range(4):
            targets = [t for t in self.pick_targets()[:1] if t[0] != missed]
            if targets:
                return self._open(targets)
        return []

    def _open(self, targets: list[tuple[Address, NodeState | None]]) -> list[Outgoing]:
        """A Syn for each target: rumours first, the digest slice in the rest."""
        if not targets:
            return []
        # a target that may not know us (an unknown seed, a node not alive
        # here) gets our identity too: it then counts us a member and its
        # reply is not bounded by the size of our datagram
        unsure = [p is None or p.status != "alive" for _, p in targets]
        intro, room = self._introduction(self.budget) if any(unsure) else ([], 0)
        budget = self.budget - room
        news, used = self.rumours.take(self.state, budget // 2)
        self._summarised = None
        if self._summary_due(targets, unsure):
            self._summarised = (*targets[0], self._cursor)
            self.summaries_sent += 1
            syn, self._cursor = reconcile.make_summary_syn(
                self.state, self._cursor, budget - used - 5
            )
        else:
            self._since_full = 0
            syn, self._cursor = reconcile.make_syn(
                self.state, self._cursor, budget - used - 5
            )
        if news:
            syn = attrs.evolve(syn, deltas=tuple(news))
        introduced = attrs.evolve(syn, deltas=(*intro, *syn.deltas)) if intro else syn
        return [
            Outgoing(address, introduced if doubt else syn, peer)
            for (address, peer), doubt in zip(targets, unsure, strict=True)
        ]

    def _summary_due(
        self, targets: list[tuple[Address, NodeState | None]], unsure: list[bool]
    ) -> bool:
        """Whether this round's Syn is a summary rather than the digest.

        Only to a single live member, after an exchange that found the digests
        equal, with nothing learnt since, and never ``full_every`` times in a
        row. Otherwise (and always under phi, whose heartbeats change every
        round) the digest, as before summaries existed.
        """
        if not (self.summaries and self._agreed) or len(targets) != 1 or unsure[0]:
            return False
        self._since_full += 1
        return self._since_full < self.full_every

    def _resend_digest(self, source: Address) -> list[Outgoing]:
        """The peer's hash differed from ours: the digest of the same range."""
        if self._summarised is None or self._summarised[0] != source:
            return []  # not the summary we sent this round, or resent already
        _, peer, cursor = self._summarised
        self._summarised = None
        self._since_full = 0
        syn, _ = reconcile.make_syn(self.state, cursor, self.budget - 5)
        self._awaiting = source
        return [Outgoing(source, syn, peer)]

    def wrote(self, batch: Batch) -> list[Outgoing]:
        """Rumour this node's own writes; the pushes to send for them now."""
        self.rumours.wrote(batch)
        if batch:
            self._agreed = False
        return self._pushes()

    def push(self) -> list[Outgoing]:
        """Acks pushing the hot rumours to a few peers now, if tokens allow."""
        return self._pushes()

    def _pushes(self, source: Address | None = None) -> list[Outgoing]:
        """Acks pushing hot rumours to a few peers at once, if tokens allow.

        Never to ``source``, the peer whose message brought them.
        """
        peers = self.rumours.push_targets(self.state, self.rng, exclude=source)
        if not peers:
            return []
        budget = max(self.budget // len(peers), 256)
        news, _ = self.rumours.take(
            self.state, budget, hot_only=True, copies=len(peers)
        )
        if not news:
            return []
        push = wire.Ack(self.state.me.info.id, tuple(news))
        return [Outgoing(address_of(p), push, p) for p in peers]

    def pick_targets(
        self, fanout: int | None = None
    ) -> list[tuple[Address, NodeState | None]]:
        """``fanout`` random live peers; sometimes a dead peer and a seed too.

        As Cassandra's gossiper does: a dead peer with probability
        dead/(live+1), so a healed partition merges back; a seed when no peer
        is known alive, or with probability seeds/(live+dead+1).
        """
        fanout = self.fanout if fanout is None else fanout
        view = self._view
        view.refresh()
        chosen: list[tuple[Address, NodeState | None]] = []
        if view.live and fanout > 1:
            for node_id in self.rng.sample(view.live, min(fanout, len(view.live))):
                if (mine := view.current(node_id, alive=True)) is not None:
                    chosen.append((address_of(mine), mine))
        elif view.live:
            mine = view.current(self.rng.choice(view.live), alive=True)
            if mine is None and view.live:
                mine = view.current(self.rng.choice(view.live), alive=True)
            if mine is not None:
                chosen.append((address_of(mine), mine))
        live, dead = view.live, view.dead  # a node that left is in neither
        if dead and self.rng.random() < len(dead) / (len(live) + 1):
            mine = view.current(self.rng.choice(dead), alive=False)
            if mine is not None:
                chosen.append((address_of(mine), mine))
        seeds = self._seed_addresses(exclude={a for a, _ in chosen})
        if seeds and (
            not live or self.rng.random() < len(seeds) / (len(live) + len(dead) + 1)
        ):
            address = self.rng.choice(seeds)
            chosen.append((address, self._node_at(address)))
        return chosen

    def _seed_addresses(self, exclude: set[Address]) -> list[Address]:
        own = address_of(self.state.me)
        found = dict.fromkeys(self.seeds)
        nodes = self.state.nodes
        for node_id in self._view.seeds:
            node = nodes.get(node_id)
            if node is not None:
                found[address_of(node)] = None
        return sorted(a for a in found if a != own and a not in exclude)

    def _node_at(self, address: Address) -> NodeState | None:
        for node in self.state.others():
            if address_of(node) == address:
                return node
        return None

    # -- messages ---------------------------------------------------------------

    def receive(
        self, message: wire.Message, source: Address, size: int | None = None
    ) -> Result:
        """Handle one datagram's message from ``source``.

        ``size``: the datagram's length in bytes, less the seal's (the reply
        is sealed too, or not, alike). A source that is not a member (no node
        we track that has not left gossips from it) gets a reply no bigger
        than that, and no push; every source gets at most
        ``MAX_REPLIES_PER_SOURCE`` replies per round.
        """
        member = self.is_member(message, source)
        budget = self.budget
        stranger = not member and size is not None
        if size is not None and stranger:
            budget = min(budget, reconcile.reply_room(size, self.state.me.info.id))
        # a node we hold as left or dead knows us: the room goes to what we
        # hold of it (how it learns that it is held left, and re-asserts)
        introduce = stranger and self._tracked(message, source) is None
        result = self._handle(message, source, budget, member, introduce)
        if not self._news and (
            result.batch or any(_teaches(o.message) for o in result.outgoing)
        ):
            self._news = True  # keep the fast pace while peers catch up
        if result.batch:
            self._agreed = False  # our digest changed: peers may lack it
        return self._finish(result)

    def _finish(self, result: Result) -> Result:
        """Add what was refused, and our re-asserted state if it is due."""
        reasserted = self.reassert()
        if not (self.state.has_rejected or reasserted):
            return result
        return attrs.evolve(
            result,
            rejected=result.rejected + self.state.drain_rejected(),
            reasserted=reasserted,
        )

    def reassert(self) -> Batch:
        """Undo forged claims about us, once a round at most (coalesced)."""
        if self._reasserted or not self.state.claims:
            return Batch()
        self._reasserted = True
        return self.state.reassert()

    def is_member(self, message: wire.Message, source: Address) -> bool:
        """Whether ``source`` is the socket of a node we track, not left."""
        node = self._tracked(message, source)
        return node is not None and node is not self.state.me and node.status != "left"

    def _tracked(self, message: wire.Message, source: Address) -> NodeState | None:
        """The node the sender names, if we track it at that source (any status)."""
        node = self.state.nodes.get(getattr(message, "sender", ""))
        return node if node is not None and address_of(node) == source else None

    def _may_reply(self, source: Address) -> bool:
        """Count a reply to ``source``; False if over its share this round."""
        sent = self._replies.get(source)
        if sent is None and len(self._replies) >= 4 * self.state.max_nodes:
            sent = self.max_replies  # a flood of sources
        if sent is not None and sent >= self.max_replies:
            self.state.reject("rate-limited", "reply withheld")
            return False
        self._replies[source] = (sent or 0) + 1
        return True

    def _merge(self, deltas: Iterable[NodeDelta], source: Address) -> Batch:
        """Merge a datagram's deltas, within the new nodes its source may add."""
        host = source[0]
        brought = self._new_from.get(host, 0)
        if brought == 0 and len(self._new_from) >= self.state.max_nodes:
            brought = plausible.MAX_NEW_PER_SOURCE
        limit = min(
            plausible.MAX_NEW_PER_MESSAGE, plausible.MAX_NEW_PER_SOURCE - brought
        )
        before = self.state.added
        batch = self.rumours.merge(self.state, deltas, new_limit=limit)
        if self.state.added != before:
            self._new_from[host] = brought + self.state.added - before
        return batch

    def _claims_in(self, digest: Iterable[wire.DigestEntry]) -> None:
        """Note what a digest says of our own record (see ClusterState.claim)."""
        me = self.state.me.info
        for entry in digest:
            if entry.node_id == me.id and entry.generation == me.generation:
                self.state.claim(entry.version, entry.heartbeat, entry.left)

    def _observe(self, digest: Iterable[wire.DigestEntry]) -> None:
        """Take a digest's heartbeats without answering it (as replies do)."""
        observe = self.state.observe_heartbeat
        for entry in digest:
            observe(entry.node_id, entry.generation, entry.heartbeat)

    def _introduction(self, budget: int) -> tuple[list[NodeDelta], int]:
        """Our identity alone (no writes), for a bounded reply to a stranger.

        It goes first so that the stranger learns who we are even when its
        small datagram leaves no room for more: it then counts us a member,
        and its replies (and so ours) are no longer bounded.
        """
        me = self.state.me
        header = NodeDelta(me.info, me.heartbeat, 0, 0, ())
        size = wire.packed_size(wire.pack_delta_header(header)) + 6
        return ([header], size) if size <= budget else ([], 0)

    def _handle(
        self,
        message: wire.Message,
        source: Address,
        budget: int,
        member: bool,
        stranger: bool = False,
    ) -> Result:
        if isinstance(message, wire.Syn):
            # a fresh heartbeat in the reply: peers hear it more than once a round
            if self.heartbeats:
                self.state.me.heartbeat += 1
            self._claims_in(message.digest)
            batch = self._merge(message.deltas, source)
            if budget < 0 or not self._may_reply(source):
                self._observe(message.digest)
                return Result(batch=batch)
            if message.summary is not None:
                return self._answer_summary(message, source, batch, budget, member)
            intro, used = self._introduction(budget) if stranger else ([], 0)
            budget -= used
            news = self.rumours.select(self.state, budget // 2, known=message.deltas)
            deltas, differing = reconcile.respond_to_syn(
                self.state, message, budget - news.size
            )
            if not deltas and news.deltas:
                # a delta too big to share the datagram with rumours goes alone
                alone = reconcile.respond_to_syn(self.state, message, budget)
                if alone[0]:
                    (deltas, differing), news = alone, Selection()
            self.rumours.sent(self.state, news)
            reply = wire.SynAck(
                self.state.me.info.id,
                (*intro, *news.deltas, *deltas),
                tuple(differing),
            )
            pushes = self._pushes(source) if member else []
            return Result((Outgoing(source, reply), *pushes), batch)
        if isinstance(message, wire.SynAck):
            awaited = source == self._awaiting
            if awaited:
                self._awaiting = None
            if message.in_sync is not None:
                return self._summary_answered(message, source, awaited)
            if awaited and self._summarised is None:
                # the digests agree in this range if the reply differs in nothing
                self._agreed = not (message.deltas or message.digest)
            self._claims_in(message.digest)
            batch = self._merge(message.deltas, source)
            exchanged = self.state.nodes.get(message.sender)
            if budget < 0 or not self._may_reply(source):
                self._observe(message.digest)
                return Result(batch=batch, exchanged_with=exchanged)
            intro, used = self._introduction(budget) if stranger else ([], 0)
            budget -= used
            news = self.rumours.select(self.state, budget // 2, known=message.deltas)
            deltas = reconcile.respond_to_syn_ack(
                self.state, message.digest, budget - news.size
            )
            if not deltas and news.deltas:
                whole = reconcile.respond_to_syn_ack(self.state, message.digest, budget)
                if whole:
                    deltas, news = whole, Selection()
            self.rumours.sent(self.state, news)
            deltas = [*intro, *news.deltas, *deltas]
            out = (
                (Outgoing(source, wire.Ack(self.state.me.info.id, tuple(deltas))),)
                if deltas
                else ()
            )
            pushes = self._pushes(source) if member else []
            return Result((*out, *pushes), batch, exchanged)
        if isinstance(message, wire.Ack):
            batch = self._merge(message.deltas, source)
            pushes = self._pushes(source) if member else []
            return Result(tuple(pushes), batch)
        if isinstance(message, wire.Goodbye):
            return self._goodbye(message, source)
        if isinstance(message, wire.Forget):
            return self._forget(message, source, member)
        return Result()  # TCP-only messages are not handled here

    def _answer_summary(
        self,
        syn: wire.Syn,
        source: Address,
        batch: Batch,
        budget: int,
        member: bool,
    ) -> Result:
        """Say whether a summary Syn matches our digest; rumours besides."""
        if budget < 3:  # a stranger's tiny datagram: no room even for the verdict
            return Result(batch=batch)
        in_sync = member and reconcile.summary_matches(self.state, syn)
        news = self.rumours.select(self.state, budget // 2, known=syn.deltas)
        self.rumours.sent(self.state, news)
        reply = wire.SynAck(self.state.me.info.id, tuple(news.deltas), (), in_sync)
        pushes = self._pushes(source) if member else []
        return Result((Outgoing(source, reply), *pushes), batch)

    def _summary_answered(
        self, message: wire.SynAck, source: Address, awaited: bool
    ) -> Result:
        """The verdict on our summary Syn: done if in sync, else the digest.

        Only from the peer we sent it to, and once: a forged "in sync" skips
        one exchange, a forged "differs" costs one digest Syn.
        """
        batch = self._merge(message.deltas, source)
        exchanged = self.state.nodes.get(message.sender)
        if not awaited or self._summarised is None or self._summarised[0] != source:
            return Result(batch=batch)
        if message.in_sync:
            self.summaries_matched += 1
            self._summarised = None
            return Result(batch=batch, exchanged_with=exchanged)
        self._agreed = False
        return Result(tuple(self._resend_digest(source)), batch)

    def _goodbye(self, message: wire.Goodbye, source: Address) -> Result:
        """Believe a Goodbye only from the socket of the node it names."""
        node = self.state.nodes.get(message.sender)
        if node is None or node is self.state.me:
            return Result()
        if address_of(node) != source:
            detail = f"for {message.sender!r} from {format_address(source)}"
            return Result(rejected=(("forged-goodbye", detail),))
        return Result(batch=self.state.mark(message.sender, message.generation, "left"))

    def _forget(self, message: wire.Forget, source: Address, member: bool) -> Result:
        """Forget a node as a member asks, only if we hold it dead or left at
        that generation: a live node is never removed by a message."""
        node = self.state.nodes.get(message.node_id)
        refused = None
        if not member:
            refused = "not from a member"
        elif node is None:
            return Result()  # forgotten here already, or never known
        elif node is self.state.me:
            refused = "names this node itself"
        elif node.status == "alive":
            refused = "names a node alive here"
        elif node.info.generation != message.generation:
            refused = "names another generation"
        if refused is not None:
            detail = f"of {message.node_id!r} from {format_address(source)}: {refused}"
            return Result(rejected=(("forget-refused", detail),))
        gc.forget(self.state, message.node_id)
        return Result(batch=Batch((), (), (message.node_id,)))

    def goodbye(self) -> list[Outgoing]:
        """Goodbyes for the other nodes that have not left, to send when stopping.

        The dead ones too: they may only be cut off, and hear it once back.
        """
        bye = wire.Goodbye(self.state.me.info.id, self.state.me.info.generation)
        return [
            Outgoing(address_of(n), bye, n)
            for n in self.state.others()
            if n.status != "left"
        ]

    # -- full sync (TCP) --------------------------------------------------------

    def full_state(self) -> tuple[NodeDelta, ...]:
        return tuple(self.state.full_deltas())

    def merge_full(
        self, deltas: Iterable[NodeDelta], new_limit: int | None = None
    ) -> Batch:
        """Merge a full state; a few new nodes (a joiner) become rumours.

        ``new_limit``: nodes new to us it may add (a joiner's Hello: a few;
        the Welcome answering our own Hello: None, up to ``max_nodes``).
        What it refused waits in ``state.rejected``; call :meth:`reassert`
        after it.
        """
        batch = self.rumours.merge(self.state, deltas, max_new=32, new_limit=new_limit)
        if batch:
            self._news = True
        return batch


def format_address(address: Address) -> str:
    """A source address for a log line (escaped: it may come from anywhere)."""
    return repr(f"{address[0]}:{address[1]}")


def _teaches(message: wire.Message) -> bool:
    """Whether a reply carries writes (a peer was behind us)."""
    return isinstance(message, wire.SynAck | wire.Ack) and any(
        d.entries or d.version > d.since for d in message.deltas
    )
