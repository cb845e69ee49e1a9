"""Watch connections: a process's death noticed at once, at no idle cost.

Each node holds a TCP connection open to the :data:`WATCHED` live members
after it on the ring of members sorted by id (so each is watched by the
:data:`WATCHED` before it). Its first and only frame is a Watch, sealed like
every other message; an idle connection costs no wakeup. When a process dies,
its kernel closes its sockets: its watchers, and the members it watched, see
their connection lost within a round trip, where SWIM's round-robin may take
a probe period or more to come round to it.

A lost connection is evidence, not proof: the detector probes that member at
once (:meth:`pokan.core.engine.Engine.lost_contact`), and only a failed probe
makes it suspect, as with an unanswered gossip exchange. A host that crashes
or is cut off closes nothing; the probes find it in their turn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pokan import wire
from pokan.core.node import NodeState
from pokan.wire.envelope import Envelope
from pokan.wire.framing import PREFIX

log = Logger()

#: the live members after this node on the ring that it watches
WATCHED = 2
#: seconds before a lost watch of a live member is opened again; doubled,
#: up to MAX_RETRY_AFTER, each time one closes sooner than that (refused)
RETRY_AFTER = 2.0
MAX_RETRY_AFTER = 60.0
#: seconds a watch may take to connect
CONNECT_TIMEOUT = 5.0
#: the most inbound watch connections a node holds at once
MAX_WATCHERS = 16
#: seconds between two lost-contact hints about one member, at least
HINT_GAP = 1.0
#: the most members whose last hint is remembered (for HINT_GAP)
MAX_HINTED = 1024
#: an inbound watch refused because it came before its member was known
#: alive at its generation: normal after a join or restart, not bad input
EARLY = "early"


def ring_successors(ids: Iterable[str], me: str, count: int) -> list[str]:
    """The ``count`` ids after ``me`` on the ring of the sorted ``ids``."""
    ring = sorted(set(ids) | {me})
    at = ring.index(me)
    return (ring[at + 1 :] + ring[:at])[:count]


@attrs.define(eq=False)
class _Watch:
    """One outbound watch: the member, its incarnation, the connection."""

    node_id: str
    generation: int
    host: str
    port: int
    protocol: WatchClientProtocol | None = None
    connector: Any = None
    retry: Any = None
    #: when it connected (None: not connected)
    since: float | None = None
    backoff: float = RETRY_AFTER
    #: we closed it (the member left the ring, or we stop): no hint
    closing: bool = False


class WatchClientProtocol(Protocol):
    """Sends one Watch frame, then only waits for the connection to close."""

    transport: Any

    def __init__(self, watches: Watches, watch: _Watch) -> None:
        self.watches = watches
        self.watch = watch

    def connectionMade(self) -> None:
        self.watch.protocol = self
        self.watch.since = self.watches.now()
        frame = self.watches.watch_frame()
        self.transport.writeSequence([PREFIX.pack(len(frame)), frame])

    def dataReceived(self, data: bytes) -> None:
        """The watched node sends nothing: whatever comes is ignored."""

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.watch.protocol = None
        self.watches.lost(self.watch)


class _WatchFactory(ClientFactory):
    noisy = False

    def __init__(self, watches: Watches, watch: _Watch) -> None:
        self.watches = watches
        self.watch = watch

    def buildProtocol(self, addr: object) -> WatchClientProtocol:
        return WatchClientProtocol(self.watches, self.watch)

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.watches.lost(self.watch)  # refused: nothing listens there now


class Watches:
    """A node's watch connections, out and in, and the hints they give."""

    def __init__(
        self,
        reactor: Callable[[], Any],
        now: Callable[[], float],
        envelope: Envelope,
        me: Callable[[], NodeState],
        nodes: Callable[[], Mapping[str, NodeState]],
        lost_contact: Callable[[str], None],
        watched: int = WATCHED,
    ) -> None:
        self._reactor = reactor
        self.now = now
        self._envelope = envelope
        self._me = me
        self._nodes = nodes
        self._lost_contact = lost_contact
        self._watched = watched
        #: outbound, by member id
        self.out: dict[str, _Watch] = {}
        #: inbound, by watcher id: the protocol holding each open
        self.watchers: dict[str, Any] = {}
        self._hinted: dict[str, float] = {}
        #: lost watches that made the detector probe their member
        self.hints = 0
        #: inbound watches closed as EARLY
        self.early = 0
        self._running = False

    def start(self) -> None:
        self._running = True
        self.update()

    def stop(self) -> None:
        """Close every watch, out and in, without a hint."""
        self._running = False
        for watch in list(self.out.values()):
            self._close(watch)
        self.out.clear()
        watchers, self.watchers = self.watchers, {}
        for protocol in watchers.values():
            protocol.transport.loseConnection()

    def update(self) -> None:
        """Watch the ring successors among live members; drop the others."""
        if not self._running:
            return
        me = self._me()
        alive = {
            i: n
            for i, n in self._nodes().items()
            if n.status == "alive" and n is not me
        }
        wanted = ring_successors(alive, me.info.id, self._watched)
        for node_id, watch in list(self.out.items()):
            node = alive.get(node_id)
            if node_id not in wanted or node is None or not self._same(watch, node):
                del self.out[node_id]
                self._close(watch)
        for node_id in wanted:
            if node_id not in self.out:
                self._open(alive[node_id])

    def watch_frame(self) -> bytes:
        me = self._me().info
        return self._envelope.encode(wire.Watch(me.id, me.generation), self.now())

    def lost(self, watch: _Watch) -> None:
        """An outbound watch closed, or could not connect: hint, retry later.

        One that closed soon after it connected was refused (the member does
        not know us yet, or holds its most watchers): no hint, and the next
        try waits twice as long.
        """
        if watch.closing or self.out.get(watch.node_id) is not watch:
            return
        since, watch.since, watch.connector = watch.since, None, None
        if since is not None and self.now() - since < RETRY_AFTER:
            watch.backoff = min(2 * watch.backoff, MAX_RETRY_AFTER)
        else:
            watch.backoff = RETRY_AFTER
            self._hint(watch.node_id)
        if self._running and watch.retry is None:
            watch.retry = self._reactor().callLater(watch.backoff, self._retry, watch)

    def accept(
        self, message: wire.Watch, host: str, protocol: Any
    ) -> tuple[str, str] | None:
        """Hold an inbound watch open, if a live member at ``host`` sent it.

        Returns None when it is held, else the reason and detail of the
        refusal. A watch that comes before this node heard of its member (a
        join or restart just now) is :data:`EARLY`, counted in ``early`` and
        not bad input: its watcher tries again.
        """
        refused = self._refusal(message, host)
        if refused is not None:
            if refused[0] == EARLY:
                self.early += 1
            return refused
        old = self.watchers.pop(message.sender, None)
        if old is not None:  # it reconnected: the old one is stale
            old.transport.loseConnection()
        if len(self.watchers) >= MAX_WATCHERS:
            return "too-many-watchers", f"{MAX_WATCHERS} watch connections held"
        self.watchers[message.sender] = protocol
        return None

    def _refusal(self, message: wire.Watch, host: str) -> tuple[str, str] | None:
        """Why ``message`` from ``host`` is not held (reason, detail), if so."""
        sender, generation = message.sender, message.generation
        node = self._nodes().get(sender)
        if not self._running:
            return EARLY, "this node is stopping"
        if node is None:
            return EARLY, f"{sender} is no member this node knows yet"
        if node is self._me():
            return "watch-refused", "it names this node itself"
        if node.info.address != host:
            return "watch-refused", f"it names {sender}, but came from {host}"
        held = node.info.generation
        if generation < held:
            return "watch-refused", (
                f"from {sender} at generation {generation}, older than {held}"
            )
        if generation > held or node.status != "alive":
            return (
                EARLY,
                f"from {sender}, not yet known alive at generation {generation}",
            )
        return None

    def watcher_lost(self, sender: str, protocol: Any) -> None:
        """An inbound watch closed: its watcher may have died."""
        if self.watchers.get(sender) is protocol:
            del self.watchers[sender]
            self._hint(sender)

    def _same(self, watch: _Watch, node: NodeState) -> bool:
        info = node.info
        return (watch.generation, watch.host, watch.port) == (
            info.generation,
            info.address,
            info.tcp_port,
        )

    def _open(self, node: NodeState) -> None:
        info = node.info
        watch = _Watch(info.id, info.generation, info.address, info.tcp_port)
        self.out[info.id] = watch
        self._connect(watch)

    def _connect(self, watch: _Watch) -> None:
        watch.connector = self._reactor().connectTCP(
            watch.host,
            watch.port,
            _WatchFactory(self, watch),
            timeout=CONNECT_TIMEOUT,
        )

    def _retry(self, watch: _Watch) -> None:
        watch.retry = None
        if self._running and self.out.get(watch.node_id) is watch:
            self._connect(watch)

    def _close(self, watch: _Watch) -> None:
        watch.closing = True
        if watch.retry is not None and watch.retry.active():
            watch.retry.cancel()
        watch.retry = None
        if watch.protocol is not None:
            watch.protocol.transport.loseConnection()
        elif watch.connector is not None:
            watch.connector.disconnect()

    def _hint(self, node_id: str) -> None:
        now = self.now()
        last = self._hinted.get(node_id)
        if last is not None and now - last < HINT_GAP:
            return
        if len(self._hinted) >= MAX_HINTED:
            self._hinted = {k: t for k, t in self._hinted.items() if now - t < HINT_GAP}
        self._hinted[node_id] = now
        self.hints += 1
        log.debug("lost the watch connection of {node}: probing it", node=node_id)
        self._lost_contact(node_id)
