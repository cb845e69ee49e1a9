"""Twisted at the edges: the UDP gossip and TCP sync protocols.

They only parse bytes, hand messages to callbacks, and send what they are
given. All protocol logic lives in :mod:`pokan.node`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from pokan import wire
from pokan.address import format_host_port
from pokan.badinput import BadInputReporter
from pokan.envelope import Envelope
from pokan.errors import DecodeError, EncodeError
from pokan.fullsync import join_pieces, too_big_to_gossip, welcome_frames
from pokan.node import Address

log = Logger()


def oversized_detail(size: int, max_datagram: int) -> str:
    """Why a datagram of ``size`` bytes was dropped, and what to do about it."""
    return (
        f"{size} > {max_datagram} bytes: the sender's --max-datagram is probably"
        f" larger than this node's {max_datagram};"
        " give every node the same --max-datagram"
    )


class GossipProtocol(DatagramProtocol):
    """UDP: decode datagrams for ``receive``; encode and send messages."""

    noisy = False  # no "Starting protocol" log line

    def __init__(
        self,
        receive: Callable[[wire.Message, Address], None],
        bad_input: BadInputReporter,
        max_datagram: int,
        envelope: Envelope | None = None,
    ) -> None:
        self.receive = receive
        self.bad_input = bad_input
        self.max_datagram = max_datagram
        self.envelope = envelope if envelope is not None else Envelope()
        self.sent = 0
        self.received = 0
        self.bytes_sent = 0
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
            self.receive(message, (addr[0], addr[1]))
        except Exception:
            log.failure(
                "error handling {kind} from {source}",
                kind=type(message).__name__,
                source=source,
            )

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
        """Send one message; False (and a log line) if it could not be."""
        if self.transport is None:
            return False
        envelope = self.envelope
        limit = self.max_datagram - (0 if envelope.sealed else wire.SEAL_HEADROOM)
        try:
            now = self.bad_input.clock.seconds()
            data = envelope.encode(message, now, limit)
            self.transport.write(data, address)
        except (EncodeError, OSError) as e:
            self.send_errors += 1
            log.warn(
                "could not send {kind} to {to}: {error}",
                kind=type(message).__name__,
                to=format_host_port(*address),
                error=e,
            )
            return False
        self.sent += 1
        self.bytes_sent += len(data)
        return True


#: the most frames a joiner takes of one Welcome (1 GiB at 16 MiB frames)
MAX_WELCOME_FRAMES = 64


class _FrameProtocol(Int32StringReceiver, TimeoutMixin):
    """Length-prefixed frames of the TCP sync, with a size limit and a timeout."""

    expected: frozenset[wire.MessageType] = frozenset()
    transport: Any
    #: whether each frame restarts the timeout (else it bounds the whole sync)
    timeout_per_frame = True

    def __init__(
        self,
        bad_input: BadInputReporter,
        max_frame: int,
        timeout: float,
        max_datagram: int | None = None,
        envelope: Envelope | None = None,
    ):
        self.bad_input = bad_input
        self.MAX_LENGTH = max_frame
        self.timeout = timeout
        #: when set, a full state from the peer is checked against it
        self.max_datagram = max_datagram
        self.envelope = envelope if envelope is not None else Envelope()
        #: why this connection's peer was not listened to, if it was not
        self.refusal: str | None = None

    @property
    def peer_name(self) -> str:
        peer = self.transport.getPeer()
        return format_host_port(peer.host, peer.port)

    def connectionMade(self) -> None:
        self.setTimeout(self.timeout)

    def stringReceived(self, frame: bytes) -> None:
        if self.timeout_per_frame:
            self.resetTimeout()
        try:
            message = self.envelope.decode(frame, self.expected, self._now())
        except DecodeError as e:
            self._report(e.reason, e.detail)
            self.refusal = f"its answer was dropped: {e}"
            if e.reason == "wrong-cluster" and self.envelope.should_tell(
                self.transport.getPeer().host, self._now()
            ):
                self.sendString(self.envelope.bad_cluster_reply())
                self.transport.loseConnection()
                return
            self.transport.abortConnection()
            return
        if isinstance(message, wire.BadCluster):
            self.otherCluster(message)
            return
        self.messageReceived(message)

    def _now(self) -> float:
        return self.bad_input.clock.seconds()

    def otherCluster(self, message: wire.BadCluster) -> None:
        """The peer says this node is not of its cluster."""
        self.refusal = _other_cluster(message, self.envelope)
        self._report("told-other-cluster", self.refusal)
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

    def lengthLimitExceeded(self, length: int) -> None:
        self._report("oversized", f"frame of {length} > {self.MAX_LENGTH}")
        self.transport.abortConnection()

    def timeoutConnection(self) -> None:
        self._report("stalled", f"nothing for {self.timeout}s")
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.setTimeout(None)


class SyncServerProtocol(_FrameProtocol):
    """Answers a joining node's Hello with this node's full state."""

    expected = frozenset({wire.MessageType.HELLO, wire.MessageType.BAD_CLUSTER})

    def __init__(
        self,
        on_hello: Callable[[wire.Hello], defer.Deferred[wire.Welcome]],
        bad_input: BadInputReporter,
        max_frame: int,
        timeout: float,
        max_datagram: int | None = None,
        envelope: Envelope | None = None,
    ) -> None:
        super().__init__(bad_input, max_frame, timeout, max_datagram, envelope)
        self.on_hello = on_hello
        self.sender = ""  # the joining node's id, once its Hello is in

    def messageReceived(self, message: wire.Message) -> None:
        assert isinstance(message, wire.Hello)
        self.setTimeout(None)  # our turn now
        self.sender = message.sender
        self.check_datagram_fit(message)
        d = defer.maybeDeferred(self.on_hello, message)
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
            self.sendString(data)
        self.setTimeout(self.timeout)  # a client that never reads is cut off
        self.transport.loseConnection()

    def _failed(self, failure: Failure, sender: str) -> None:
        log.failure("could not answer the sync of {sender}", failure, sender=sender)
        self.transport.abortConnection()


class SyncServerFactory(Factory):
    noisy = False  # no "Starting factory" log lines

    def __init__(
        self,
        on_hello: Callable[[wire.Hello], defer.Deferred[wire.Welcome]],
        bad_input: BadInputReporter,
        max_frame: int,
        timeout: float,
        max_datagram: int | None = None,
        envelope: Envelope | None = None,
    ) -> None:
        self.on_hello = on_hello
        self.bad_input = bad_input
        self.max_frame = max_frame
        self.timeout = timeout
        self.max_datagram = max_datagram
        self.envelope = envelope

    def buildProtocol(self, addr: object) -> SyncServerProtocol:
        return SyncServerProtocol(
            self.on_hello,
            self.bad_input,
            self.max_frame,
            self.timeout,
            self.max_datagram,
            self.envelope,
        )


class SyncClientProtocol(_FrameProtocol):
    """Sends a Hello; ``welcome`` fires with the answer or fails.

    The whole Welcome, however many frames, must arrive within the timeout,
    and in at most ``MAX_WELCOME_FRAMES`` frames: a seed that goes on longer
    is cut off, and what came is merged (any leading run of frames is a
    valid state; gossip brings the rest). So a broken or hostile seed cannot
    hold a joiner's memory or its sync forever.
    """

    expected = frozenset({wire.MessageType.WELCOME, wire.MessageType.BAD_CLUSTER})
    timeout_per_frame = False

    def __init__(
        self,
        hello: wire.Hello,
        bad_input: BadInputReporter,
        max_frame: int,
        timeout: float,
        max_datagram: int | None = None,
        envelope: Envelope | None = None,
    ) -> None:
        super().__init__(bad_input, max_frame, timeout, max_datagram, envelope)
        self.hello = hello
        self.welcome: defer.Deferred[wire.Welcome] = defer.Deferred()
        self.frames: list[wire.Welcome] = []

    def connectionMade(self) -> None:
        super().connectionMade()
        now = self._now()
        data = self.envelope.encode(self.hello, now)
        if len(data) > self.MAX_LENGTH:
            log.warn(
                "this node's full state is {size} bytes, over the frame limit of"
                " {limit} (max_frame): the Hello of the full sync carries none of"
                " it, and the peer gets it by UDP gossip only (see 'How much state'"
                " in docs/operations.md)",
                size=len(data),
                limit=self.MAX_LENGTH,
            )
            data = self.envelope.encode(wire.Hello(self.hello.sender, ()), now)
        self.sendString(data)

    def messageReceived(self, message: wire.Message) -> None:
        assert isinstance(message, wire.Welcome)
        if len(self.frames) >= MAX_WELCOME_FRAMES:
            return  # cut off below; the connection is closing
        self.frames.append(message)  # the seed closes after the last
        if len(self.frames) == MAX_WELCOME_FRAMES:
            log.warn(
                "full sync with {peer}: cut off after {frames} frames, the most a"
                " Welcome may take; merging what came, gossip brings the rest",
                peer=self.peer_name,
                frames=MAX_WELCOME_FRAMES,
            )
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        if self.welcome.called:
            return
        if not self.frames:
            why = self.refusal
            if why is None and self.envelope.sealed:
                why = (
                    "a seed whose keys differ from this node's drops its Hello:"
                    " check that both have the same key in their --key-file"
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
