"""How a node wraps and opens its messages: its cluster, its keys, replays.

:mod:`pokan.wire` lays out the bytes; an :class:`Envelope` decides what goes
in them for one node: the cluster tag of its ``cluster``, and, when it has a
key ring, the AEAD seal (:class:`pokan.wire.keyring.Sealer`) around every body,
with the header and the cluster name bound as associated data. A sealed body
opens to the sender's send time and the plaintext body; the
:class:`ReplayGuard` refuses what is stale or was seen before.

Sealed, after the 9-byte header::

    key id  4 bytes  | nonce  24 bytes | ciphertext of (send time, u32 seconds,
    big-endian; then the msgpack body) | tag 16 bytes

Nothing of a sealed message is parsed before its tag checks out.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import Any, Protocol

from pokan import wire
from pokan.errors import DecodeError, EncodeError

#: seconds a sealed message's send time may differ from this node's clock
REPLAY_WINDOW = 300.0
#: how far below a sender's highest counter a late message is still taken
REPLAY_COUNTERS = 4096
#: senders (start prefixes) remembered at most; the oldest go first
MAX_SENDERS = 65536
#: how long a source that was told "other cluster" is not told again
TELL_AGAIN_AFTER = 3600.0
MAX_TOLD = 4096

_SEND_TIME = struct.Struct(">I")


class Sealing(Protocol):
    """What an Envelope needs of :class:`pokan.wire.keyring.Sealer`."""

    keyring: Any

    def seal(self, aad: bytes, plaintext: bytes) -> bytes: ...

    def open(self, aad: bytes, sealed: bytes) -> tuple[bytes, bytes]: ...

    @staticmethod
    def nonce_parts(nonce: bytes) -> tuple[bytes, int]: ...


class ReplayGuard:
    """Refuses a sealed message that is stale or that was seen before.

    Each sender's nonces are a random prefix, drawn once per start, and a
    counter. Per prefix the guard keeps the highest counter seen and the
    counters seen within :data:`REPLAY_COUNTERS` below it; a prefix not
    heard from for the replay window is forgotten, as its messages are stale
    by then anyway (the send time inside the seal is checked first).
    """

    def __init__(
        self,
        window: float = REPLAY_WINDOW,
        counters: int = REPLAY_COUNTERS,
        max_senders: int = MAX_SENDERS,
    ) -> None:
        self.window = window
        self.counters = counters
        self.max_senders = max_senders
        #: prefix -> (highest counter, counters seen near it, last heard)
        self._senders: OrderedDict[bytes, tuple[int, set[int], float]] = OrderedDict()

    def check(
        self, prefix: bytes, counter: int, sent: float, now: float
    ) -> DecodeError | None:
        """None if the message is fresh (and now remembered), else why not."""
        if abs(now - sent) > self.window:
            return DecodeError(
                "stale",
                f"sent {now - sent:+.0f}s from now, outside the {self.window:g}s"
                " replay window: a replay, or clocks apart (run NTP on every node)",
            )
        known = self._senders.get(prefix)
        if known is None:
            self._forget_old(now)
            self._senders[prefix] = (counter, {counter}, now)
            return None
        highest, seen, _ = known
        if counter in seen or counter <= highest - self.counters:
            return DecodeError("replayed", f"message {counter} of this sender again")
        seen.add(counter)
        if counter > highest:
            highest = counter
            if len(seen) > 2 * self.counters:
                floor = highest - self.counters
                seen = {c for c in seen if c > floor}
        self._senders[prefix] = (highest, seen, now)
        self._senders.move_to_end(prefix)
        return None

    def _forget_old(self, now: float) -> None:
        senders = self._senders
        while senders:
            prefix, (_, _, heard) = next(iter(senders.items()))
            if len(senders) < self.max_senders and now - heard <= self.window:
                return
            del senders[prefix]

    def __len__(self) -> int:
        return len(self._senders)


class Envelope:
    """One node's envelope: its cluster, and its seal when it has keys."""

    def __init__(
        self,
        cluster: str = wire.DEFAULT_CLUSTER,
        sealer: Sealing | None = None,
        replay: ReplayGuard | None = None,
    ) -> None:
        self.cluster = wire.check_cluster(cluster)
        self.tag = wire.cluster_tag(self.cluster)
        self._cluster_bytes = self.cluster.encode()
        self.sealer = sealer
        self.replay = replay if replay is not None else ReplayGuard()
        self._told: OrderedDict[str, float] = OrderedDict()

    @property
    def sealed(self) -> bool:
        return self.sealer is not None

    @property
    def overhead(self) -> int:
        """Bytes the envelope adds to a body: header, and the seal if any."""
        return wire.HEADER_SIZE + (wire.SEAL_HEADROOM if self.sealed else 0)

    def encode(
        self, message: wire.Message, now: float, limit: int | None = None
    ) -> bytes:
        """The message in this node's envelope; EncodeError if over ``limit``."""
        kind = wire.kind_of(message)
        body = wire.encode_body(message)
        if self.sealer is None or kind == wire.MessageType.BAD_CLUSTER:
            data = wire.header(kind, self.cluster) + body
        else:
            head = wire.header(kind, self.cluster, sealed=True)
            plaintext = _SEND_TIME.pack(int(now) & 0xFFFFFFFF) + body
            data = head + self.sealer.seal(head + self._cluster_bytes, plaintext)
        if limit is not None and len(data) > limit:
            raise EncodeError(
                f"{type(message).__name__} is {len(data)} bytes, over the limit"
                f" of {limit}"
            )
        return data

    def open(
        self,
        data: bytes,
        allowed: frozenset[wire.MessageType] | None,
        now: float,
    ) -> tuple[wire.MessageType, bytes]:
        """Check the envelope; the message type and its plaintext body.

        Raises DecodeError: another cluster ("wrong-cluster"), a plaintext
        message where keys are required ("unsealed") or the reverse
        ("sealed"), a seal that does not open ("unknown-key",
        "unauthenticated"), a stale or replayed one.
        """
        head = wire.read_header(data, allowed)
        if head.kind == wire.MessageType.BAD_CLUSTER:
            if head.sealed:
                raise DecodeError("bad-flags", "a BadCluster is never sealed")
            return head.kind, data[wire.HEADER_SIZE :]
        if head.tag != self.tag:
            raise DecodeError(
                "wrong-cluster",
                f"of another cluster than this node's {self.cluster!r}: give every"
                " node of one cluster the same --cluster",
            )
        if self.sealer is None:
            if head.sealed:
                raise DecodeError(
                    "sealed",
                    "a sealed message, and this node has no key: give it the"
                    " sender's --key-file",
                )
            return head.kind, data[wire.HEADER_SIZE :]
        if not head.sealed:
            raise DecodeError(
                "unsealed",
                "a plaintext message, and this node's gossip is sealed: give the"
                " sender this node's --key-file",
            )
        aad = data[: wire.HEADER_SIZE] + self._cluster_bytes
        plaintext, nonce = self.sealer.open(aad, data[wire.HEADER_SIZE :])
        if len(plaintext) < _SEND_TIME.size:
            raise DecodeError("truncated", "sealed body without its send time")
        (sent,) = _SEND_TIME.unpack_from(plaintext)
        prefix, counter = self.sealer.nonce_parts(nonce)
        refused = self.replay.check(prefix, counter, _unwrap_time(sent, now), now)
        if refused is not None:
            raise refused
        return head.kind, plaintext[_SEND_TIME.size :]

    def decode(
        self,
        data: bytes,
        allowed: frozenset[wire.MessageType] | None,
        now: float,
    ) -> wire.Message:
        kind, body = self.open(data, allowed, now)
        return wire.decode_body(kind, body)

    def should_tell(self, source: str, now: float) -> bool:
        """Whether to tell ``source`` it is of another cluster (once an hour)."""
        told = self._told.get(source)
        if told is not None and now - told < TELL_AGAIN_AFTER:
            return False
        self._told[source] = now
        self._told.move_to_end(source)
        while len(self._told) > MAX_TOLD:
            self._told.popitem(last=False)
        return True

    def bad_cluster_reply(self) -> bytes:
        return self.encode(wire.BadCluster(self.cluster), 0.0)


def _unwrap_time(sent: int, now: float) -> float:
    """The send time (u32 seconds) as the epoch second nearest ``now``."""
    base = int(now) & ~0xFFFFFFFF
    candidates = (base - 2**32 + sent, base + sent, base + 2**32 + sent)
    return float(min(candidates, key=lambda t: abs(t - now)))
