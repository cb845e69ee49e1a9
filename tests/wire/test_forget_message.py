"""The FORGET message (type 13): a round trip, and its bounded fields."""

from __future__ import annotations

import msgpack
from twisted.trial import unittest

from pokan import wire
from pokan.errors import DecodeError


class ForgetMessageTests(unittest.TestCase):
    def test_round_trip(self) -> None:
        message = wire.Forget("127.0.0.1:5555", "127.0.0.1:5557", 1796196605806832)
        data = wire.encode(message)
        self.assertEqual(data[3], 13)
        self.assertEqual(wire.decode(data, wire.DATAGRAM_TYPES), message)

    def forged(self, body: list[object]) -> bytes:
        head = wire.header(wire.MessageType.FORGET, wire.DEFAULT_CLUSTER)
        return head + msgpack.packb(body, use_bin_type=True)

    def test_bounded_fields(self) -> None:
        for body in (
            ["a:1", "b" * (wire.MAX_ID_LEN + 1), 1],  # an id too long
            ["a:1", "b:2", 2**63],  # a generation out of range
            ["a:1", "b:2", -1],
            ["a:1", "b:2"],  # a field missing
            ["a:1", 7, 1],  # not a string
        ):
            with self.assertRaises(DecodeError, msg=repr(body)):
                wire.decode(self.forged(body), wire.DATAGRAM_TYPES)

    def test_not_a_stream_message(self) -> None:
        data = wire.encode(wire.Forget("a:1", "b:2", 1))
        with self.assertRaises(DecodeError):
            wire.decode(data, wire.STREAM_TYPES)
