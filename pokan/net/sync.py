"""A node's TCP full syncs: joining through seeds, resets, Hellos answered.

:class:`FullSyncs` opens the full push-pull syncs of a :class:`pokan.Server`
(the join through its seeds, retried by :class:`~pokan.net.seeds.SeedSync`;
the reset of a peer behind our GC point; :meth:`pokan.Server.join`) and
answers the Hellos of the nodes that sync with it. What a sync brings is
merged by the Engine and carried out by the Server's callbacks.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from pokan import wire
from pokan.core.address import check_ip, family, family_name, format_host_port
from pokan.core.engine import Engine, Output
from pokan.core.joinbudget import JoinBudget
from pokan.core.state import NodeInfo
from pokan.core.transitionlog import Seconds, ThrottledLines
from pokan.errors import ConfigurationError
from pokan.net.badinput import BadInputReporter
from pokan.net.events import EventDispatcher
from pokan.net.heap import release_free_heap
from pokan.net.meters import Meters
from pokan.net.protocols import SyncClientFactory, SyncClientProtocol
from pokan.net.seeds import SeedIsSelf, SeedSync
from pokan.net.settings import Settings
from pokan.peer import Peer
from pokan.wire.envelope import Envelope

log = Logger()

#: what carries out an Output (sends, syncs, commit), naming its source
CarryOut = Callable[[Output, str], defer.Deferred[None]]
#: what counts what the core refused: (channel, source, host, rejected)
Refused = Callable[[str, str, str, Iterable[tuple[str, str]]], None]


class FullSyncs:
    """The full syncs of one node, opened and answered.

    ``reactor`` and ``bad_input`` are asked for when a sync opens (both are
    known once the node starts); ``now`` is the Engine's time.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        envelope: Envelope,
        events: EventDispatcher,
        meters: Meters,
        reactor: Callable[[], Any],
        bad_input: Callable[[], BadInputReporter | None],
        now: Callable[[], float],
        rng: random.Random,
        carry_out: CarryOut,
        refused: Refused,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._envelope = envelope
        self._events = events
        self._meters = meters
        self._reactor = reactor
        self._bad_input = bad_input
        self._now = now
        self._rng = rng
        self._carry_out = carry_out
        self._refused = refused
        #: joining through the seeds, once started with seeds
        self.seed_sync: SeedSync | None = None
        #: seeds that said this node is of another cluster: seed -> why
        self.refusals: dict[str, str] = {}
        #: seeds named by a host name that did not resolve for UDP gossip: their
        #: sync's own failures are logged (pokan.net.seeds); once one syncs,
        #: its UDP address comes from its Welcome
        self.unresolved: set[tuple[str, int]] = set()
        #: TCP syncs under way, cancelled when the node stops
        self.syncing: dict[defer.Deferred[Any], SyncClientProtocol] = {}
        self._join_budget = JoinBudget()
        #: a line any peer can cause: full syncs answered
        self._sync_log = ThrottledLines(Seconds(now), "full syncs")

    @property
    def synced(self) -> bool:
        """Whether a full sync with a seed completed (ever)."""
        return self.seed_sync is not None and self.seed_sync.synced_with is not None

    # -- joining through the seeds ---------------------------------------------

    def join(self, seeds: list[tuple[str, int]]) -> None:
        """Gossip with the seeds too, and sync with the first that answers."""
        self._learn_seed_addresses(seeds)
        self.seed_sync = SeedSync(self._reactor(), seeds, self.sync_with, rng=self._rng)
        self.seed_sync.start()

    def rejoin(self) -> None:
        """With no live peer, join through the seeds again (TCP full sync)."""
        sync = self.seed_sync
        if sync is None or not sync.idle:
            return
        if self._engine.has_live_peer():
            return
        log.info("no live peer known; syncing with the seeds again")
        sync.restart()

    def stop(self) -> None:
        """Stop joining; cancel the syncs under way."""
        if self.seed_sync is not None:
            self.seed_sync.stop()
        for d, proto in list(self.syncing.items()):
            if proto.transport is not None:
                proto.transport.abortConnection()
            d.cancel()

    def _learn_seed_addresses(self, seeds: list[tuple[str, int]]) -> None:
        """Let UDP gossip reach the seeds too (it needs IP addresses)."""
        for host, port in seeds:
            try:
                self._engine.node.seeds.append((check_ip(host), port))
            except ConfigurationError:
                d = self._reactor().resolve(host)
                d.addCallback(self._learn_resolved_seed, host, port)
                d.addErrback(lambda _, seed=(host, port): self.unresolved.add(seed))

    def _learn_resolved_seed(self, ip: str, host: str, port: int) -> None:
        address = self._settings.address
        if family(ip) != family(address):
            log.warn(
                "seed {host} resolves to {ip}, not an {family} address: not"
                " gossiped with over UDP",
                host=host,
                ip=ip,
                family=family_name(address),
            )
            return
        self._engine.node.seeds.append((ip, port))

    # -- syncs opened ----------------------------------------------------------

    def reset(self, host: str, port: int, sender: str) -> None:
        """A peer behind our GC point of some node gets a full sync (a reset)."""
        log.info("peer {peer} is behind what GC removed; full sync", peer=sender)
        d = self.sync_with(host, port)
        d.addErrback(
            lambda f: log.warn(
                "reset sync with {peer} failed: {error}",
                peer=sender,
                error=f.getErrorMessage(),
            )
        )

    def sync_with(self, host: str, port: int) -> defer.Deferred[Peer]:
        """One full push-pull sync over TCP with the node at host:port."""
        settings, events, engine = self._settings, self._events, self._engine
        seed = format_host_port(host, port)
        started = self._now()
        before = self.peer_at(host, port)
        events.fire("before_sync", before, peer=before)
        proto = SyncClientProtocol(
            wire.Hello(engine.id, engine.full_state()),
            self._bad_input(),  # type: ignore[arg-type]
            settings.max_frame,
            settings.sync_timeout,
            settings.max_datagram,
            max_hello=settings.max_hello,
            envelope=self._envelope,
        )
        proto.earlier_refusal = self.refusals.get(seed)
        endpoint = client_endpoint(self._reactor(), host, port, settings.sync_timeout)
        connected: defer.Deferred[Any] = endpoint.connect(SyncClientFactory(proto))
        self.syncing[connected] = proto
        connected.addCallback(lambda _: proto.welcome)

        def merged(welcome: wire.Welcome) -> defer.Deferred[Peer]:
            if welcome.sender == engine.id:  # a seed name that resolves to us
                ours = {settings.address, host}
                engine.node.seeds = [
                    a for a in engine.node.seeds if not (a[1] == port and a[0] in ours)
                ]
                raise SeedIsSelf(seed)
            d = self.merge_full(welcome.deltas)
            release_free_heap()  # what the frames and their decoding left free
            node = engine.state.nodes.get(welcome.sender)
            # before_sync's kind: a Peer, as known once merged (if it can be)
            peer = Peer(node) if node is not None else self.peer_at(host, port)
            if node is not None:
                self._seed_synced(host, port, node.info)
            d.addCallback(lambda _: events.fire("after_sync", peer, peer=peer))
            return d.addCallback(lambda _: peer)

        def finished(result: Any) -> Any:
            self.syncing.pop(connected, None)
            ok = not isinstance(result, Failure)
            self._meters.syncs.finished(self._now() - started, ok)
            if proto.refusal is not None and proto.refusal.startswith("it is of"):
                self.refusals[seed] = proto.refusal  # told once an hour only
            elif not isinstance(result, Failure):
                self.refusals.pop(seed, None)
            return result

        return connected.addCallback(merged).addBoth(finished)

    def peer_at(self, host: str, tcp_port: int) -> Peer:
        """The Peer synced with at host:port: the node known there, if any,
        else a seed known only by that address (generation 0)."""
        for node in self._engine.state.others():
            if node.info.address == host and node.info.tcp_port == tcp_port:
                return Peer(node)
        return Peer.unknown_seed(host, tcp_port)

    def _seed_synced(self, host: str, tcp_port: int, info: NodeInfo) -> None:
        """Gossip with a synced seed on its UDP port, not the TCP port given;
        one whose name did not resolve at first, from now on too."""
        node = self._engine.node
        given = {(host, tcp_port), (info.address, tcp_port)}
        real = (info.address, info.udp_port)
        seeds = [a for a in node.seeds if a not in given]
        unresolved = (host, tcp_port) in self.unresolved
        self.unresolved.discard((host, tcp_port))
        if (unresolved or len(seeds) < len(node.seeds)) and real not in seeds:
            seeds.append(real)
        node.seeds = seeds

    # -- what a sync brings ----------------------------------------------------

    def merge_full(
        self,
        deltas: Iterable[Any],
        new_limit: int | None = None,
        peer: str = "a full sync",
    ) -> defer.Deferred[None]:
        """Merge a full state (a Hello's or a Welcome's) and carry it out."""
        output = self._engine.merge_full(
            deltas, self._now(), new_limit=new_limit, wall=time.time()
        )
        self._note_taken_back(output.taken_back, peer)
        self._refused("tcp", peer, peer, output.rejected)
        return self._carry_out(output, peer)

    def on_hello(
        self, hello: wire.Hello, host: str = ""
    ) -> defer.Deferred[wire.Welcome]:
        """Answer a node's full sync: merge its Hello, send our Welcome."""
        # a joiner brings itself and a few more, a host's joiners a few a
        # minute: not a cluster of their own
        engine = self._engine
        peer = repr(hello.sender)
        now = self._now()
        self._meters.syncs.answered += 1
        known = len(engine.state.nodes)
        room = self._join_budget.available(host, now)
        d = self.merge_full(hello.deltas, room, peer)
        self._join_budget.spend(host, len(engine.state.nodes) - known, now)
        self._sync_log.emit(
            "full sync",
            "full sync with {peer} (from {host})",
            peer=peer,
            host=host or "?",
        )
        return d.addCallback(
            lambda _: wire.Welcome(engine.id, engine.node.full_state())
        )

    def _note_taken_back(self, count: int, peer: str) -> None:
        if count:
            log.info(
                "the store had no record of this node: took back {count} of its"
                " keys from the cluster (through {peer})",
                count=count,
                peer=peer,
            )


def client_endpoint(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """A TCP client endpoint; a plain one for an IP address.

    ``HostnameEndpoint`` resolves even an IP address, in the reactor's
    thread pool, and imports the idna tables: a thread and about a
    megabyte of memory for nothing, in every node that joins through a seed.
    """
    from twisted.internet import endpoints

    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)
    plain = (
        endpoints.TCP6ClientEndpoint
        if ip.version == 6
        else endpoints.TCP4ClientEndpoint
    )
    return plain(reactor, str(ip), port, timeout=timeout)
