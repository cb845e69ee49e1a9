"""Server: the user-facing node, and the Twisted service that runs it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import attrs
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from pokan import wire
from pokan.core import plausible
from pokan.core import settings as settings_module
from pokan.core import write_checks as checks
from pokan.core.address import (
    DEFAULT_PORT,
    check_port,
    format_host_port,
)
from pokan.core.engine import Engine, Output
from pokan.core.failure import DEFAULT_THRESHOLD
from pokan.core.membership import (
    DEFAULT_DEAD_NODE_TTL,
    DEFAULT_TOMBSTONE_TTL,
    Membership,
)
from pokan.core.node import Address, GossipNode, Outgoing
from pokan.core.settings import (
    DEFAULT_FAILURE_DETECTOR,
    check_fanout,
    check_idle_interval,
    check_interval,
    check_max_datagram,
)
from pokan.core.state import (
    Batch,
    ClusterState,
    NodeInfo,
    NodeRecord,
    Value,
)
from pokan.core.transitionlog import Seconds, TransitionLog
from pokan.errors import ConfigurationError, StartupError
from pokan.net import (
    banner,
    keys,
    reactors,
    restore,
    shutdown,
    views,
)
from pokan.net.badinput import BadInputReporter
from pokan.net.blocking import BlockingRun
from pokan.net.commits import Commits
from pokan.net.events import (
    AFTER_EVENTS,
    BEFORE_EVENTS,
    DEFAULT_HANDLER_TIMEOUT,
    ON_EVENTS,
    EventDispatcher,
    registrar,
)
from pokan.net.faults import Faults
from pokan.net.heap import release_free_heap
from pokan.net.listen_errors import ListenError
from pokan.net.meters import Meters
from pokan.net.operating import Operations
from pokan.net.pacing import Pacing
from pokan.net.ports import Ports, sync_factory
from pokan.net.protocols import (
    DEFAULT_MAX_SYNC_CONNECTIONS,
    DEFAULT_MAX_SYNC_PER_HOST,
    GossipProtocol,
)
from pokan.net.refusals import Refusals
from pokan.net.settings import (
    API_NAMES,
    MAX_FRAME_LIMIT,
    Settings,
    check_max_frame,
    check_max_hello,
    check_seeds,
    check_sync_cap,
)
from pokan.net.sync import FullSyncs
from pokan.net.watch import Watches
from pokan.peer import Peer
from pokan.store import IStore, MemoryStore, Snapshot
from pokan.store.interface import IAttachedStore, snapshot_of
from pokan.wire.envelope import Envelope

log = Logger()

DEFAULT_INTERVAL = settings_module.DEFAULT_INTERVAL
DEFAULT_FANOUT = settings_module.DEFAULT_FANOUT


class Server(service.Service, Operations):
    """A pokan node.

    ``Server("10.0.0.8")`` listens on TCP and UDP port 5555 of that address.
    Configure it, register handlers, then either ``start()`` (blocking, runs
    the reactor) or add it to a Twisted application as a service.
    """

    def __init__(
        self,
        address: str,
        *,
        gossip_with: str | Iterable[str] | None = None,
        tcp_port: int = DEFAULT_PORT,
        udp_port: int = DEFAULT_PORT,
        gossip_interval: float = DEFAULT_INTERVAL,
        max_datagram: int = wire.DEFAULT_MAX_DATAGRAM,
        max_frame: int = wire.DEFAULT_MAX_FRAME,
        sync_timeout: float = 10.0,
        max_hello: int | None = None,
        max_sync_connections: int = DEFAULT_MAX_SYNC_CONNECTIONS,
        max_sync_per_host: int = DEFAULT_MAX_SYNC_PER_HOST,
        store: IStore | None = None,
        reactor: Any = None,
        rng: random.Random | None = None,
        clock: Any = None,
        phi_threshold: float = DEFAULT_THRESHOLD,
        tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL,
        dead_node_ttl: float = DEFAULT_DEAD_NODE_TTL,
        gossip_fanout: int = DEFAULT_FANOUT,
        drop_rate: float = 0.0,
        idle_interval: float | None = None,
        probe_interval: float | None = None,
        cluster: str = wire.DEFAULT_CLUSTER,
        key_file: str | None = None,
        max_nodes: int = plausible.DEFAULT_MAX_NODES,
        handler_timeout: float = DEFAULT_HANDLER_TIMEOUT,
        control: str | None = None,
        control_token_file: str | None = None,
        failure_detector: str = DEFAULT_FAILURE_DETECTOR,
    ) -> None:
        settings = Settings.checked(
            address=address,
            seeds=gossip_with,
            tcp_port=tcp_port,
            udp_port=udp_port,
            gossip_interval=gossip_interval,
            max_datagram=max_datagram,
            max_frame=max_frame,
            sync_timeout=sync_timeout,
            max_hello=max_hello,
            max_sync_connections=max_sync_connections,
            max_sync_per_host=max_sync_per_host,
            phi_threshold=phi_threshold,
            tombstone_ttl=tombstone_ttl,
            dead_node_ttl=dead_node_ttl,
            fanout=gossip_fanout,
            drop_rate=drop_rate,
            idle_interval=idle_interval,
            probe_interval=probe_interval,
            cluster=cluster,
            key_file=key_file,
            max_nodes=max_nodes,
            handler_timeout=handler_timeout,
            failure_detector=failure_detector,
        )
        self._configure(settings, store, reactor, rng, clock)
        self._control = self._control_of(control, control_token_file)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        store: IStore | None = None,
        reactor: Any = None,
        rng: random.Random | None = None,
        clock: Any = None,
        control: str | None = None,
        control_token_file: str | None = None,
    ) -> Server:
        """A node of settings checked already (:meth:`Settings.checked`)."""
        server = cls.__new__(cls)
        server._configure(settings, store, reactor, rng, clock)
        server._control = server._control_of(control, control_token_file)
        return server

    def _configure(
        self,
        settings: Settings,
        store: IStore | None,
        reactor: Any,
        rng: random.Random | None,
        clock: Any,
    ) -> None:
        self._settings = settings
        self._address = settings.address
        self._tcp_port = settings.tcp_port
        self._udp_port = settings.udp_port
        self._max_datagram = settings.max_datagram
        self._seeds: list[tuple[str, int]] = list(settings.seeds)
        self._store: IStore = store if store is not None else MemoryStore()
        self._reactor = reactor
        self._clock = clock  # IReactorTime: timestamps, rounds, checks; or reactor
        self._epoll = False
        self._rng = rng if rng is not None else random.Random()
        self.events = EventDispatcher(
            timeout=settings.handler_timeout, clock=self._timer
        )
        self._on = registrar(self.events, "", ON_EVENTS)
        self._before = registrar(self.events, "before_", BEFORE_EVENTS)
        self._after = registrar(self.events, "after_", AFTER_EVENTS)
        self._engine = Engine(settings.engine, self._identity(generation=0), self._rng)
        self._commits = Commits(
            self._state, self._store, self.events, TransitionLog(Seconds(self._now))
        )
        #: testing and benchmarks only: datagrams dropped on purpose
        self.faults = Faults(settings.drop_rate, random.Random(self._rng.random()))
        self.envelope = Envelope(settings.cluster, keys.sealer_for(settings.key_file))
        self._gossip: GossipProtocol | None = None
        self._ports = Ports()
        self._pacing = Pacing(
            self._timer,
            self._engine,
            now=self._now,
            running=lambda: bool(self.running),
            commit=self._commit,
            send=self._send,
            opening=self._before_gossip,
            rejoin=lambda: self._syncs.rejoin(),
        )
        self._run = BlockingRun()  # start()'s
        self.bad_input: BadInputReporter | None = None
        self._refusals = Refusals(self._state, lambda: self.bad_input, self._now)
        #: the handlers the start banner lists (see add_handler)
        self._handler_names: list[str] = []
        #: when each member last sent a datagram from its own socket
        self._heard = views.Heard(self._state)
        #: traffic by message type and timings, for /metrics
        self.meters = Meters()
        self._metrics: Any = None
        #: a join() through the control API completed (health: synced)
        self._joined = False
        self._syncs = FullSyncs(
            self._engine,
            settings,
            envelope=self.envelope,
            events=self.events,
            meters=self.meters,
            reactor=self._get_reactor,
            bad_input=lambda: self.bad_input,
            now=self._now,
            rng=self._rng,
            carry_out=self._carry_out,
            refused=self._refusals.refused,
        )
        self._watches = Watches(
            self._get_reactor,
            self._now,
            self.envelope,
            me=lambda: self._state.me,
            nodes=lambda: self._state.nodes,
            lost_contact=self._lost_contact,
        )

    # -- the engine's parts ------------------------------------------------------

    @property
    def _state(self) -> ClusterState:
        return self._engine.state

    @property
    def _node(self) -> GossipNode:
        return self._engine.node

    @property
    def _membership(self) -> Membership:
        """The phi detector (the only one yet): its windows for the control API."""
        return cast(Membership, self._engine.detector)

    # -- configuration (before start) -------------------------------------------

    @property
    def configuration(self) -> Settings:
        """This node's configuration now (ports as bound, intervals as set)."""
        return attrs.evolve(
            self._settings,
            tcp_port=self._tcp_port,
            udp_port=self._udp_port,
            seeds=tuple(self._seeds),
            engine=self._engine.settings,
        )

    @property
    def address(self) -> str:
        return self._address

    @property
    def id(self) -> str:
        """This node's id: ``address:udp_port``."""
        return self._state.me.info.id

    @property
    def tcp_port(self) -> int:
        return self._tcp_port

    @tcp_port.setter
    def tcp_port(self, port: int) -> None:
        self._not_running("tcp_port")
        self._tcp_port = check_port(port, API_NAMES["tcp_port"], allow_any=True)
        self._state.rename_self(self._identity(0))

    @property
    def udp_port(self) -> int:
        return self._udp_port

    @udp_port.setter
    def udp_port(self, port: int) -> None:
        self._not_running("udp_port")
        self._udp_port = check_port(port, API_NAMES["udp_port"], allow_any=True)
        self._state.rename_self(self._identity(0))

    @property
    def gossip_interval(self) -> float:
        return self._engine.settings.gossip_interval

    @property
    def idle_interval(self) -> float:
        """Seconds between the exchanges of a node with nothing to spread:
        as set (:meth:`idle_every`), else 10 gossip intervals with SWIM and
        the gossip interval with phi."""
        return self._engine.settings.idle_pace

    def gossip_every(self, seconds: float) -> None:
        """Gossip with a random peer every ``seconds`` (default 1)."""
        interval = check_interval(seconds, "gossip_every()")
        idle = self._engine.settings.idle_interval
        check_idle_interval(idle, interval, "the idle interval")
        self._interval_changed(gossip_interval=interval)

    def idle_every(self, seconds: float | None) -> None:
        """When idle, open one exchange every ``seconds`` only (None: every round).

        A node is idle when it has nothing to spread: no write of its own or
        rumour queued, nothing merged or taught for an idle interval. Its
        writes still go out at once, and rounds with news keep the gossip
        interval. The failure detector takes the idle interval as its pace.
        """
        idle = check_idle_interval(seconds, self.gossip_interval, "idle_every()")
        self._interval_changed(idle_interval=idle)

    def _interval_changed(self, **change: Any) -> None:
        self._engine.reconfigure(attrs.evolve(self._engine.settings, **change))
        self._pacing.interval_changed()

    @property
    def max_datagram(self) -> int:
        return self._max_datagram

    @property
    def write_room(self) -> int:
        """The most bytes one write (key and value, packed) may take here:
        what :meth:`store` allows at the current ``max_datagram``."""
        return checks.write_room(self._state.me.info, self._max_datagram)

    @property
    def cluster(self) -> str:
        """The cluster name: messages of other clusters are dropped."""
        return self.envelope.cluster

    @property
    def key_file(self) -> str | None:
        return self._settings.key_file

    def reload_keys(self) -> bool:
        """Read the key file again (what SIGHUP does to ``twistd pokan``).

        The first key now seals, every key opens. A file that is missing,
        malformed, empty or readable by others is refused with a warning, and
        the old keys stay in use. Returns whether the new keys were taken.
        A node started without ``key_file`` cannot take keys at run time:
        every node of a cluster must seal, or none.
        """
        return keys.reload_keys(self.envelope, self._settings.key_file)

    def gossip_with(self, seeds: str | Iterable[str]) -> None:
        """Seeds (``HOST:PORT``, their TCP port) to join through; first that answers."""
        self._set_seeds(seeds, "gossip_with()")

    def _set_seeds(self, seeds: object, name: str) -> None:
        """The seeds, checked; ConfigurationError names them as ``name``."""
        self._not_running("gossip_with")
        self._seeds = list(check_seeds(seeds, self._address, name))
        self._state.rename_self(self._identity(0))

    @property
    def seeds(self) -> list[str]:
        return [format_host_port(h, p) for h, p in self._seeds]

    def _other_seeds(self) -> list[tuple[str, int]]:
        """The seeds, without this node itself (its own address and TCP port)."""
        return [s for s in self._seeds if s != (self._address, self._tcp_port)]

    def use_epoll(self) -> None:
        """Run on Twisted's epoll reactor (Linux); see :mod:`pokan.net.reactors`."""
        reactors.check_epoll_possible(self._reactor)
        self._epoll = True

    def using_epoll(self) -> bool:
        return self._epoll

    def _not_running(self, what: str) -> None:
        if self.running:
            raise ConfigurationError(f"cannot change {what} while the server runs")

    def _identity(self, generation: int) -> NodeInfo:
        return NodeInfo(
            id=format_host_port(self._address, self._udp_port),
            generation=generation,
            address=self._address,
            tcp_port=self._tcp_port,
            udp_port=self._udp_port,
            role="peer" if self._other_seeds() else "seed",
        )

    # -- events ------------------------------------------------------------------

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Handle new_key, key_changed, key_removed, start or shutdown.

        Key handlers get ``(key, value)`` and, if they have a ``peer``
        parameter, the owning :class:`Peer`. Also works as a decorator.
        """
        return self._on(event, handler)

    def before(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Run ``handler`` before each ``gossip`` (gets the Peer) or ``sync``."""
        return self._before(event, handler)

    def after(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """After each ``gossip`` exchange or ``sync`` (gets the Peer)."""
        return self._after(event, handler)

    def add_handler(self, handler: object, name: str | None = None) -> object:
        """Register every handler method of ``handler`` in one call.

        See :class:`pokan.daemon.interfaces.IEventHandler`: ``handler.key_changed``
        is registered as ``on("key_changed", ...)``, ``before_gossip`` as
        ``before("gossip", ...)``, and so on. Returns ``handler``. The start
        banner lists it by ``name`` (default: its class name).
        """
        from pokan.daemon.handlers import register_handler

        label = name or type(handler).__name__
        register_handler(self.events, handler, label)
        self._list_handler(label)
        return handler

    def _list_handler(self, name: str) -> None:
        """Name a handler in the start banner (twistd's --on-event commands)."""
        self._handler_names.append(name)

    # -- this node's entity --------------------------------------------------------

    def store(
        self, key: str, value: Value, timestamp: float | None = None
    ) -> defer.Deferred[None]:
        """Set one of this node's keys; gossip spreads it to every node.

        A ``timestamp`` older than the key's current one changes nothing. The
        Deferred fires once the change is persisted and handlers have run.
        """
        checks.check_key(key)
        checks.check_value(value)
        # None: now, or later if the clock stepped back: a plain store() wins
        stamp = None if timestamp is None else checks.check_timestamp(timestamp)
        checks.check_fits(key, value, self._state.me.info, self._max_datagram)
        return self._carry_out(self._engine.write(key, value, stamp, self._now()))

    def delete(self, key: str) -> defer.Deferred[None]:
        """Remove one of this node's keys everywhere (``key_removed`` fires)."""
        checks.check_key(key)
        return self._carry_out(self._engine.write(key, None, None, self._now()))

    def value(self, key: str) -> Value | None:
        return self.me.value(key)

    def keys(self) -> list[str]:
        return self.me.keys()

    def values(self) -> list[Value]:
        return self.me.values()

    def items(self) -> dict[str, Value]:
        return self.me.items()

    def timestamp(self, key: str) -> float | None:
        return self.me.timestamp(key)

    def digest(self) -> dict[str, float]:
        """This node's keys and their timestamps."""
        return {k: e.timestamp for k, e in sorted(self._state.me.live_items())}

    @property
    def me(self) -> Peer:
        """This node, seen as a Peer."""
        return Peer(self._state.me)

    def peers(self, status: str | None = None, role: str | None = None) -> list[Peer]:
        """The other known nodes, sorted by id: by default of every status.

        That is alive, dead and left (until their TTLs forget them);
        ``peers("alive")`` gives the live ones only. ``role`` keeps only
        seeds or peers.
        """
        return [Peer(n) for n in views.peers(self._state, status, role)]

    def peer(self, node_id: str) -> Peer | None:
        node = self._state.nodes.get(node_id)
        return None if node is None else Peer(node)

    @property
    def stats(self) -> dict[str, Any]:
        """Counters for monitoring: messages, drops, handler failures."""
        return views.stats(
            self._engine,
            gossip=self._gossip,
            bad_input=self.bad_input,
            events=self.events,
            store=self._store,
            faults=self.faults,
            envelope=self.envelope,
            watches=self._watches,
        )

    # -- committing changes --------------------------------------------------------

    def _carry_out(self, output: Output, source: str = "") -> defer.Deferred[None]:
        """Do what the engine asked: send, open syncs, count refusals, commit.

        ``source``: where the input came from, for the log lines.
        """
        for out in output.sends:
            self._send(out.address, out.message)
        self._pacing.wake()
        if output.reasserted:
            self._refusals.reasserted(source)
        for (host, port), peer in zip(output.syncs, output.behind, strict=True):
            self._syncs.reset(host, port, peer)
        return self._commit(output)

    def _commit(self, output: Output) -> defer.Deferred[None]:
        """Persist a batch, then fire its events; the Deferred fires after both."""
        if output.transitions:
            self._watches.update()  # the ring of live members changed
        return self._commits.commit(output)

    # -- the service ---------------------------------------------------------------

    def _get_reactor(self) -> Any:
        if self._reactor is None:
            self._reactor = reactors.global_reactor()
        return self._reactor

    def _now(self) -> float:
        clock = self._clock if self._clock is not None else self._reactor
        return clock.seconds() if clock is not None else time.time()

    def privilegedStartService(self) -> None:
        """Bind the ports now, as Twisted's own servers do.

        twistd calls this before the reactor runs (and before dropping
        privileges), so a port in use raises StartupError and the process
        ends instead of running the application without its node.
        """
        service.Service.privilegedStartService(self)
        if not self._ports and not self.running:
            self._listen(self._get_reactor())

    def startService(self) -> defer.Deferred[None]:
        """Bind the ports, open the store, start gossiping and joining.

        The Deferred fires once the node listens, or fails with StartupError.
        """
        if self.running:
            return defer.fail(StartupError(f"node {self.id} is already running"))
        reactor = self._get_reactor()
        if self._epoll:
            reactors.check_reactor_is_epoll(reactor)
        service.Service.startService(self)
        if not self._ports:  # else bound already by privilegedStartService
            try:
                self._listen(reactor)
            except StartupError as e:
                service.Service.stopService(self)
                return defer.fail(e)
        if IAttachedStore.providedBy(self._store):
            state = self._state
            self._store.attach(
                self._identity(0).id, reactor, lambda: snapshot_of(state)
            )
        d: defer.Deferred[Any] = defer.maybeDeferred(self._store.open)
        d.addCallback(self._restore)
        d.addCallback(lambda _: self._started())
        d.addErrback(self._start_failed)
        return d

    def _listen(self, reactor: Any) -> None:
        bad_input = self.bad_input = BadInputReporter(reactor)
        self._gossip = GossipProtocol(
            self._receive,
            bad_input,
            self._max_datagram,
            envelope=self.envelope,
            traffic=self.meters.traffic,
        )
        syncs = sync_factory(
            self._settings,
            self._syncs.on_hello,
            bad_input,
            self.envelope,
            self._watches,
        )
        udp, tcp = self._udp_port, self._tcp_port
        # port 0 asks for any free port: advertise the one we got
        self._udp_port, self._tcp_port = self._ports.listen(
            reactor, self._address, udp, tcp, self._gossip, syncs
        )
        control = self._control
        if control is not None:
            self._ports.add(lambda: control.listen(reactor, self._timer()))

    def _restore(self, snapshot: Snapshot | None) -> None:
        """Start a new generation, keeping what the store persisted before."""
        previous = 0
        if snapshot is not None:
            previous = self._state.restore(restore.restorable(snapshot, self._address))
        self._engine.take_back = not previous and not isinstance(
            self._store, MemoryStore
        )
        unbound_id = self._state.me.info.id
        generation = restore.next_generation(previous, time.time_ns() // 1000)
        self._engine.rename(self._identity(generation))
        restored = self._engine.restored(self._now())
        if (
            unbound_id != self.id
            and self._state.me.entries
            and not IAttachedStore.providedBy(self._store)
        ):
            # keys stored before binding port 0: persist them under the real id
            batch = restore.under_bound_id(self._state.me)
            d = defer.maybeDeferred(self._store.persist, batch)
            d.addErrback(self._commits.persist_failed, batch)
        else:
            self._commit(restored)

    def _started(self) -> None:
        sealer = self.envelope.sealer
        for line in banner.start_lines(
            self.configuration,
            id=self.id,
            fanout=self._node.fanout,
            detector=self._membership.describe(),
            store=views.describe_store(self._store),
            handlers=self._handler_names,
            keys=None if sealer is None else sealer.keyring.describe(),
            control=self.control_address,
        ):
            log.emit(line.level, line.format, **line.fields)
        seeds = self._other_seeds()
        self._engine.start(self._now())  # a late first round is a pause
        self._pacing.start()
        self._watches.start()
        release_free_heap()  # what starting left free
        self.events.fire("start")
        if seeds:
            self._syncs.join(seeds)

    def _start_failed(self, failure: Failure) -> Failure:
        self._ports.close()
        service.Service.stopService(self)
        if not failure.check(StartupError):
            return Failure(
                StartupError(
                    f"node {self.id} could not start: {failure.getErrorMessage()}"
                )
            )
        return failure

    def _timer(self) -> Any:
        """What times rounds and checks: the clock given, else the reactor."""
        return self._clock if self._clock is not None else self._get_reactor()

    def _before_gossip(self, out: Outgoing) -> None:
        """Fire ``before_gossip`` for an exchange a round opens."""
        if self.events.has_handlers("before_gossip"):
            peer = (
                Peer(out.peer)
                if out.peer is not None
                else Peer.unknown_seed(*out.address)
            )
            self.events.fire("before_gossip", peer, peer=peer)

    def _lost_contact(self, node_id: str) -> None:
        """A watch connection of ``node_id`` closed: the detector probes it."""
        if self.running:
            self._carry_out(self._engine.lost_contact(node_id, self._now()), node_id)

    def _send(self, address: Address, message: wire.Message) -> None:
        if self._gossip is not None and not self.faults.drops(address):
            self._gossip.send(address, message)

    def _receive(
        self, message: wire.Message, source: Address, size: int | None = None
    ) -> None:
        if self.faults.blocks(source):
            return
        output = self._engine.receive(
            message, source, size, self._now(), wall=time.time()
        )
        where = format_host_port(*source)
        self._refusals.refused("udp", where, source[0], output.rejected)
        self._heard.note(message, source, self._now())
        self._pacing.answered()
        d = self._carry_out(output, where)
        if output.exchanged_with is not None and self.events.has_handlers(
            "after_gossip"
        ):
            peer = Peer(output.exchanged_with)
            d.addCallback(lambda _: self.events.fire("after_gossip", peer, peer=peer))

    def stopService(self) -> defer.Deferred[None]:
        """Say goodbye, fire ``shutdown``, close the ports and the store.

        Every step runs, whatever an earlier one raised (logged): a node
        always says what goodbyes it can, fires ``shutdown`` and closes its
        store. The Deferred fires when done; it never fails.
        """
        if not self.running:
            return self._ports.close()  # any bound by privilegedStartService
        service.Service.stopService(self)
        shutdown.each_now(
            [("the rounds", self._pacing.stop), ("the full syncs", self._syncs.stop)]
        )
        goodbyes = shutdown.say_goodbye(
            lambda: self._engine.goodbye(self._now()), self._send
        )
        shutdown.each_now([("the watch connections", self._watches.stop)])
        log.info(
            "pokan node {id} stopping; said goodbye to {count} peer{s}",
            id=self.id,
            count=goodbyes,
            s="" if goodbyes == 1 else "s",
        )
        me = self._state.me
        # readers of the store see the node gone, as its peers do
        gone = Batch((), (NodeRecord(me.info, me.version, "left"),))
        fired: defer.Deferred[Any] = self.events.fire("shutdown")  # never fails
        return shutdown.each_after(
            fired,
            [
                ("closing the control API's connections", self._stop_control),
                ("closing the ports", self._ports.close),
                ("persisting the node's departure", lambda: self._store.persist(gone)),
                ("closing the store", self._store.close),
            ],
        )

    # -- blocking convenience of the original --------------------------------------

    def start(self, gossip_with: str | Iterable[str] | None = None) -> None:
        """Start the node and run the reactor until :meth:`stop`; blocks.

        Unless the program has begun Twisted logging itself, logs to stderr
        (info and up). Raises StartupError if the node cannot start (e.g. a
        port in use).
        """
        self._run.check_not_started(bool(self.running), self.id)
        if gossip_with is not None:
            self._set_seeds(gossip_with, API_NAMES["seeds"])
        if self._epoll:
            reactors.install_epoll()
        self._run.run(self._get_reactor(), self.startService, self.stopService)

    def stop(self) -> defer.Deferred[None] | None:
        """Stop the node; after :meth:`start`, also stop the reactor.

        Once stopping, calling it again does nothing. Without :meth:`start`,
        the same as :meth:`stopService`: the reactor is left running.
        """
        if self._run.active:
            self._run.stop_reactor(self._get_reactor())
            return None
        return self.stopService()

    @property
    def metrics(self) -> Any:
        """This node's own prometheus_client CollectorRegistry (what the
        control API's ``/metrics`` serves; docs/operations.md lists it)."""
        if self._metrics is None:
            from pokan.control.metrics import node_registry

            self._metrics = node_registry(self, self._store)
        return self._metrics

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<pokan.Server {self.id} {state}>"


__all__ = [
    "MAX_FRAME_LIMIT",
    "ListenError",
    "Server",
    "Settings",
    "check_fanout",
    "check_idle_interval",
    "check_interval",
    "check_max_datagram",
    "check_max_frame",
    "check_max_hello",
    "check_sync_cap",
]
