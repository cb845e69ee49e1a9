"""The codec: round trips of every message, and hostile input."""

from __future__ import annotations

import struct
import time
from typing import Any

import msgpack
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from pokan import wire
from pokan.core.state import Entry, NodeDelta, NodeInfo
from pokan.errors import DecodeError, EncodeError
from pokan.wire import Ack, DigestEntry, Goodbye, Hello, Syn, SynAck, Welcome

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)

uints = st.integers(0, wire.MAX_COUNTER)
ids = st.text(min_size=1, max_size=40)
infos = st.builds(
    NodeInfo,
    id=ids,
    generation=uints,
    address=st.text(min_size=1, max_size=wire.MAX_ADDRESS_LEN),
    tcp_port=st.integers(1, 65535),
    udp_port=st.integers(1, 65535),
    role=st.sampled_from(["seed", "peer"]),
)
values = st.one_of(st.none(), st.text(max_size=50), st.binary(max_size=50))
stamps = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def deltas(draw: Any) -> NodeDelta:
    since = draw(st.integers(0, 2**40))
    keys = draw(st.lists(st.text(min_size=1, max_size=20), max_size=5, unique=True))
    versions = draw(
        st.lists(
            st.integers(since + 1, since + 1000),
            min_size=len(keys),
            max_size=len(keys),
            unique=True,
        )
    )
    version = max(versions, default=since) + draw(st.integers(0, 5))
    entries = tuple(
        (k, Entry(draw(values), v, draw(stamps)))
        for k, v in zip(keys, versions, strict=True)
    )
    return NodeDelta(draw(infos), draw(uints), since, version, entries)


digest_entries = st.builds(DigestEntry, ids, uints, uints, uints)
delta_lists = st.lists(deltas(), max_size=4).map(tuple)
digests = st.lists(digest_entries, max_size=6).map(tuple)
messages = st.one_of(
    st.builds(Syn, ids, digests),
    st.builds(Syn, ids, digests, ids, ids),
    st.builds(SynAck, ids, delta_lists, digests),
    st.builds(Ack, ids, delta_lists),
    st.builds(Goodbye, ids, uints),
    st.builds(wire.Watch, ids, uints),
    st.builds(Hello, ids, delta_lists),
    st.builds(Welcome, ids, delta_lists),
)


def envelope(
    kind: int, body: Any, version: int = wire.PROTOCOL_VERSION, flags: int = 0
) -> bytes:
    return (
        b"PK"
        + bytes((version, kind, flags))
        + wire.cluster_tag(wire.DEFAULT_CLUSTER)
        + msgpack.packb(body, use_bin_type=True)
    )


INFO = ["10.0.0.1:5555", 1, "10.0.0.1", 5555, 5555, 1]


def delta_body(
    since: int = 0, version: int = 1, entries: Any = None, info: Any = None
) -> list[Any]:
    if entries is None:
        entries = [["k", "v", 1, 1.0]]
    return [info if info is not None else INFO, 0, since, version, entries]


def ack(*deltas: Any) -> bytes:
    return envelope(wire.MessageType.ACK, ["10.0.0.1:5555", list(deltas)])


class RoundTripTests(unittest.TestCase):
    @SETTINGS
    @given(messages)
    def test_round_trip(self, message: wire.Message) -> None:
        data = wire.encode(message)
        decoded = wire.decode(data)
        self.assertEqual(decoded, message)
        for _, entry in (e for d in getattr(decoded, "deltas", ()) for e in d.entries):
            self.assertIn(type(entry.value), (str, bytes, type(None)))

    def test_value_types_survive(self) -> None:
        info = NodeInfo("a:1", 1, "a", 1, 1)
        entries = (
            ("s", Entry("text", 1, 1.0)),
            ("b", Entry(b"text", 2, 1.0)),
            ("empty-b", Entry(b"", 3, 1.0)),
            ("empty-s", Entry("", 4, 1.0)),
            ("tomb", Entry(None, 5, 1.0)),
        )
        message = Ack("a:1", (NodeDelta(info, 0, 0, 5, entries),))
        (delta,) = wire.decode(wire.encode(message)).deltas  # type: ignore[union-attr]
        got = {k: e.value for k, e in delta.entries}
        self.assertEqual(got, {k: e.value for k, e in entries})
        self.assertIs(type(got["b"]), bytes)
        self.assertIs(type(got["empty-s"]), str)
        self.assertTrue(delta.entries[-1][1].deleted)

    def test_encode_limit(self) -> None:
        message = Goodbye("x" * 100, 1)
        self.assertRaises(EncodeError, wire.encode, message, 50)
        self.assertEqual(len(wire.encode(message, 200)), len(wire.encode(message)))

    def test_allowed_types(self) -> None:
        data = wire.encode(Hello("a", ()))
        e = self.assertRaises(DecodeError, wire.decode, data, wire.DATAGRAM_TYPES)
        self.assertEqual(e.reason, "unexpected-type")
        self.assertIsInstance(wire.decode(data, wire.STREAM_TYPES), Hello)

    def test_integer_timestamp_accepted(self) -> None:
        (delta,) = wire.decode(ack(delta_body(entries=[["k", "v", 1, 7]]))).deltas  # type: ignore[union-attr]
        self.assertEqual(delta.entries[0][1].timestamp, 7.0)
        self.assertIs(type(delta.entries[0][1].timestamp), float)

    def test_packed_size_and_array_header(self) -> None:
        self.assertEqual(wire.packed_size([1, 2]), 3)
        for count in (0, 15, 16, 2**16 - 1, 2**16):
            self.assertEqual(
                wire.array_header_size(count),
                len(msgpack.packb([None] * count)) - count,
                count,
            )


class HostileInputTests(unittest.TestCase):
    def reason(self, data: bytes) -> str:
        e = self.assertRaises(DecodeError, wire.decode, data)
        return e.reason

    def test_envelope(self) -> None:
        good = wire.encode(Goodbye("a", 1))
        cases = {
            b"": "truncated",
            good[:4]: "truncated",
            b"XX" + good[2:]: "bad-magic",
            good[:2] + b"\x01" + good[3:]: "wrong-version",
            good[:2] + b"\x00" + good[3:]: "wrong-version",
            good[:3] + b"\x63" + good[4:]: "unknown-type",
            good[:3] + b"\x00" + good[4:]: "unknown-type",
            good[:4] + b"\x01" + good[5:]: "sealed",
            good[:4] + b"\x02" + good[5:]: "bad-flags",
            good[:4] + b"\x80" + good[5:]: "bad-flags",
            good[:5] + b"\x00" * 4 + good[9:]: "wrong-cluster",
            wire.encode(Goodbye("a", 1), cluster="other"): "wrong-cluster",
            good[:8]: "truncated",
            good[:9]: "bad-body",
            good[:-1]: "bad-body",
            good + b"\x00": "bad-body",  # trailing bytes
            good[:9] + b"\xc1": "bad-body",  # never-used msgpack byte
            envelope(wire.MessageType.GOODBYE, {"a": 1}): "bad-body",  # no maps
        }
        for data, reason in cases.items():
            self.assertEqual(self.reason(data), reason, data)

    def test_wrong_shapes(self) -> None:
        kind = wire.MessageType
        bad = [
            envelope(kind.GOODBYE, "text"),
            envelope(kind.GOODBYE, ["a"]),
            envelope(kind.GOODBYE, ["a", 1, 2]),
            envelope(kind.GOODBYE, ["", 1]),
            envelope(kind.GOODBYE, [b"a", 1]),
            envelope(kind.GOODBYE, ["a", True]),
            envelope(kind.GOODBYE, ["a", -1]),
            envelope(kind.GOODBYE, ["a", 1.0]),
            envelope(kind.GOODBYE, ["a", None]),
            envelope(kind.GOODBYE, ["x" * (wire.MAX_ID_LEN + 1), 1]),
            envelope(kind.SYN, ["a", [], "low", None]),
            envelope(kind.SYN, ["a", [], None, "high"]),
            envelope(kind.SYN, ["a", [["b", 1, 2]], None, None]),
            envelope(kind.SYN, ["a", [["b", 1, 2, False]], None, None]),
            envelope(kind.SYN, ["a", ["b"], None, None]),
            envelope(kind.SYN, ["a", [], None]),
            envelope(kind.SYN, ["a", [], 1, 2]),
            envelope(kind.SYN_ACK, ["a", [], [], []]),
            envelope(kind.SYN_ACK, ["a", None, []]),
            envelope(kind.HELLO, ["a", [delta_body()], 1]),
            ack(delta_body()[:4]),
            ack(delta_body(info=INFO[:5])),
            ack(delta_body(info=[*INFO[:3], 0, 5555, 1])),  # port 0
            ack(delta_body(info=[*INFO[:3], 65536, 5555, 1])),
            ack(delta_body(info=[*INFO[:5], 2])),  # no such role
            ack(delta_body(info=[*INFO[:5], True])),
            ack(delta_body(info=[*INFO[:2], "", 1, 1, 1])),
            ack(delta_body(info=[*INFO[:2], "x" * 65, 1, 1, 1])),
            ack(delta_body(info=[INFO[0], -1, *INFO[2:]])),
            ack(delta_body(entries=[["k", "v", 1]])),
            ack(delta_body(entries=[["k", 5, 1, 1.0]])),
            ack(delta_body(entries=[["k", ["v"], 1, 1.0]])),
            ack(delta_body(entries=[["", "v", 1, 1.0]])),
            ack(delta_body(entries=[["k" * (wire.MAX_KEY_LEN + 1), "v", 1, 1.0]])),
            ack(delta_body(entries=[["k", "v", 0, 1.0]])),
            ack(delta_body(entries=[["k", "v", True, 1.0]])),
            ack(delta_body(entries=[["k", "v", 1, True]])),
            ack(delta_body(entries=[["k", "v", 1, "1.0"]])),
            ack(delta_body(entries=[["k", "v", 1, None]])),
            ack(delta_body(entries=[["k", "v", 1, float("nan")]])),
            ack(delta_body(entries=[["k", "v", 1, float("inf")]])),
            ack(delta_body(entries=[["k", "v", 1, float("-inf")]])),
            ack(delta_body(entries="nope")),
            ack(delta_body(since=-1)),
            ack(delta_body(since=True)),
            # entry versions must lie in (since, version]
            ack(delta_body(since=1, version=3, entries=[["k", "v", 1, 1.0]])),
            ack(delta_body(since=1, version=3, entries=[["k", "v", 4, 1.0]])),
            ack(delta_body(since=5, version=3, entries=[["k", "v", 4, 1.0]])),
        ]
        for data in bad:
            self.assertEqual(self.reason(data), "bad-field", data)

    def test_oversized_integers(self) -> None:
        # msgpack itself refuses integers beyond 64 bits: a body error; the
        # codec refuses counters above MAX_COUNTER (2**62)
        header = wire.header(wire.MessageType.GOODBYE, wire.DEFAULT_CLUSTER)
        body = b"\x92\xa1a\xcf" + b"\xff" * 8  # ["a", 2**64 - 1]
        self.assertEqual(self.reason(header + body), "bad-field")
        at_cap = envelope(wire.MessageType.GOODBYE, ["a", wire.MAX_COUNTER])
        self.assertIsInstance(wire.decode(at_cap), Goodbye)
        above = envelope(wire.MessageType.GOODBYE, ["a", wire.MAX_COUNTER + 1])
        self.assertEqual(self.reason(above), "bad-field")
        for huge in (2**64, -(2**63) - 1):
            try:
                data = envelope(wire.MessageType.GOODBYE, ["a", huge])
            except OverflowError:
                continue
            self.assertIn(self.reason(data), ("bad-body", "bad-field"))
        self.assertEqual(
            self.reason(envelope(wire.MessageType.GOODBYE, ["a", -(2**63)])),
            "bad-field",
        )

    def test_hostile_watch_fields_are_refused_at_decode(self) -> None:
        """A Watch's generation out of range, or an over-long sender id."""
        watch = wire.MessageType.WATCH
        for generation in (wire.MAX_COUNTER + 1, -1, -(2**63)):
            data = envelope(watch, ["10.0.0.1:5555", generation])
            self.assertEqual(self.reason(data), "bad-field", generation)
        long_id = "1" * (wire.MAX_ID_LEN + 1)
        self.assertEqual(self.reason(envelope(watch, [long_id, 1])), "bad-field")
        self.assertEqual(self.reason(envelope(watch, ["a", 1, 2])), "bad-field")
        self.assertIsInstance(
            wire.decode(envelope(watch, ["10.0.0.1:5555", wire.MAX_COUNTER])),
            wire.Watch,
        )

    def test_huge_declared_lengths_fail_fast(self) -> None:
        header = wire.header(wire.MessageType(3), wire.DEFAULT_CLUSTER)
        n = 2**31
        crafted = [
            b"\xdd" + struct.pack(">I", n),  # array32 of 2**31 items
            b"\x92\xa1a\xdd" + struct.pack(">I", n),  # ["a", array32(2**31)]
            b"\xdb" + struct.pack(">I", n) + b"x",  # str32 of 2**31 bytes
            b"\xc6" + struct.pack(">I", n) + b"x",  # bin32 of 2**31 bytes
            b"\xdf" + struct.pack(">I", n),  # map32
            b"\xc9" + struct.pack(">I", n) + b"\x01",  # ext32
            b"\x92\xa1a\x91\x95" + b"\x96" + b"\xdd" + struct.pack(">I", n),
            b"\x92\xa1a\x91\x95\x96\xa1a\x01\xa1a\x01\x01\x01\x00\x00\x00"
            + b"\xdd"
            + struct.pack(">I", n),
        ]
        started = time.monotonic()
        for body in crafted:
            self.assertEqual(self.reason(header + body), "bad-body", body)
        self.assertLess(time.monotonic() - started, 2.0)

    def test_bad_body_details_are_never_empty(self) -> None:
        # msgpack's FormatError and StackError carry no message of their own
        header = wire.header(wire.MessageType(3), wire.DEFAULT_CLUSTER)
        cases = {
            header + b"\xc1": "FormatError: not msgpack: a reserved type byte",
            header + b"\x91" * 100_000 + b"\xc0": "StackError: msgpack nested",
            header + b"\x92\x01": "ValueError: Unpack failed: incomplete input",
        }
        for data, detail in cases.items():
            e = self.assertRaises(DecodeError, wire.decode, data)
            self.assertEqual(e.reason, "bad-body")
            self.assertTrue(e.detail.startswith(detail), e.detail)

    def test_deep_nesting(self) -> None:
        for depth in (1000, 100_000):
            data = (
                wire.header(wire.MessageType(3), wire.DEFAULT_CLUSTER)
                + b"\x91" * depth
                + b"\xc0"
            )
            self.assertIn(self.reason(data), ("bad-body", "bad-field"))

    def test_large_counts_within_the_data(self) -> None:
        # many tiny items: the array limit is the datagram length, not less
        body = ["a", [[f"n{i}", 1, 1, 1] for i in range(500)], None, None]
        message = wire.decode(envelope(wire.MessageType.SYN, body))
        self.assertEqual(len(message.digest), 500)  # type: ignore[union-attr]

    def test_string_limits(self) -> None:
        value = "x" * wire.MAX_VALUE_LEN
        message = wire.decode(ack(delta_body(entries=[["k", value, 1, 1.0]])))
        self.assertEqual(message.deltas[0].entries[0][1].value, value)  # type: ignore[union-attr]
        too_big = "x" * (wire.MAX_VALUE_LEN + 1)
        self.assertEqual(
            self.reason(ack(delta_body(entries=[["k", too_big, 1, 1.0]]))), "bad-body"
        )


def mutations(data: bytes, draw: Any) -> bytes:
    ops = draw(
        st.lists(
            st.tuples(st.integers(0, 2), st.integers(), st.binary(max_size=4)),
            max_size=4,
        )
    )
    buf = bytearray(data)
    for op, where, chunk in ops:
        at = where % (len(buf) + 1)
        if op == 0:
            buf[at:at] = chunk
        elif op == 1:
            del buf[at : at + len(chunk) + 1]
        else:
            buf[at : at + len(chunk)] = chunk
    return bytes(buf)


@st.composite
def mutated(draw: Any) -> bytes:
    return mutations(wire.encode(draw(messages)), draw)


class FuzzTests(unittest.TestCase):
    def check(self, data: bytes) -> None:
        try:
            message = wire.decode(data)
        except DecodeError as e:
            self.assertTrue(e.reason)
            return
        # whatever decodes encodes again to something that decodes the same
        self.assertEqual(wire.decode(wire.encode(message)), message)

    @SETTINGS
    @given(st.binary(max_size=300))
    @example(wire.header(wire.MessageType(1), wire.DEFAULT_CLUSTER))
    @example(wire.header(wire.MessageType(2), wire.DEFAULT_CLUSTER) + b"\x93")
    def test_arbitrary_bytes(self, data: bytes) -> None:
        self.check(data)

    @SETTINGS
    @given(st.binary(max_size=300))
    def test_arbitrary_body(self, body: bytes) -> None:
        for kind in wire.MessageType:
            self.check(wire.header(kind, wire.DEFAULT_CLUSTER) + body)

    @SETTINGS
    @given(mutated())
    def test_mutated_messages(self, data: bytes) -> None:
        self.check(data)

    @SETTINGS
    @given(
        st.sampled_from(list(wire.MessageType)),
        st.recursive(
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(-(2**63), 2**64 - 1),
                st.floats(),
                st.text(max_size=5),
                st.binary(max_size=5),
            ),
            lambda inner: st.lists(inner, max_size=6),
            max_leaves=30,
        ),
    )
    def test_well_formed_msgpack_of_any_shape(self, kind: int, body: Any) -> None:
        self.check(envelope(kind, body))
