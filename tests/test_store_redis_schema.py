"""The Redis layout's encodings (no I/O)."""

from __future__ import annotations

import json

from twisted.trial import unittest

from pokan.state import Entry, NodeInfo, NodeRecord
from pokan.store.redis_schema import (
    Keys,
    SchemaError,
    decode_entry,
    decode_node,
    default_prefix,
    encode_entry,
    encode_node,
    encode_value,
)


class SchemaTests(unittest.TestCase):
    def test_key_names(self) -> None:
        keys = Keys(default_prefix("10.0.0.1:5555"))
        self.assertEqual(keys.meta, "pokan:10.0.0.1:5555:meta")
        self.assertEqual(keys.nodes, "pokan:10.0.0.1:5555:nodes")
        self.assertEqual(keys.events, "pokan:10.0.0.1:5555:events")
        self.assertEqual(keys.node("n"), "pokan:10.0.0.1:5555:node:n")
        self.assertEqual(keys.values("n"), "pokan:10.0.0.1:5555:values:n")
        self.assertEqual(keys.entries("n"), "pokan:10.0.0.1:5555:entries:n")
        self.assertRaises(ValueError, Keys, "")

    def test_entries_round_trip(self) -> None:
        for e in (
            Entry("héllo", 3, 1732550400.123456),
            Entry(b"\x00\xff", 4, 0.1 + 0.2),
            Entry("", 5, 1.0),
            Entry(None, 6, 2.5),
        ):
            meta = encode_entry(e).encode()
            value = None if e.value is None else encode_value(e.value)
            self.assertEqual(decode_entry(meta, value), e)
            fields = json.loads(meta)  # plain JSON for any language
            self.assertEqual(fields["version"], e.version)
            self.assertEqual(fields["timestamp"], e.timestamp)

    def test_bad_entries(self) -> None:
        for meta, value in [
            (b"not json", b"v"),
            (b'{"version":1}', b"v"),
            (b'{"version":"1","timestamp":1,"type":"str"}', b"v"),
            (b'{"version":1,"timestamp":"x","type":"str"}', b"v"),
            (b'{"version":1,"timestamp":1,"type":"str"}', None),
            (b'{"version":1,"timestamp":1,"type":"str"}', b"\xff"),
            (b'{"version":1,"timestamp":1,"type":"what"}', b"v"),
        ]:
            self.assertRaises(SchemaError, decode_entry, meta, value)

    def test_nodes_round_trip(self) -> None:
        record = NodeRecord(NodeInfo("a:1", 99, "a", 2, 1, "peer"), 7, "dead")
        fields = {k.encode(): v.encode() for k, v in encode_node(record).items()}
        self.assertEqual(decode_node(fields), record)
        del fields[b"role"]
        self.assertRaises(SchemaError, decode_node, fields)
        fields[b"role"] = b"king"
        self.assertRaises(SchemaError, decode_node, fields)
