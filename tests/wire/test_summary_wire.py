"""The summary fields of protocol 3: Syn.summary and SynAck.in_sync."""

from __future__ import annotations

from typing import Any

import msgpack
from twisted.trial import unittest

from pokan import wire
from pokan.errors import DecodeError


def body(kind: wire.MessageType, fields: list[Any]) -> bytes:
    return wire.header(kind, wire.DEFAULT_CLUSTER) + msgpack.packb(fields)


class SummaryWireTests(unittest.TestCase):
    def test_protocol_version_is_3(self) -> None:
        self.assertEqual(wire.PROTOCOL_VERSION, 3)
        data = wire.encode(wire.Syn("a", ()))
        self.assertEqual(data[2], 3)

    def test_version_2_is_refused_by_name(self) -> None:
        data = bytearray(wire.encode(wire.Syn("a", ())))
        data[2] = 2
        with self.assertRaises(DecodeError) as caught:
            wire.decode(bytes(data))
        self.assertEqual(caught.exception.reason, "wrong-version")

    def test_round_trips(self) -> None:
        for message in (
            wire.Syn("a", (), "b", "c", (), 0),
            wire.Syn("a", (), None, None, (), wire.MAX_UINT64),
            wire.SynAck("a", (), (), True),
            wire.SynAck("a", (), (), False),
        ):
            self.assertEqual(wire.decode(wire.encode(message)), message)

    def test_a_summary_exchange_is_small(self) -> None:
        node_id = "10.0.0.1:5555"
        syn = wire.Syn(node_id, (), node_id, "10.0.0.9:5555", (), 2**64 - 1)
        self.assertLessEqual(len(wire.encode(syn)), 64)
        self.assertLessEqual(len(wire.encode(wire.SynAck(node_id, (), (), True))), 30)

    def test_digest_syn_without_summary_has_five_fields(self) -> None:
        data = wire.encode(wire.Syn("a", (wire.DigestEntry("a", 1, 2, 3),)))
        self.assertEqual(len(msgpack.unpackb(data[wire.HEADER_SIZE :])), 5)

    def test_bad_summaries_are_refused(self) -> None:
        cases = {
            "negative": ["a", [], None, None, [], -1],
            "a float": ["a", [], None, None, [], 1.5],
            "not an int": ["a", [], None, None, [], "x"],
            "a bool": ["a", [], None, None, [], True],
            "with entries": ["a", [["a", 1, 1, 1]], None, None, [], 5],
            "seven fields": ["a", [], None, None, [], 5, 6],
        }
        for name, fields in cases.items():
            with self.subTest(name), self.assertRaises(DecodeError):
                wire.decode(body(wire.MessageType.SYN, fields))

    def test_bad_verdicts_are_refused(self) -> None:
        cases = {
            "an int": ["a", [], [], 1],
            "nil": ["a", [], [], None],
            "with entries": ["a", [], [["a", 1, 1, 1]], True],
            "five fields": ["a", [], [], True, True],
        }
        for name, fields in cases.items():
            with self.subTest(name), self.assertRaises(DecodeError):
                wire.decode(body(wire.MessageType.SYN_ACK, fields))
