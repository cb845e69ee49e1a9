"""Property tests of the codec and the UDP edge: hostile bytes never escape.

The strategies here build every message of :mod:`pokan.wire` with valid and
extreme fields; tests/test_fuzz_merge.py feeds them to the merge.
"""

from __future__ import annotations

import random
from typing import Any, cast

import attrs
import msgpack
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial import unittest

from pokan import wire
from pokan.core.node import GossipNode
from pokan.core.state import ROLES, ClusterState, Entry, NodeDelta, NodeInfo
from pokan.errors import DecodeError, EncodeError
from pokan.net.badinput import BadInputReporter
from pokan.net.protocols import GossipProtocol

#: the bound the hardening keeps every counter below (issue 12, item 5)
MAX_COUNTER = 2**62

#: integers a peer may claim, the extremes first
EXTREMES = (0, 1, MAX_COUNTER, 2**63, wire.MAX_UINT64)

#: reproducible runs: the same examples on every machine, no example database
FUZZ = settings(deadline=None, derandomize=True, database=None, max_examples=200)


# -- strategies -----------------------------------------------------------------


def counters(high: int = wire.MAX_UINT64) -> st.SearchStrategy[int]:
    """Integers in 0..high, the extremes tried often."""
    return st.one_of(
        st.sampled_from([n for n in EXTREMES if n <= high]),
        st.integers(0, min(high, 1000)),
        st.integers(0, high),
    )


def texts(max_len: int, min_len: int = 1) -> st.SearchStrategy[str]:
    """Strings msgpack can encode (no surrogates), the maximal one included."""
    chars = st.characters(codec="utf-8")
    return st.one_of(
        st.text(chars, min_size=min_len, max_size=min(max_len, 40)),
        st.just("x" * max_len),
        st.just("\u00e9" * max_len),
    )


#: ids a peer may claim: real-looking, garbage, with newlines, maximal
node_ids = st.one_of(
    st.sampled_from(
        ["10.0.0.1:5555", "10.0.0.2:5555", "127.0>0.1:17102", "a\nb", "::1:1"]
    ),
    texts(wire.MAX_ID_LEN),
)
addresses = st.one_of(
    st.sampled_from(["10.0.0.1", "10.0.0.2", "::1", "not-an-ip", "1.2.3.4\n"]),
    texts(wire.MAX_ADDRESS_LEN),
)
ports = st.one_of(st.sampled_from([1, 5555, 65535]), st.integers(1, 65535))


@st.composite
def infos(draw: Any, ids: st.SearchStrategy[str] = node_ids) -> NodeInfo:
    return NodeInfo(
        id=draw(ids),
        generation=draw(counters()),
        address=draw(addresses),
        tcp_port=draw(ports),
        udp_port=draw(ports),
        role=draw(st.sampled_from(ROLES)),
    )


values = st.one_of(
    st.none(),
    st.text(st.characters(codec="utf-8"), max_size=20),
    st.binary(max_size=20),
)
timestamps = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def deltas(
    draw: Any,
    info: st.SearchStrategy[NodeInfo] | None = None,
    high: int = wire.MAX_UINT64,
) -> NodeDelta:
    """A delta decode accepts: entry versions in (since, version]."""
    version = draw(counters(high))
    since = draw(st.one_of(st.just(0), st.integers(0, version)))
    keys = draw(st.lists(texts(wire.MAX_KEY_LEN), max_size=4, unique=True))
    entry_versions = st.integers(since + 1, version)
    entries = tuple(
        (k, Entry(draw(values), draw(entry_versions), draw(timestamps)))
        for k in keys
        if since < version
    )
    left = draw(st.booleans())
    reset = since == 0 and draw(st.booleans())
    gc_point = draw(st.integers(0, version)) if reset else 0
    return NodeDelta(
        draw(infos() if info is None else info),
        draw(counters(high)),
        since,
        version,
        entries,
        left=left,
        gc_point=gc_point,
    )


@st.composite
def digest_entries(draw: Any) -> wire.DigestEntry:
    return wire.DigestEntry(
        draw(node_ids), draw(counters()), draw(counters()), draw(counters()),
        draw(st.booleans()),
    )  # fmt: skip


def delta_lists(d: st.SearchStrategy[NodeDelta]) -> st.SearchStrategy[Any]:
    return st.lists(d, max_size=3).map(tuple)


def messages(
    d: st.SearchStrategy[NodeDelta] | None = None,
    senders: st.SearchStrategy[str] = node_ids,
) -> st.SearchStrategy[wire.Message]:
    """Every message type, with the deltas drawn from ``d``."""
    ds = delta_lists(deltas() if d is None else d)
    digest = st.lists(digest_entries(), max_size=4).map(tuple)
    ranges = st.one_of(st.just((None, None)), st.tuples(node_ids, node_ids))
    syn = st.builds(
        lambda s, g, r, dd: wire.Syn(s, g, r[0], r[1], dd), senders, digest, ranges, ds
    )
    summary_syn = st.builds(
        lambda s, r, dd, h: wire.Syn(s, (), r[0], r[1], dd, h),
        senders,
        ranges,
        ds,
        counters(),
    )
    return st.one_of(
        syn,
        summary_syn,
        st.builds(wire.SynAck, senders, ds, digest),
        st.builds(wire.SynAck, senders, ds, st.just(()), st.booleans()),
        st.builds(wire.Ack, senders, ds),
        st.builds(wire.Goodbye, senders, counters()),
        st.builds(wire.Watch, senders, counters()),
        st.builds(wire.Hello, senders, ds),
        st.builds(wire.Welcome, senders, ds),
        liveness_messages(senders),
    )


@st.composite
def rumours(draw: Any) -> wire.Rumour:
    """A liveness rumour, of a valid kind or (rarely) not."""
    return wire.Rumour(
        draw(st.one_of(st.sampled_from([0, 1, 2]), counters())),
        draw(node_ids),
        draw(counters()),
        draw(counters()),
        draw(node_ids),
    )


def liveness_messages(
    senders: st.SearchStrategy[str] = node_ids,
) -> st.SearchStrategy[wire.Message]:
    """Ping, PingReq, PingAck, Nack and Notice, sizes and counters extreme."""
    rs = st.lists(rumours(), max_size=wire.MAX_RUMOURS + 2).map(tuple)
    seqs = counters()
    return st.one_of(
        st.builds(wire.Ping, senders, seqs, node_ids, rs),
        st.builds(wire.PingReq, senders, seqs, node_ids, rs),
        st.builds(wire.PingAck, senders, seqs, node_ids, rs),
        st.builds(wire.Nack, senders, seqs, node_ids),
        st.builds(wire.Notice, senders, rs),
    )


# -- mutations ------------------------------------------------------------------


def _int_paths(obj: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    if isinstance(obj, list):
        return [p for i, item in enumerate(obj) for p in _int_paths(item, (*path, i))]
    if isinstance(obj, int) and not isinstance(obj, bool):
        return [path]
    return []


def set_integer(data: bytes, which: int, value: int) -> bytes:
    """``data`` with one integer of its body (the ``which``-th) set to ``value``."""
    try:
        body = msgpack.unpackb(data[wire.HEADER_SIZE :], raw=False)
    except ValueError:  # not a plain body (sealed?): nothing to set
        return data
    paths = _int_paths(body)
    if not paths:
        return data
    *parents, last = paths[which % len(paths)]
    target = body
    for i in parents:
        target = target[i]
    target[last] = value
    return data[: wire.HEADER_SIZE] + msgpack.packb(body, use_bin_type=True)


@st.composite
def mutated(draw: Any, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding flipped, truncated, spliced or with an extreme integer."""
    data = draw(valid)
    kind = draw(st.sampled_from(["flip", "truncate", "splice", "extreme", "insert"]))
    if kind == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes((data[i] ^ draw(st.integers(1, 255)),)) + data[i + 1 :]
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "splice":
        other = draw(valid)
        return (
            data[: draw(st.integers(0, len(data)))]
            + other[draw(st.integers(0, len(other))) :]
        )
    if kind == "extreme":
        value = draw(st.sampled_from([*EXTREMES, -1, 2**64]))
        try:
            return set_integer(data, draw(st.integers(0, 1000)), value)
        except OverflowError:  # 2**64 does not pack: write its bytes instead
            i = draw(st.integers(0, len(data)))
            return data[:i] + b"\xcf" + b"\xff" * 8 + data[i:]
    i = draw(st.integers(0, len(data)))
    return data[:i] + draw(st.binary(min_size=1, max_size=9)) + data[i:]


def encodings(m: st.SearchStrategy[wire.Message]) -> st.SearchStrategy[bytes]:
    return m.map(wire.encode)


def envelope(kind: wire.MessageType) -> bytes:
    """The plaintext envelope before a body of type ``kind``."""
    return wire.header(kind, wire.DEFAULT_CLUSTER)


#: a datagram starting with a valid header of any type, then anything
headed_bytes = st.builds(
    lambda t, body: envelope(t) + body,
    st.sampled_from(list(wire.MessageType)),
    st.binary(max_size=200),
)


# -- the tests ------------------------------------------------------------------


def decodes_or_refuses(data: bytes) -> wire.Message | None:
    """The message, or None for a DecodeError; anything else propagates."""
    try:
        return wire.decode(data)
    except DecodeError:
        return None


class DecodeAnyBytes(unittest.TestCase):
    @FUZZ
    @given(st.binary(max_size=300))
    def test_random_bytes_raise_only_decode_error(self, data: bytes) -> None:
        decodes_or_refuses(data)

    @FUZZ
    @given(headed_bytes)
    def test_any_body_behind_a_valid_header_raises_only_decode_error(
        self, data: bytes
    ) -> None:
        decodes_or_refuses(data)

    @settings(FUZZ, max_examples=400)
    @given(mutated(encodings(messages())))
    @example(
        envelope(wire.MessageType.SYN) + msgpack.packb(["a", [["a", 0, 0, 2**64 - 1]]])
    )
    def test_mutated_encodings_raise_only_decode_error(self, data: bytes) -> None:
        decodes_or_refuses(data)


class RoundTrip(unittest.TestCase):
    @settings(FUZZ, max_examples=300)
    @given(messages())
    @example(wire.Goodbye("x" * wire.MAX_ID_LEN, wire.MAX_UINT64))
    @example(wire.Ack("a", (NodeDelta(NodeInfo("a", 0, "", 1, 1), 0, 0, 0, ()),)))
    def test_decode_of_encode_is_the_identity(self, message: wire.Message) -> None:
        try:
            data = wire.encode(message)
        except EncodeError:
            return
        try:
            decoded = wire.decode(data)
        except DecodeError as e:
            # a range check at decode may refuse an implausible field (a
            # counter above MAX_COUNTER): a refusal, never another message
            self.assertTrue(_implausible(message), f"{message!r} refused: {e}")
            return
        self.assertEqual(decoded, message)


def _implausible(message: wire.Message) -> bool:
    """Whether any integer of ``message`` is above MAX_COUNTER, or a field
    is one hardening may refuse at decode (an id or address not canonical)."""
    body = msgpack.unpackb(wire.encode(message)[wire.HEADER_SIZE :], raw=False)
    ints = [_at(body, p) for p in _int_paths(body)]
    return (
        any(n > MAX_COUNTER for n in ints)
        or _has_bad_identity(message)
        or _bad_liveness(message)
    )


def _bad_liveness(message: wire.Message) -> bool:
    """A probe field the codec refuses: a seq over 32 bits, too many rumours,
    a rumour of no kind."""
    if getattr(message, "seq", 0) > wire.MAX_SEQ:
        return True
    found = getattr(message, "rumours", ())
    return len(found) > wire.MAX_RUMOURS or any(
        r.kind >= len(wire.RUMOUR_KINDS) for r in found
    )


def _at(obj: Any, path: tuple[int, ...]) -> Any:
    for i in path:
        obj = obj[i]
    return obj


def _has_bad_identity(message: wire.Message) -> bool:
    for delta in getattr(message, "deltas", ()):
        info = delta.info
        if info.id != f"{info.address}:{info.udp_port}":
            return True
    return False


# -- the UDP edge ---------------------------------------------------------------


class FakeDatagramTransport:
    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))


sources = st.tuples(
    st.sampled_from(["10.0.0.2", "10.0.0.3", "127.0.0.1"]), st.integers(1, 65535)
)
datagrams = st.one_of(
    st.binary(max_size=1500),
    headed_bytes,
    encodings(messages()),
    mutated(encodings(messages())),
)

#: the node under test in DatagramEdge, and a record of its own forged
ME = NodeInfo("10.0.0.1:5555", 1, "10.0.0.1", 5555, 5555)
FORGED_SELF = wire.encode(
    wire.Ack(
        "10.0.0.2:5555",
        (NodeDelta(attrs.evolve(ME, generation=2**64 - 1), 0, 0, 0, ()),),
    )
)


class DatagramEdge(unittest.TestCase):
    """Any datagrams at a GossipProtocol over a real GossipNode: nothing
    escapes, and the log stays within the bad-input throttle."""

    def setUp(self) -> None:
        self.lines: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self.lines.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    @settings(FUZZ, max_examples=100)
    @given(st.lists(st.tuples(datagrams, sources, st.floats(0, 3)), max_size=30))
    @example([(FORGED_SELF, ("10.0.0.2", 5555), 0.0)])
    def test_no_exception_escapes_and_the_log_is_throttled(
        self, traffic: list[tuple[bytes, tuple[str, int], float]]
    ) -> None:
        clock = task.Clock()
        reporter = BadInputReporter(clock, interval=10.0)
        state = ClusterState(ME)
        node = GossipNode(state, random.Random(1))

        def receive(message: wire.Message, source: tuple[str, int], size: int) -> None:
            for out in node.receive(message, source, size).outgoing:
                protocol.send(out.address, out.message)

        protocol = GossipProtocol(receive, reporter, wire.DEFAULT_MAX_DATAGRAM)
        protocol.makeConnection(FakeDatagramTransport())  # type: ignore[arg-type]
        del self.lines[:]
        for data, source, pause in traffic:
            clock.advance(pause)
            protocol.datagramReceived(data, source)
        windows = 1 + int(clock.seconds() // reporter.interval)
        # each window: its lines, the summary of the one before, nothing else
        bound = windows * (reporter.max_lines + 1)
        self.assertLessEqual(len(self.lines), bound, _formatted(self.lines[:5]))
        # the node still speaks: its own state encodes
        wire.encode(wire.Hello(state.me.info.id, node.full_state()))
        for _ in range(3):
            for out in node.gossip_round():
                protocol.send(out.address, out.message)


def _formatted(events: list[dict[str, Any]]) -> str:
    return "\n".join(formatEvent(e) for e in events)
