"""The messages of the wire protocol, as plain attrs classes.

Their layout in bytes is :mod:`pokan.wire.codec`'s; ``docs/protocol.md``
documents every field.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from typing import NamedTuple

import attrs

from pokan.core.state import NodeDelta
from pokan.errors import ConfigurationError

MAGIC = b"PK"
PROTOCOL_VERSION = 3
#: magic, version, type, flags and the cluster tag
HEADER_SIZE = 9
TAG_SIZE = 4
FLAG_SEALED = 0x01
DEFAULT_CLUSTER = "pokan"

#: Bytes kept free in every datagram for the seal: the key id (4), the nonce
#: (24), the send time (4) and the AEAD tag (16). Kept in plaintext clusters
#: too, so that sealed and plaintext nodes cut their datagrams alike.
SEAL_HEADROOM = 48
DEFAULT_MAX_DATAGRAM = 1400
MAX_UDP_PAYLOAD = 65507
MIN_DATAGRAM = 512
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

MAX_ID_LEN = 300
MAX_ADDRESS_LEN = 64
MAX_KEY_LEN = 1024
MAX_VALUE_LEN = MAX_UDP_PAYLOAD
MAX_UINT64 = 2**64 - 1
#: the largest generation, version or heartbeat a message may carry: far
#: below 2^64, so nothing a node does on receipt can overflow
MAX_COUNTER = 2**62


class MessageType(enum.IntEnum):
    SYN = 1
    SYN_ACK = 2
    ACK = 3
    GOODBYE = 4
    #: "you are not of my cluster": any channel, never sealed, never merged
    BAD_CLUSTER = 5
    #: "forget this dead or left node": sent by a node told to forget it
    FORGET = 13
    #: SWIM failure detection (see pokan.core.liveness)
    PING = 6
    PING_REQ = 7
    PING_ACK = 8
    NACK = 9
    NOTICE = 10
    HELLO = 16
    WELCOME = 17
    #: TCP: "I watch you": a connection held open so that a process's death
    #: (its kernel closes the socket) is noticed at once; see pokan.net.watch
    WATCH = 18


class DigestEntry(NamedTuple):
    """What a node knows of one node: its generation, watermark, heartbeat.

    A named tuple, not an attrs class: a digest holds dozens of them and
    every received datagram builds them anew (a fifth of the cost).
    """

    node_id: str
    generation: int
    version: int
    heartbeat: int
    #: the node said goodbye (sent as an optional fifth field, FLAG_LEFT)
    left: bool = False


#: status flags, the optional last field of a digest entry or delta
FLAG_LEFT = 0x01


@attrs.frozen
class Syn:
    """Opens an exchange: the sender's digest, or a slice of it.

    When the digest does not fit, it covers the node ids from ``low`` to
    ``high`` in sorted order, wrapping around (``low > high``); the sender's own
    entry is always listed. ``low``/``high`` are None for a complete digest.
    A receiver knowing a node inside the range that is not listed can infer
    that the sender lacks it. ``deltas`` piggybacks the sender's freshest
    updates (rumours, see :mod:`pokan.core.rumours`).

    A *summary Syn* lists no entries: ``summary`` is the 64-bit hash of the
    entries the digest would list (the sender's own, and every node it knows
    from ``low`` to ``high``; see :func:`pokan.core.reconcile.summary_hash`).
    The receiver answers it with a SynAck whose ``in_sync`` says whether its
    own hash of the same entries is equal.
    """

    sender: str
    digest: tuple[DigestEntry, ...]
    low: str | None = None
    high: str | None = None
    deltas: tuple[NodeDelta, ...] = ()
    summary: int | None = None

    def covers(self, node_id: str) -> bool:
        """True if ``node_id`` falls inside the range of the digest."""
        if self.low is None or self.high is None:
            return True
        if self.low <= self.high:
            return self.low <= node_id <= self.high
        return node_id >= self.low or node_id <= self.high


@attrs.frozen
class SynAck:
    """The reply: what the initiator lacks, and the responder's differing digest.

    ``in_sync`` answers a summary Syn (None for a digest Syn): True if the
    hashes are equal (nothing to exchange), False if not (the initiator then
    sends the digest of the same range). Such a reply lists no digest entries;
    its ``deltas`` are the responder's rumours only.
    """

    sender: str
    deltas: tuple[NodeDelta, ...]
    digest: tuple[DigestEntry, ...]
    in_sync: bool | None = None


@attrs.frozen
class Ack:
    """Closes an exchange: what the responder lacks."""

    sender: str
    deltas: tuple[NodeDelta, ...]


@attrs.frozen
class Goodbye:
    """The sender is stopping; its peers mark it left at once."""

    sender: str
    generation: int


@attrs.frozen
class BadCluster:
    """The answer to a message of another cluster: the responder's cluster name.

    Sent once per source (see :mod:`pokan.wire.envelope`), never sealed (the other
    cluster may have other keys), and only logged by its receiver.
    """

    cluster: str


@attrs.frozen
class Forget:
    """The sender forgot ``node_id`` at ``generation`` (an operator's ``forget``).

    A receiver forgets that node too only if it holds it dead or left at that
    generation: never a node it holds alive, whatever the sender says.
    """

    sender: str
    node_id: str
    generation: int


@attrs.frozen
class Hello:
    """TCP: a joining node's full state; the answer is a Welcome."""

    sender: str
    deltas: tuple[NodeDelta, ...]


@attrs.frozen
class Welcome:
    """TCP: the answer to Hello, the responder's full state."""

    sender: str
    deltas: tuple[NodeDelta, ...]


@attrs.frozen
class Watch:
    """TCP: the sender holds this connection open to notice the receiver's
    death at once (and the receiver the sender's); nothing else is sent on it."""

    sender: str
    generation: int


#: the kinds of a liveness rumour
ALIVE = 0
SUSPECT = 1
DEAD = 2
RUMOUR_KINDS = ("alive", "suspect", "dead")
#: liveness rumours one message carries at most
MAX_RUMOURS = 16
#: probe sequence numbers are 32-bit
MAX_SEQ = 2**32 - 1


class Rumour(NamedTuple):
    """A claim about one member's liveness, at one incarnation of one generation.

    ``kind`` is :data:`ALIVE` (only ``node_id`` itself issues it: a
    refutation), :data:`SUSPECT` or :data:`DEAD`; ``origin`` is the node that
    suspects or declares (the node itself for ALIVE). Ordered by
    ``(generation, incarnation)``; see docs/membership.md.
    """

    kind: int
    node_id: str
    generation: int
    incarnation: int
    origin: str


@attrs.frozen
class Ping:
    """SWIM's direct probe of ``target``: answered by a PingAck of ``seq``."""

    sender: str
    seq: int
    target: str
    rumours: tuple[Rumour, ...] = ()


@attrs.frozen
class PingReq:
    """Asks a member to probe ``target`` for the sender (an indirect probe)."""

    sender: str
    seq: int
    target: str
    rumours: tuple[Rumour, ...] = ()


@attrs.frozen
class PingAck:
    """``target`` answered the probe ``seq`` (directly, or through a helper)."""

    sender: str
    seq: int
    target: str
    rumours: tuple[Rumour, ...] = ()


@attrs.frozen
class Nack:
    """A helper probed ``target`` for probe ``seq`` and heard nothing (Lifeguard)."""

    sender: str
    seq: int
    target: str


@attrs.frozen
class Notice:
    """Liveness rumours pushed at once to a few members (no reply)."""

    sender: str
    rumours: tuple[Rumour, ...]


LIVENESS_MESSAGES = (Ping, PingReq, PingAck, Nack, Notice)

Message = (
    Syn
    | SynAck
    | Ack
    | Goodbye
    | BadCluster
    | Forget
    | Hello
    | Welcome
    | Watch
    | Ping
    | PingReq
    | PingAck
    | Nack
    | Notice
)

MESSAGE_TYPES: dict[type, MessageType] = {
    Syn: MessageType.SYN,
    SynAck: MessageType.SYN_ACK,
    Ack: MessageType.ACK,
    Goodbye: MessageType.GOODBYE,
    BadCluster: MessageType.BAD_CLUSTER,
    Forget: MessageType.FORGET,
    Ping: MessageType.PING,
    PingReq: MessageType.PING_REQ,
    PingAck: MessageType.PING_ACK,
    Nack: MessageType.NACK,
    Notice: MessageType.NOTICE,
    Hello: MessageType.HELLO,
    Welcome: MessageType.WELCOME,
    Watch: MessageType.WATCH,
}
DATAGRAM_TYPES = frozenset(
    {
        MessageType.SYN,
        MessageType.SYN_ACK,
        MessageType.ACK,
        MessageType.GOODBYE,
        MessageType.BAD_CLUSTER,
        MessageType.FORGET,
        MessageType.PING,
        MessageType.PING_REQ,
        MessageType.PING_ACK,
        MessageType.NACK,
        MessageType.NOTICE,
    }
)
STREAM_TYPES = frozenset(
    {
        MessageType.HELLO,
        MessageType.WELCOME,
        MessageType.WATCH,
        MessageType.BAD_CLUSTER,
    }
)

#: a cluster name: what ``--cluster`` accepts
MAX_CLUSTER_LEN = 64


def check_cluster(name: object) -> str:
    """A cluster name: 1 to 64 letters, digits, ``.``, ``_`` or ``-``."""
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= MAX_CLUSTER_LEN
        or not name.isascii()
        or not all(c.isalnum() or c in "._-" for c in name)
    ):
        raise ConfigurationError(
            f"cluster name must be 1 to {MAX_CLUSTER_LEN} letters, digits, '.',"
            f" '_' or '-', got {name!r}"
        )
    return name


@functools.lru_cache(maxsize=64)
def cluster_tag(name: str) -> bytes:
    """The 4 bytes naming ``name`` in every envelope."""
    return hashlib.blake2b(
        name.encode(), digest_size=TAG_SIZE, person=b"pokan-cluster"
    ).digest()
