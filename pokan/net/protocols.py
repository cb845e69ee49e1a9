"""Twisted at the edges: the UDP gossip and TCP sync protocols.

They only parse bytes, hand messages to callbacks, and send what they are
given. All protocol logic lives in :mod:`pokan.core.node`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from pokan import wire
from pokan.core.address import format_host_port
from pokan.core.node import Address
from pokan.errors import DecodeError, EncodeError
from pokan.net.badinput import BadInputReporter, SendErrorReporter
from pokan.net.fullsync import join_pieces, too_big_to_gossip, welcome_frames
from pokan.net.meters import Traffic
from pokan.net.watch import EARLY, Watches
from pokan.wire.envelope import Envelope
from pokan.wire.framing import PREFIX, BufferBudget, FrameReader, FrameRefused
from pokan.wire.streamdecode import decode_stream_body

log = Logger()

#: the largest Hello a node reads: a joiner's own view, far below a Welcome
DEFAULT_MAX_HELLO = 1024 * 1024
#: inbound sync connections at once, in all and from one source address
DEFAULT_MAX_SYNC_CONNECTIONS = 64
DEFAULT_MAX_SYNC_PER_HOST = 4
#: bytes of partial frames held across all inbound sync connections
DEFAULT_MAX_SYNC_BUFFER = 64 * 1024 * 1024


_PLAINTEXT = Envelope()


def _decode_frame(
    frame: bytes,
    expected: frozenset[wire.MessageType],
    envelope: Envelope = _PLAINTEXT,
    now: float = 0.0,
) -> wire.Message:
    """A TCP frame's message: its envelope opened, its body read with care."""
    kind, body = envelope.open(frame, expected, now)
    if kind in (wire.MessageType.BAD_CLUSTER, wire.MessageType.WATCH):
        return wire.decode_body(kind, body)  # small: no deltas
    return decode_stream_body(kind, body)


def oversized_detail(size: int, max_datagram: int) -> str:
    """Why a datagram of ``size`` bytes was dropped, and what to do about it."""
    return (
        f"{size} > {max_datagram} bytes: the sender's --max-datagram is probably"
        f" larger than this node's {max_datagram};"
        " give every node the same --max-datagram"
    )


class GossipProtocol(DatagramProtocol):
    """UDP: decode datagrams for ``receive``; encode and send messages.

    ``receive(message, source, size)`` gets each datagram's message, where it
    came from and its size in bytes (a reply to a stranger is bounded by it).
    """

    noisy = False  # no "Starting protocol" log line

    def __init__(
        self,
        receive: Callable[[wire.Message, Address, int], None],
        bad_input: BadInputReporter,
        max_datagram: int,
        send_failures: SendErrorReporter | None = None,
        *,
        envelope: Envelope | None = None,
        traffic: Traffic | None = None,
    ) -> None:
        self.receive = receive
        self.bad_input = bad_input
        self.max_datagram = max_datagram
        self.envelope = envelope if envelope is not None else Envelope()
        #: messages and bytes by type, exchange round trips (for /metrics)
        self.traffic = traffic if traffic is not None else Traffic()
        #: logs failed sends, throttled per destination as bad input is
        self.send_failures = send_failures or SendErrorReporter(
            bad_input.clock, bad_input.interval
        )
        self.sent = 0
        self.received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.send_errors = 0

    def datagramReceived(self, data: bytes, addr: Address) -> None:
        source = format_host_port(addr[0], addr[1])
        if len(data) > self.max_datagram:
            self.bad_input.report(
                "udp",
                source,
                "oversized",
                oversized_detail(len(data), self.max_datagram),
                host=addr[0],
            )
            return
        now = self.bad_input.clock.seconds()
        try:
            message = self.envelope.decode(data, wire.DATAGRAM_TYPES, now)
        except DecodeError as e:
            self.bad_input.report("udp", source, e.reason, e.detail, host=addr[0])
            if e.reason == "wrong-cluster":
                self._tell_other_cluster(source, addr, len(data), now)
            return
        sender = getattr(message, "sender", source)
        if sender != source:
            # a node always gossips from the socket its id names: anything
            # else is a forgery, or a capture replayed from elsewhere
            self.bad_input.report(
                "udp",
                source,
                "wrong-source",
                f"{type(message).__name__} of {sender!r} from {source}",
                host=addr[0],
            )
            return
        self.received += 1
        self.bytes_received += len(data)
        self.traffic.on_received(message, len(data), (addr[0], addr[1]), now)
        if isinstance(message, wire.BadCluster):
            self.bad_input.report(
                "udp",
                source,
                "told-other-cluster",
                _other_cluster(message, self.envelope),
                host=addr[0],
            )
            return
        try:
            self.receive(message, (addr[0], addr[1]), self._plain_size(data))
        except Exception:
            log.failure(
                "error handling {kind} from {source}",
                kind=type(message).__name__,
                source=source,
            )

    def _plain_size(self, data: bytes) -> int:
        """A datagram's size less its seal: what a reply to it may take."""
        return len(data) - (wire.SEAL_HEADROOM if self.envelope.sealed else 0)

    def _tell_other_cluster(
        self, source: str, addr: Address, size: int, now: float
    ) -> None:
        """Tell a node of another cluster so, once, if that brings back no more."""
        reply = self.envelope.bad_cluster_reply()
        if len(reply) > size or not self.envelope.should_tell(source, now):
            return
        if self.transport is not None:
            try:
                self.transport.write(reply, (addr[0], addr[1]))
            except Exception:  # the source was a datagram's: nothing to do
                return

    def send(self, address: Address, message: wire.Message) -> bool:
        """Send one message; False if it could not be. Never raises.

        Whatever goes wrong (a peer's address that is not an IP of this
        socket's family, a message over the limit, an OSError...) is counted
        in ``send_errors`` and logged, throttled per destination.
        """
        if self.transport is None:
            return False
        envelope = self.envelope
        limit = self.max_datagram - (0 if envelope.sealed else wire.SEAL_HEADROOM)
        try:
            now = self.bad_input.clock.seconds()
            data = envelope.encode(message, now, limit)
            self.transport.write(data, address)
        except Exception as e:  # one bad peer must never end a round
            self.send_errors += 1
            self.send_failures.report(
                type(message).__name__, _destination(address), type(e).__name__, str(e)
            )
            return False
        self.sent += 1
        self.bytes_sent += len(data)
        self.traffic.on_sent(message, len(data), address, now)
        return True


def _destination(address: object) -> str:
    """``host:port`` for a log line, even of an address that is no pair."""
    try:
        return format_host_port(*address)  # type: ignore[misc]
    except Exception:
        return repr(address)


#: the most frames a joiner takes of one Welcome (1 GiB at 16 MiB frames)
MAX_WELCOME_FRAMES = 64


class _FrameProtocol(Protocol, TimeoutMixin):
    """Length-prefixed frames of the TCP sync, with size limits and a timeout.

    The timeout runs from the connection until the frames this side reads are
    all in: bytes that trickle in do not extend it.
    """

    expected: frozenset[wire.MessageType] = frozenset()
    transport: Any

    def __init__(
        self,
        bad_input: BadInputReporter,
        max_frame: int,
        timeout: float,
        max_datagram: int | None = None,
        *,
        max_read: int | None = None,
        budget: BufferBudget | None = None,
        envelope: Envelope | None = None,
    ):
        self.bad_input = bad_input
        #: the largest frame this side sends
        self.MAX_LENGTH = max_frame
        self.timeout = timeout
        #: when set, a full state from the peer is checked against it
        self.max_datagram = max_datagram
        self.reader = FrameReader(max_frame if max_read is None else max_read, budget)
        #: False once this side reads no more (done, or cut off)
        self.reading = True
        self.envelope = envelope if envelope is not None else Envelope()
        #: why this connection's peer was not listened to, if it was not
        self.refusal: str | None = None

    @property
    def peer_name(self) -> str:
        peer = self.transport.getPeer()
        return format_host_port(peer.host, peer.port)

    def connectionMade(self) -> None:
        self.setTimeout(self.timeout)

    def dataReceived(self, data: bytes) -> None:
        if not self.reading:
            return
        try:
            frames = self.reader.feed(data)
        except FrameRefused as e:
            self._refuse(e.reason, e.detail)
            return
        for frame in frames:
            if not self.reading:
                return
            self.frameReceived(frame)

    def frameReceived(self, frame: bytes) -> None:
        now = self._now()
        try:
            message = _decode_frame(frame, self.expected, self.envelope, now)
        except DecodeError as e:
            self.refusal = f"its answer was dropped: {e}"
            if e.reason == "wrong-cluster" and self.envelope.should_tell(
                self.transport.getPeer().host, now
            ):
                self._report(e.reason, e.detail)
                self.reading = False
                self.reader.close()
                self.sendFrame(self.envelope.bad_cluster_reply())
                self.transport.loseConnection()
                return
            self._refuse(e.reason, e.detail)
            return
        if isinstance(message, wire.BadCluster):
            self.refusal = _other_cluster(message, self.envelope)
            self._refuse("told-other-cluster", self.refusal)
            return
        self.messageReceived(message)

    def _now(self) -> float:
        return self.bad_input.clock.seconds()

    def sendFrame(self, data: bytes) -> None:
        self.transport.writeSequence([PREFIX.pack(len(data)), data])  # no copy

    def _refuse(self, reason: str, detail: str) -> None:
        """Count bad input from the peer and cut the connection."""
        self._report(reason, detail)
        self._abort()

    def _abort(self) -> None:
        self.reading = False
        self.reader.close()
        self.transport.abortConnection()

    def _report(self, reason: str, detail: str) -> None:
        host = self.transport.getPeer().host
        self.bad_input.report("tcp", self.peer_name, reason, detail, host=host)

    def messageReceived(self, message: wire.Message) -> None:
        raise NotImplementedError

    def check_datagram_fit(self, message: wire.Hello | wire.Welcome) -> None:
        """Warn if the peer holds values this node's datagrams cannot carry."""
        if self.max_datagram is None:
            return
        count, node_id, key, size = too_big_to_gossip(message.deltas, self.max_datagram)
        if count:
            log.warn(
                "full sync with {peer}: {count} of its values are too big for this"
                " node's datagrams (--max-datagram {max_datagram}), e.g. key {key!r}"
                " of {node} takes {size} bytes; this node cannot gossip them on."
                " Give every node the same --max-datagram",
                peer=message.sender,
                count=count,
                max_datagram=self.max_datagram,
                key=key,
                node=node_id,
                size=size,
            )

    def timeoutConnection(self) -> None:
        self._refuse("stalled", f"not done within {self.timeout}s")

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reading = False
        self.reader.close()
        self.setTimeout(None)


class SyncServerProtocol(_FrameProtocol):
    """Answers a joining node's Hello with this node's full state.

    It reads one frame, the Hello, of at most ``max_hello`` bytes, which must
    arrive within the timeout; anything the peer sends after it is ignored.
    """

    expected = frozenset(
        {wire.MessageType.HELLO, wire.MessageType.WATCH, wire.MessageType.BAD_CLUSTER}
    )

    def __init__(
        self,
        on_hello: Callable[[wire.Hello, str], defer.Deferred[wire.Welcome]],
        bad_input: BadInputReporter,
        max_frame: int,
        timeout: float,
        max_datagram: int | None = None,
        *,
        max_hello: int = DEFAULT_MAX_HELLO,
        budget: BufferBudget | None = None,
        on_lost: Callable[[], None] | None = None,
        envelope: Envelope | None = None,
        watches: Watches | None = None,
    ) -> None:
        super().__init__(
            bad_input,
            max_frame,
            timeout,
            max_datagram,
            max_read=min(max_hello, max_frame),
            budget=budget,
            envelope=envelope,
        )
        self.on_hello = on_hello
        self.on_lost = on_lost
        self.watches = watches
        self.sender = ""  # the joining node's id, once its Hello is in
        #: a watcher's connection, held open (see pokan.net.watch)
        self.watching = False

    def messageReceived(self, message: wire.Message) -> None:
        if isinstance(message, wire.Watch):
            self._watched(message)
            return
        assert isinstance(message, wire.Hello)
        self.reading = False  # one Hello per connection
        self.setTimeout(None)  # our turn now
        self.sender = message.sender
        self.check_datagram_fit(message)
        host = self.transport.getPeer().host
        d = defer.maybeDeferred(self.on_hello, message, host)
        d.addCallback(self._reply)
        d.addErrback(self._failed, message.sender)

    def _reply(self, welcome: wire.Welcome) -> None:
        if not self.transport.connected:
            return
        try:
            now = self._now()
            frames = welcome_frames(
                welcome,
                self.MAX_LENGTH,
                lambda m: self.envelope.encode(m, now),
                self.envelope.overhead,
            )
        except EncodeError as e:
            log.warn(
                "cannot answer the full sync of {sender}: {error} (max_frame"
                " {limit}); it gets the state by UDP gossip only",
                sender=self.sender,
                error=e,
                limit=self.MAX_LENGTH,
            )
            self.transport.loseConnection()
            return
        for data in frames:
            self.sendFrame(data)
        self.setTimeout(self.timeout)  # a client that never reads is cut off
        self.transport.loseConnection()

    def _failed(self, failure: Failure, sender: str) -> None:
        log.failure("could not answer the sync of {sender}", failure, sender=sender)
        self.transport.abortConnection()

    def _watched(self, message: wire.Watch) -> None:
        """A member watches us: hold the connection open, outside the sync caps
        (or close it, if it is no live member at its own host, or too many)."""
        self.reading = False  # nothing more is read on it
        self.setTimeout(None)
        peer = self.transport.getPeer()
        if self.watches is None:
            refused: tuple[str, str] | None = ("watch-refused", "watches are off")
        else:
            refused = self.watches.accept(message, peer.host, self)
        if refused is not None:
            if refused[0] != EARLY:
                source = format_host_port(peer.host, peer.port)
                self.bad_input.report("tcp", source, *refused, host=peer.host)
            self.transport.loseConnection()
            return
        self.sender, self.watching = message.sender, True
        self._release()

    def _release(self) -> None:
        if self.on_lost is not None:
            on_lost, self.on_lost = self.on_lost, None
            on_lost()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        self._release()
        if self.watching and self.watches is not None:
            self.watching = False
            self.watches.watcher_lost(self.sender, self)


class _Refused(Protocol):
    """A sync connection over a cap: counted as bad input and cut at once."""

    transport: Any

    def __init__(self, bad_input: BadInputReporter, detail: str) -> None:
        self.bad_input = bad_input
        self.detail = detail

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        source = format_host_port(peer.host, peer.port)
        self.bad_input.report(
            "tcp", source, "too-many-connections", self.detail, host=peer.host
        )
        self.transport.abortConnection()


class SyncServerFactory(Factory):
    """Builds the protocol of each inbound sync, within the caps.

    At most ``max_connections`` connections at once, ``max_per_host`` from one
    source address; their partial frames hold at most ``max_buffer`` bytes.
    """

    noisy = False  # no "Starting factory" log lines

    def __init__(
        self,
        on_hello: Callable[[wire.Hello, str], defer.Deferred[wire.Welcome]],
        bad_input: BadInputReporter,
        max_frame: int,
        timeout: float,
        max_datagram: int | None = None,
        *,
        max_hello: int = DEFAULT_MAX_HELLO,
        max_connections: int = DEFAULT_MAX_SYNC_CONNECTIONS,
        max_per_host: int = DEFAULT_MAX_SYNC_PER_HOST,
        max_buffer: int = DEFAULT_MAX_SYNC_BUFFER,
        envelope: Envelope | None = None,
        watches: Watches | None = None,
    ) -> None:
        self.on_hello = on_hello
        #: the node's watch connections (None: watches are refused)
        self.watches = watches
        self.bad_input = bad_input
        self.max_frame = max_frame
        self.timeout = timeout
        self.max_datagram = max_datagram
        self.max_hello = max_hello
        self.max_connections = max_connections
        self.max_per_host = max_per_host
        self.budget = BufferBudget(max_buffer)
        #: open connections by source address
        self.connections: Counter[str] = Counter()
        self.envelope = envelope

    @property
    def max_buffer(self) -> int:
        return self.budget.limit

    def buildProtocol(self, addr: Any) -> Protocol:
        host = str(getattr(addr, "host", addr))
        total = sum(self.connections.values())
        if total >= self.max_connections:
            return _Refused(self.bad_input, f"{total} sync connections open")
        if self.connections[host] >= self.max_per_host:
            return _Refused(
                self.bad_input, f"{self.connections[host]} sync connections from it"
            )
        self.connections[host] += 1
        return SyncServerProtocol(
            self.on_hello,
            self.bad_input,
            self.max_frame,
            self.timeout,
            self.max_datagram,
            max_hello=self.max_hello,
            budget=self.budget,
            on_lost=lambda: self._closed(host),
            envelope=self.envelope,
            watches=self.watches,
        )

    def _closed(self, host: str) -> None:
        self.connections[host] -= 1
        if self.connections[host] <= 0:
            del self.connections[host]


class NotAPokanNode(ConnectionError):
    """The seed answered, but not as a pokan node: its first bytes say so."""

    def __init__(self, peer: str, answered: str) -> None:
        super().__init__(f"{peer} does not answer as a pokan node: {answered}")
        self.peer = peer


#: bytes that start every pokan frame: its length, then the envelope's magic
FRAME_START = PREFIX.size + len(wire.MAGIC)

#: what answers first with these bytes, when it is not pokan
KNOWN_ANSWERS = (
    (b"HTTP/", "an HTTP server"),
    (b"SSH-", "an SSH server"),
    (b"-ERR", "a Redis server"),
    (b"-NOAUTH", "a Redis server"),
    (b"-WRONGPASS", "a Redis server"),
    (b"-DENIED", "a Redis server"),
    (b"+OK", "a Redis server"),
    (b"+PONG", "a Redis server"),
    (b"\x15\x03", "a TLS server"),
    (b"\x16\x03", "a TLS server"),
)


def describe_answer(head: bytes) -> str:
    """What the first bytes of a foreign answer say of who answered."""
    for start, who in KNOWN_ANSWERS:
        if head.startswith(start):
            if who == "a TLS server":
                return f"it answered like {who} (a TLS record)"
            line = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0][:60]
            return f"it answered like {who} ({line.decode('ascii', 'replace')!r})"
    return f"its first bytes were {head[:16]!r}"


class SyncClientProtocol(_FrameProtocol):
    """Sends a Hello; ``welcome`` fires with the answer or fails.

    The whole Welcome, however many frames, must arrive within the timeout,
    and in at most ``MAX_WELCOME_FRAMES`` frames: a seed that goes on longer
    is cut off, and what came is merged (any leading run of frames is a
    valid state; gossip brings the rest). So a broken or hostile seed cannot
    hold a joiner's memory or its sync forever. The Hello is at most
    ``max_hello`` bytes, what a seed reads: a larger state goes as this
    node's own record only, or none of it.
    """

    expected = frozenset({wire.MessageType.WELCOME, wire.MessageType.BAD_CLUSTER})

    def __init__(
        self,
        hello: wire.Hello,
        bad_input: BadInputReporter,
        max_frame: int,
        timeout: float,
        max_datagram: int | None = None,
        *,
        max_hello: int = DEFAULT_MAX_HELLO,
        envelope: Envelope | None = None,
    ) -> None:
        super().__init__(bad_input, max_frame, timeout, max_datagram, envelope=envelope)
        self.hello = hello
        #: what this seed said last time it refused us (another cluster),
        #: told once an hour only: the reason a silent close then has
        self.earlier_refusal: str | None = None
        self.max_hello = min(max_hello, max_frame)
        self.welcome: defer.Deferred[wire.Welcome] = defer.Deferred()
        self.frames: list[wire.Welcome] = []
        #: the first bytes back, until there are enough to tell a pokan frame
        self._head: bytes | None = b""
        #: set when those bytes were not the start of a pokan frame
        self.not_pokan: NotAPokanNode | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.sendFrame(self._hello_data())

    def _hello_data(self) -> bytes:
        """The Hello, or the most of it that fits ``max_hello``."""
        now = self._now()
        data = self.envelope.encode(self.hello, now)
        if len(data) <= self.max_hello:
            return data
        own = tuple(d for d in self.hello.deltas if d.info.id == self.hello.sender)
        smaller = self.envelope.encode(wire.Hello(self.hello.sender, own), now)
        carries = "only this node's own record"
        if len(smaller) > self.max_hello:
            smaller = self.envelope.encode(wire.Hello(self.hello.sender, ()), now)
            carries = "none of it"
        log.warn(
            "this node's full state is {size} bytes, over the Hello limit of"
            " {limit} (--max-hello, max_hello=): the Hello of the full sync"
            " carries {carries}, and the peer gets the rest by UDP gossip (see"
            " 'How much state' in docs/operations.md)",
            size=len(data),
            limit=self.max_hello,
            carries=carries,
        )
        return smaller

    def dataReceived(self, data: bytes) -> None:
        if self._head is not None:  # not yet known to be a pokan node
            self._head += data
            if len(self._head) < FRAME_START and not self._oversized(self._head):
                return
            data, self._head = self._head, None
            if (
                len(data) >= FRAME_START
                and data[PREFIX.size : FRAME_START] != wire.MAGIC
            ):
                self.not_pokan = NotAPokanNode(self.peer_name, describe_answer(data))
                self._abort()
                return
        super().dataReceived(data)

    def _oversized(self, head: bytes) -> bool:
        """A length prefix over the limit: the reader refuses it as such."""
        if len(head) < PREFIX.size:
            return False
        (length,) = PREFIX.unpack_from(head)
        return bool(length > self.reader.max_length)

    def messageReceived(self, message: wire.Message) -> None:
        assert isinstance(message, wire.Welcome)
        self.frames.append(message)  # the seed closes after the last
        if len(self.frames) == MAX_WELCOME_FRAMES:
            log.warn(
                "full sync with {peer}: cut off after {frames} frames, the most a"
                " Welcome may take; merging what came, gossip brings the rest",
                peer=self.peer_name,
                frames=MAX_WELCOME_FRAMES,
            )
            self._abort()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        if self.welcome.called:
            return
        if self.not_pokan is not None:
            self.welcome.errback(self.not_pokan)
            return
        if not self.frames:
            why = self.refusal or self.earlier_refusal
            if why is None and self.envelope.sealed:
                why = (
                    "the seed dropped this node's Hello: one of another cluster"
                    " (--cluster) or whose keys differ (--key-file) does"
                )
            elif why is None:
                why = (
                    "if the seed seals its gossip (--key-file) or is of another"
                    " cluster (--cluster), it drops a plaintext Hello"
                )
            self.welcome.errback(
                ConnectionError(
                    "connection closed before the full state arrived"
                    + (f" ({why})" if why else "")
                )
            )
            return
        # every prefix of the frames is a valid state: take what came
        deltas = join_pieces(d for frame in self.frames for d in frame.deltas)
        welcome = wire.Welcome(self.frames[0].sender, deltas)
        self.check_datagram_fit(welcome)
        self.welcome.callback(welcome)


def _other_cluster(message: wire.BadCluster, envelope: Envelope) -> str:
    return (
        f"it is of cluster {message.cluster!r} and this node of"
        f" {envelope.cluster!r}: give both the same --cluster, or keep them apart"
    )


class SyncClientFactory(Factory):
    """Builds the one client protocol of a sync, without log noise."""

    noisy = False

    def __init__(self, protocol: SyncClientProtocol) -> None:
        self.client = protocol

    def buildProtocol(self, addr: object) -> SyncClientProtocol:
        return self.client
