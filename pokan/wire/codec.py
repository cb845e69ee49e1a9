"""The wire format: message classes and the codec that turns them into bytes.

Every message, on UDP or TCP, is an *envelope*::

    magic  b"PK"   2 bytes
    version        1 byte   (PROTOCOL_VERSION)
    type           1 byte   (MessageType)
    flags          1 byte   (bit 0: sealed)
    cluster tag    4 bytes  (BLAKE2b of the cluster name: see cluster_tag)
    body           msgpack array, the fields of the message in order; or,
                   sealed, the AEAD box of it (see pokan.wire.envelope)

TCP frames are the same envelope behind a 4-byte big-endian length.
``docs/protocol.md`` documents every field. Decoding checks every length,
count and type before building anything and raises :class:`DecodeError`.
The envelope's keys, cluster and replay checks are :mod:`pokan.wire.envelope`'s;
this module only lays out and parses the bytes.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import msgpack

from pokan.core.state import ROLES, Entry, NodeDelta, NodeInfo
from pokan.errors import DecodeError, EncodeError
from pokan.wire.messages import (
    DEFAULT_CLUSTER,
    FLAG_LEFT,
    FLAG_SEALED,
    HEADER_SIZE,
    MAGIC,
    MAX_ADDRESS_LEN,
    MAX_CLUSTER_LEN,
    MAX_COUNTER,
    MAX_ID_LEN,
    MAX_KEY_LEN,
    MAX_RUMOURS,
    MAX_SEQ,
    MAX_UINT64,
    MAX_VALUE_LEN,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    RUMOUR_KINDS,
    Ack,
    BadCluster,
    DigestEntry,
    Forget,
    Goodbye,
    Hello,
    Message,
    MessageType,
    Nack,
    Notice,
    Ping,
    PingAck,
    PingReq,
    Rumour,
    Syn,
    SynAck,
    Watch,
    Welcome,
    cluster_tag,
)

# -- encoding -------------------------------------------------------------------


def pack_info(info: NodeInfo) -> list[Any]:
    return [
        info.id,
        info.generation,
        info.address,
        info.tcp_port,
        info.udp_port,
        ROLES.index(info.role),
    ]


def pack_entry(key: str, entry: Entry) -> list[Any]:
    return [key, entry.value, entry.version, entry.timestamp]


def pack_delta_header(delta: NodeDelta) -> list[Any]:
    return [pack_info(delta.info), delta.heartbeat, delta.since, delta.version]


def pack_delta(delta: NodeDelta) -> list[Any]:
    packed = [
        *pack_delta_header(delta),
        [pack_entry(k, e) for k, e in delta.entries],
    ]
    if delta.left or delta.gc_point:
        packed += [FLAG_LEFT if delta.left else 0, delta.gc_point]
    return packed


def pack_digest(digest: tuple[DigestEntry, ...]) -> list[tuple[Any, ...]]:
    """Each entry's four fields (msgpack packs a tuple as an array), with
    FLAG_LEFT fifth for a node that left; no function call per entry."""
    return [e[:4] if not e[4] else (*e[:4], FLAG_LEFT) for e in digest]


def pack_digest_entry(entry: DigestEntry) -> tuple[Any, ...]:
    return pack_digest((entry,))[0]


def pack_rumours(rumours: tuple[Rumour, ...]) -> list[tuple[Any, ...]]:
    """Each rumour's five fields (a tuple packs as an array)."""
    return list(rumours)


def rumour_size(rumour: Rumour) -> int:
    """The packed size of one liveness rumour, without packing."""
    return (
        1  # array header
        + 1  # kind
        + str_size(rumour.node_id)
        + uint_size(rumour.generation)
        + uint_size(rumour.incarnation)
        + str_size(rumour.origin)
    )


def _body(message: Message) -> list[Any]:
    if isinstance(message, Ping | PingReq | PingAck):
        return [
            message.sender,
            message.seq,
            message.target,
            pack_rumours(message.rumours),
        ]
    if isinstance(message, Nack):
        return [message.sender, message.seq, message.target]
    if isinstance(message, Notice):
        return [message.sender, pack_rumours(message.rumours)]
    body: list[Any]
    if isinstance(message, Syn):
        body = [
            message.sender,
            pack_digest(message.digest),
            message.low,
            message.high,
            [pack_delta(d) for d in message.deltas],
        ]
        if message.summary is not None:
            body.append(message.summary)
        return body
    if isinstance(message, SynAck):
        body = [
            message.sender,
            [pack_delta(d) for d in message.deltas],
            pack_digest(message.digest),
        ]
        if message.in_sync is not None:
            body.append(message.in_sync)
        return body
    if isinstance(message, Goodbye | Watch):
        return [message.sender, message.generation]
    if isinstance(message, BadCluster):
        return [message.cluster]
    if isinstance(message, Forget):
        return [message.sender, message.node_id, message.generation]
    # Ack, Hello, Welcome
    return [message.sender, [pack_delta(d) for d in message.deltas]]


def header(kind: MessageType, cluster: str, sealed: bool = False) -> bytes:
    """The envelope's header for a message of ``kind`` in ``cluster``."""
    flags = FLAG_SEALED if sealed else 0
    return MAGIC + bytes((PROTOCOL_VERSION, kind, flags)) + cluster_tag(cluster)


def kind_of(message: Message) -> MessageType:
    return MESSAGE_TYPES[type(message)]


def encode_body(message: Message) -> bytes:
    """The message's body: its fields as one msgpack array."""
    return msgpack.packb(_body(message), use_bin_type=True)


def encode(
    message: Message,
    limit: int | None = None,
    *,
    cluster: str = DEFAULT_CLUSTER,
) -> bytes:
    """Encode ``message`` in a plaintext envelope; EncodeError if over ``limit``.

    A node with keys seals through :class:`pokan.wire.envelope.Envelope` instead.
    """
    data = header(kind_of(message), cluster) + encode_body(message)
    if limit is not None and len(data) > limit:
        raise EncodeError(
            f"{type(message).__name__} is {len(data)} bytes, over the limit of {limit}"
        )
    return data


def packed_size(obj: Any) -> int:
    """Size in bytes of ``obj`` (lists, str, bytes, numbers) once packed."""
    return len(msgpack.packb(obj, use_bin_type=True))


def uint_size(n: int) -> int:
    """Bytes msgpack spends on the unsigned integer ``n``."""
    if n < 128:
        return 1
    if n < 256:
        return 2
    if n < 65536:
        return 3
    return 5 if n < 2**32 else 9


@functools.lru_cache(maxsize=65536)
def str_size(s: str) -> int:
    """Bytes msgpack spends on the string ``s``."""
    n = len(s) if s.isascii() else len(s.encode())
    if n < 32:
        return 1 + n
    if n < 256:
        return 2 + n
    return 3 + n if n < 65536 else 5 + n


def digest_entry_size(entry: DigestEntry) -> int:
    """``packed_size(pack_digest_entry(entry))``, without packing."""
    return digest_size(*entry)


def digest_size(
    node_id: str, generation: int, version: int, heartbeat: int, left: bool
) -> int:
    """The packed size of the digest entry of these fields."""
    return (
        1  # the array header
        + str_size(node_id)
        + (1 if generation < 128 else uint_size(generation))
        + (1 if version < 128 else uint_size(version))
        + (1 if heartbeat < 128 else uint_size(heartbeat))
        + left  # FLAG_LEFT, one byte
    )


def array_header_size(count: int) -> int:
    """Bytes msgpack spends on the header of an array of ``count`` items."""
    if count < 16:
        return 1
    return 3 if count < 2**16 else 5


# -- decoding -------------------------------------------------------------------


class Header(NamedTuple):
    """The parsed envelope header of one message."""

    kind: MessageType
    sealed: bool
    tag: bytes


def read_header(data: bytes, allowed: frozenset[MessageType] | None = None) -> Header:
    """Check and parse the envelope header; DecodeError with a short reason."""
    # each check as soon as its byte is there: short junk is named by its
    # first wrong byte, not just "truncated"
    if data[:2] != MAGIC[: len(data)]:
        raise DecodeError("bad-magic", f"starts with {data[:2]!r}")
    if len(data) > 2 and data[2] != PROTOCOL_VERSION:
        raise DecodeError(
            "wrong-version", f"protocol {data[2]}, this node speaks {PROTOCOL_VERSION}"
        )
    if len(data) > 3:
        try:
            kind = MessageType(data[3])
        except ValueError:
            raise DecodeError("unknown-type", f"message type {data[3]}") from None
        if allowed is not None and kind not in allowed:
            raise DecodeError("unexpected-type", f"{kind.name} not allowed here")
    if len(data) < HEADER_SIZE:
        raise DecodeError("truncated", f"{len(data)} bytes, no full header")
    if data[4] & ~FLAG_SEALED:
        raise DecodeError("bad-flags", f"unknown flags {data[4]:#x}")
    return Header(kind, bool(data[4] & FLAG_SEALED), data[5:HEADER_SIZE])


def decode(
    data: bytes,
    allowed: frozenset[MessageType] | None = None,
    *,
    cluster: str = DEFAULT_CLUSTER,
) -> Message:
    """Decode one plaintext envelope of ``cluster``; DecodeError if invalid.

    A node with keys opens envelopes through :class:`pokan.wire.envelope.Envelope`.
    """
    head = read_header(data, allowed)
    if head.kind != MessageType.BAD_CLUSTER and head.tag != cluster_tag(cluster):
        raise DecodeError("wrong-cluster", f"not of cluster {cluster!r}")
    if head.sealed:
        raise DecodeError("sealed", "a sealed message, and this node has no key")
    return decode_body(head.kind, data[HEADER_SIZE:])


def decode_body(kind: MessageType, body: bytes) -> Message:
    """Decode the msgpack body of a message of ``kind``."""
    try:
        fields = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=MAX_VALUE_LEN,
            max_bin_len=MAX_VALUE_LEN,
            max_array_len=len(body),
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises several types for bad input
        raise DecodeError("bad-body", unpack_problem(e)) from None
    message: Message = _DECODERS[kind](_array(fields, "body"))
    return message


#: what msgpack's exceptions that carry no message mean
_UNPACK_PROBLEMS = {
    "FormatError": "not msgpack: a reserved type byte (0xc1) or a malformed value",
    "StackError": "msgpack nested too deeply",
}


def unpack_problem(e: Exception) -> str:
    """A msgpack error as ``Type: what is wrong``, never with an empty reason."""
    kind = type(e).__name__
    return f"{kind}: {str(e) or _UNPACK_PROBLEMS.get(kind, 'not valid msgpack')}"


def _array(obj: Any, what: str, length: int | None = None) -> list[Any]:
    if not isinstance(obj, list):
        raise DecodeError("bad-field", f"{what} is not an array")
    if length is not None and len(obj) != length:
        raise DecodeError("bad-field", f"{what} has {len(obj)} fields, not {length}")
    return obj


def _uint(obj: Any, what: str, low: int = 0, high: int = MAX_UINT64) -> int:
    if isinstance(obj, bool) or not isinstance(obj, int) or not low <= obj <= high:
        raise DecodeError("bad-field", f"{what} is not an integer in {low}..{high}")
    return obj


def _counter(obj: Any, what: str, low: int = 0) -> int:
    """A generation, version or heartbeat: at most MAX_COUNTER."""
    return _uint(obj, what, low, MAX_COUNTER)


def read_str(obj: Any, what: str, max_len: int, allow_empty: bool = False) -> str:
    if not isinstance(obj, str) or len(obj) > max_len or (not obj and not allow_empty):
        raise DecodeError("bad-field", f"{what} is not a string of 1..{max_len}")
    return obj


def _info(obj: Any) -> NodeInfo:
    f = _array(obj, "node info", 6)
    return NodeInfo(
        id=read_str(f[0], "node id", MAX_ID_LEN),
        generation=_counter(f[1], "generation"),
        address=read_str(f[2], "address", MAX_ADDRESS_LEN),
        tcp_port=_uint(f[3], "tcp port", 1, 65535),
        udp_port=_uint(f[4], "udp port", 1, 65535),
        role=ROLES[_uint(f[5], "role", 0, len(ROLES) - 1)],
    )


def _entry(obj: Any) -> tuple[str, Entry]:
    f = _array(obj, "entry", 4)
    key = read_str(f[0], "key", MAX_KEY_LEN)
    value = f[1]
    if value is not None and not isinstance(value, str | bytes):
        raise DecodeError("bad-field", "value is not str, bytes or nil")
    timestamp = f[3]
    if (
        isinstance(timestamp, bool)
        or not isinstance(timestamp, int | float)
        or not math.isfinite(timestamp)
    ):
        raise DecodeError("bad-field", "timestamp is not a finite number")
    return key, Entry(value, _counter(f[2], "version", 1), float(timestamp))


def read_delta(obj: Any) -> NodeDelta:
    f = _array(obj, "delta")
    if len(f) not in (5, 7):
        raise DecodeError("bad-field", f"delta has {len(f)} fields, not 5 or 7")
    since = _counter(f[2], "since")
    version = _counter(f[3], "version")
    entries = tuple(_entry(e) for e in _array(f[4], "entries"))
    for _, entry in entries:
        if not since < entry.version <= version:
            raise DecodeError("bad-field", "entry version outside (since, version]")
    left, gc_point = False, 0
    if len(f) == 7:
        left = _uint(f[5], "status flags", 0, FLAG_LEFT) == FLAG_LEFT
        gc_point = _uint(f[6], "gc point", 0, version)
        if gc_point and since:
            raise DecodeError("bad-field", "a reset delta must start at version 0")
        if not (left or gc_point):
            raise DecodeError("bad-field", "empty status flags and gc point")
    return NodeDelta(
        _info(f[0]),
        _counter(f[1], "heartbeat"),
        since,
        version,
        entries,
        left=left,
        gc_point=gc_point,
    )


_new_tuple = tuple.__new__  # a DigestEntry without the Python-level __new__


def _digest_entry(obj: Any) -> DigestEntry:
    # the fast path: one check per field; anything odd takes the long way,
    # which says what is wrong
    if type(obj) is list and 4 <= len(obj) <= 5:
        node_id, generation, version, heartbeat = obj[:4]
        if (
            type(node_id) is str
            and 0 < len(node_id) <= MAX_ID_LEN
            and type(generation) is int
            and type(version) is int
            and type(heartbeat) is int
            and 0 <= generation <= MAX_COUNTER
            and 0 <= version <= MAX_COUNTER
            and 0 <= heartbeat <= MAX_COUNTER
            and (len(obj) == 4 or (type(obj[4]) is int and obj[4] == FLAG_LEFT))
        ):
            left = len(obj) == 5
            return _new_tuple(
                DigestEntry, (node_id, generation, version, heartbeat, left)
            )
    f = _array(obj, "digest entry")
    if len(f) not in (4, 5):
        raise DecodeError("bad-field", f"digest entry has {len(f)} fields, not 4 or 5")
    left = len(f) == 5 and _uint(f[4], "status flags", FLAG_LEFT, FLAG_LEFT) > 0
    return DigestEntry(
        read_str(f[0], "node id", MAX_ID_LEN),
        _counter(f[1], "generation"),
        _counter(f[2], "version"),
        _counter(f[3], "heartbeat"),
        left,
    )


def _optional_id(obj: Any, what: str) -> str | None:
    return None if obj is None else read_str(obj, what, MAX_ID_LEN)


def _decode_syn(f: list[Any]) -> Syn:
    # 4 fields from a node without rumours, 5 with the piggybacked deltas,
    # 6 for a summary Syn (its hash last)
    _array(f, "Syn", len(f) if len(f) in (5, 6) else 4)
    low, high = _optional_id(f[2], "low"), _optional_id(f[3], "high")
    if (low is None) != (high is None):
        raise DecodeError("bad-field", "digest range has one end only")
    digest = tuple(_digest_entry(e) for e in _array(f[1], "digest"))
    deltas = tuple(read_delta(d) for d in _array(f[4], "deltas")) if len(f) > 4 else ()
    summary = _uint(f[5], "summary") if len(f) == 6 else None
    if summary is not None and digest:
        raise DecodeError("bad-field", "a summary Syn lists digest entries")
    return Syn(read_str(f[0], "sender", MAX_ID_LEN), digest, low, high, deltas, summary)


def _decode_syn_ack(f: list[Any]) -> SynAck:
    # 3 fields answering a digest Syn, 4 (the in-sync verdict) a summary Syn
    _array(f, "SynAck", 4 if len(f) == 4 else 3)
    in_sync = None
    if len(f) == 4:
        if type(f[3]) is not bool:
            raise DecodeError("bad-field", "in-sync verdict is not true or false")
        in_sync = f[3]
    digest = tuple(_digest_entry(e) for e in _array(f[2], "digest"))
    if in_sync is not None and digest:
        raise DecodeError("bad-field", "a summary's answer lists digest entries")
    return SynAck(
        read_str(f[0], "sender", MAX_ID_LEN),
        tuple(read_delta(d) for d in _array(f[1], "deltas")),
        digest,
        in_sync,
    )


def _decode_deltas(f: list[Any], cls: type[Ack | Hello | Welcome]) -> Message:
    _array(f, cls.__name__, 2)
    deltas = tuple(read_delta(d) for d in _array(f[1], "deltas"))
    return cls(read_str(f[0], "sender", MAX_ID_LEN), deltas)


def _decode_goodbye(f: list[Any]) -> Goodbye:
    _array(f, "Goodbye", 2)
    return Goodbye(read_str(f[0], "sender", MAX_ID_LEN), _counter(f[1], "generation"))


def _decode_watch(f: list[Any]) -> Watch:
    _array(f, "Watch", 2)
    return Watch(read_str(f[0], "sender", MAX_ID_LEN), _counter(f[1], "generation"))


def _decode_bad_cluster(f: list[Any]) -> BadCluster:
    _array(f, "BadCluster", 1)
    return BadCluster(read_str(f[0], "cluster", MAX_CLUSTER_LEN))


def _decode_forget(f: list[Any]) -> Forget:
    _array(f, "Forget", 3)
    return Forget(
        read_str(f[0], "sender", MAX_ID_LEN),
        read_str(f[1], "node id", MAX_ID_LEN),
        _counter(f[2], "generation"),
    )


def _rumour(obj: Any) -> Rumour:
    f = _array(obj, "rumour", 5)
    return Rumour(
        _uint(f[0], "rumour kind", 0, len(RUMOUR_KINDS) - 1),
        read_str(f[1], "rumour node id", MAX_ID_LEN),
        _counter(f[2], "rumour generation"),
        _counter(f[3], "incarnation"),
        read_str(f[4], "rumour origin", MAX_ID_LEN),
    )


def _rumours(obj: Any) -> tuple[Rumour, ...]:
    items = _array(obj, "rumours")
    if len(items) > MAX_RUMOURS:
        raise DecodeError("bad-field", f"{len(items)} rumours, more than {MAX_RUMOURS}")
    return tuple(_rumour(r) for r in items)


def _decode_probe(f: list[Any], cls: type[Ping | PingReq | PingAck]) -> Message:
    _array(f, cls.__name__, 4)
    return cls(
        read_str(f[0], "sender", MAX_ID_LEN),
        _uint(f[1], "seq", 0, MAX_SEQ),
        read_str(f[2], "target", MAX_ID_LEN),
        _rumours(f[3]),
    )


def _decode_nack(f: list[Any]) -> Nack:
    _array(f, "Nack", 3)
    return Nack(
        read_str(f[0], "sender", MAX_ID_LEN),
        _uint(f[1], "seq", 0, MAX_SEQ),
        read_str(f[2], "target", MAX_ID_LEN),
    )


def _decode_notice(f: list[Any]) -> Notice:
    _array(f, "Notice", 2)
    return Notice(read_str(f[0], "sender", MAX_ID_LEN), _rumours(f[1]))


_DECODERS: dict[MessageType, Any] = {
    MessageType.PING: lambda f: _decode_probe(f, Ping),
    MessageType.PING_REQ: lambda f: _decode_probe(f, PingReq),
    MessageType.PING_ACK: lambda f: _decode_probe(f, PingAck),
    MessageType.NACK: _decode_nack,
    MessageType.NOTICE: _decode_notice,
    MessageType.SYN: _decode_syn,
    MessageType.SYN_ACK: _decode_syn_ack,
    MessageType.ACK: lambda f: _decode_deltas(f, Ack),
    MessageType.GOODBYE: _decode_goodbye,
    MessageType.BAD_CLUSTER: _decode_bad_cluster,
    MessageType.FORGET: _decode_forget,
    MessageType.HELLO: lambda f: _decode_deltas(f, Hello),
    MessageType.WELCOME: lambda f: _decode_deltas(f, Welcome),
    MessageType.WATCH: _decode_watch,
}
