"""The stream decode: wire.decode's messages, junk refused before it is built."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from pokan import wire
from pokan.core.state import Entry, NodeDelta, NodeInfo
from pokan.errors import DecodeError
from pokan.net.protocols import _decode_frame
from pokan.wire.streamdecode import BodyReader, decode_stream_body

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True)
HELLO, WELCOME = wire.MessageType.HELLO, wire.MessageType.WELCOME

uints = st.integers(0, 2**62)
ports = st.integers(1, 65535)


@st.composite
def infos(draw: Any) -> NodeInfo:
    address = ".".join(str(draw(st.integers(0, 255))) for _ in range(4))
    udp = draw(ports)
    role = draw(st.sampled_from(["seed", "peer"]))
    return NodeInfo(f"{address}:{udp}", draw(uints), address, draw(ports), udp, role)


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
    values = st.one_of(st.none(), st.text(max_size=50), st.binary(max_size=50))
    stamps = st.floats(allow_nan=False, allow_infinity=False)
    entries = tuple(
        (k, Entry(draw(values), v, draw(stamps)))
        for k, v in zip(keys, versions, strict=True)
    )
    left = draw(st.booleans())
    gc_point = draw(st.integers(0, version)) if since == 0 else 0
    return NodeDelta(
        draw(infos()), draw(uints), since, version, entries, left, gc_point
    )


senders = st.text(min_size=1, max_size=40)
delta_lists = st.lists(deltas(), max_size=4).map(tuple)
stream_messages = st.one_of(
    st.builds(wire.Hello, senders, delta_lists),
    st.builds(wire.Welcome, senders, delta_lists),
)


def kind_of(message: wire.Hello | wire.Welcome) -> wire.MessageType:
    return HELLO if isinstance(message, wire.Hello) else WELCOME


def agrees_with_wire(kind: wire.MessageType, body: bytes) -> None:
    """decode_stream_body raises DecodeError, or gives what wire.decode gives."""
    data = wire.header(kind, wire.DEFAULT_CLUSTER) + body
    try:
        expected: Any = wire.decode(data)
    except DecodeError:
        expected = DecodeError
    try:
        got: Any = decode_stream_body(kind, body)
    except DecodeError:
        got = DecodeError
    assert got == expected, (got, expected)


class EquivalenceTests(unittest.TestCase):
    @SETTINGS
    @given(stream_messages)
    def test_every_valid_message_decodes_as_wire_decodes_it(
        self, message: wire.Hello | wire.Welcome
    ) -> None:
        data = wire.encode(message)
        got = decode_stream_body(kind_of(message), data[wire.HEADER_SIZE :])
        self.assertEqual(got, message)
        self.assertEqual(got, wire.decode(data))

    @SETTINGS
    @given(st.sampled_from([HELLO, WELCOME]), st.binary(max_size=200))
    def test_any_bytes_raise_decode_error_only(
        self, kind: wire.MessageType, body: bytes
    ) -> None:
        agrees_with_wire(kind, body)

    @SETTINGS
    @given(stream_messages, st.data())
    def test_mutated_messages_agree_with_wire(
        self, message: wire.Hello | wire.Welcome, data: Any
    ) -> None:
        body = bytearray(wire.encode(message)[wire.HEADER_SIZE :])
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(body) - 1))
            body[at] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(body)))
        agrees_with_wire(kind_of(message), bytes(body[:cut]))
        agrees_with_wire(kind_of(message), bytes(body))


def array32(count: int) -> bytes:
    return b"\xdd" + struct.pack(">I", count)


class JunkTests(unittest.TestCase):
    def refused(self, body: bytes) -> tuple[DecodeError, BodyReader]:
        reader = BodyReader(body)
        with self.assertRaises(DecodeError) as caught:
            reader.message(HELLO)
        return caught.exception, reader

    def test_8_mib_of_empty_arrays_is_refused_after_a_handful_of_objects(self) -> None:
        n = 8 * 1024 * 1024
        error, reader = self.refused(b"\x92\xa1a" + array32(n) + b"\x90" * n)
        self.assertEqual(error.reason, "bad-body")
        self.assertIn(f"{n} deltas cannot fit in {n} bytes", error.detail)
        self.assertLessEqual(reader.objects, 3)
        self.assertEqual(reader.position, 8)

    def test_a_count_that_fits_is_refused_at_its_first_bad_item(self) -> None:
        n = 500_000  # 15 bytes each would fit; an empty array is no delta
        error, reader = self.refused(b"\x92\xa1a" + array32(n) + b"\x90" * (15 * n))
        self.assertEqual(error.reason, "bad-field")
        self.assertLessEqual(reader.objects, 4)

    def test_a_huge_claimed_count_of_entries(self) -> None:
        info = ["10.0.0.1:5555", 1, "10.0.0.1", 5555, 5555, 1]
        # a delta whose entries array claims 2**32-1 items, in 100 bytes
        delta = b"\x95" + msgpack.packb(info) + b"\x00\x00\x01" + array32(2**32 - 1)
        error, reader = self.refused(b"\x92\xa1a\x91" + delta + b"\x00" * 100)
        self.assertEqual(error.reason, "bad-body")
        self.assertIn("entries cannot fit", error.detail)
        self.assertEqual(reader.objects, 15)  # the fields before the count

    def test_a_deep_nest_in_a_value_is_refused_unbuilt(self) -> None:
        info = ["10.0.0.1:5555", 1, "10.0.0.1", 5555, 5555, 1]
        nest = b"\x91" * 100_000 + b"\x90"
        delta = b"\x95" + msgpack.packb(info) + b"\x00\x00\x01\x91\x94\xa1k" + nest
        error, reader = self.refused(b"\x92\xa1a\x91" + delta)
        self.assertEqual(error.reason, "bad-body")
        self.assertLess(reader.position, 1000)

    def test_trailing_bytes_are_refused(self) -> None:
        body = wire.encode(wire.Hello("a", ()))[wire.HEADER_SIZE :]
        error, _ = self.refused(body + b"\x00")
        self.assertEqual(error.reason, "bad-body")

    def test_not_a_stream_message(self) -> None:
        with self.assertRaises(DecodeError):
            decode_stream_body(wire.MessageType.SYN, b"\x92\xa1a\x90")


class DecodeFrameTests(unittest.TestCase):
    """protocols._decode_frame: the envelope's checks, then the stream decode."""

    def test_a_valid_frame(self) -> None:
        hello = wire.Hello("a", ())
        self.assertEqual(_decode_frame(wire.encode(hello), frozenset({HELLO})), hello)

    def test_header_checks_come_first(self) -> None:
        good = wire.encode(wire.Hello("a", ()))
        for data, reason in [
            (b"PK", "truncated"),
            (b"XX" + good[2:], "bad-magic"),
            (good[:2] + b"\x09" + good[3:], "wrong-version"),
            (good[:3] + b"\x70" + good[4:], "unknown-type"),
            (wire.encode(wire.Welcome("a", ())), "unexpected-type"),
            (good[:4] + b"\x01" + good[5:], "sealed"),
            (good[:4] + b"\x04" + good[5:], "bad-flags"),
        ]:
            with self.assertRaises(DecodeError) as caught:
                _decode_frame(data, frozenset({HELLO}))
            self.assertEqual(caught.exception.reason, reason)

    def test_an_8_mib_frame_of_empty_arrays(self) -> None:
        n = 8 * 1024 * 1024
        body = b"\x92\xa1a" + array32(n) + b"\x90" * n
        data = wire.encode(wire.Hello("a", ()))[: wire.HEADER_SIZE] + body
        with self.assertRaises(DecodeError) as caught:
            _decode_frame(data, frozenset({HELLO}))
        self.assertIn("deltas cannot fit", caught.exception.detail)
