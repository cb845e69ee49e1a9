"""The Redis layout's encodings (no I/O)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from pokan.core.state import Entry, KeyChange, NodeInfo, NodeRecord
from pokan.store.redis_schema import (
    Keys,
    SchemaError,
    decode_field,
    decode_node,
    default_prefix,
    encode_field,
    encode_node,
    key_fields,
)


class SchemaTests(unittest.TestCase):
    def test_key_names(self) -> None:
        keys = Keys(default_prefix("10.0.0.1:5555"))
        self.assertEqual(keys.meta, "pokan:10.0.0.1:5555:meta")
        self.assertEqual(keys.nodes, "pokan:10.0.0.1:5555:nodes")
        self.assertEqual(keys.events, "pokan:10.0.0.1:5555:events")
        self.assertEqual(keys.node("n"), "pokan:10.0.0.1:5555:node:n")
        self.assertEqual(keys.keys("n"), "pokan:10.0.0.1:5555:keys:n")
        self.assertRaises(ValueError, Keys, "")

    def test_entries_round_trip(self) -> None:
        for e in (
            Entry("héllo", 3, 1732550400.123456),
            Entry(b"\x00\xff", 4, 0.1 + 0.2),
            Entry("", 5, 1.0),
            Entry(None, 6, 2.5),
        ):
            field = encode_field(e)
            raw = field.encode() if isinstance(field, str) else field
            self.assertEqual(decode_field(raw), e)
            # a plain JSON line, then the value's bytes: for any language
            header, _, value = raw.partition(b"\n")
            fields = json.loads(header)
            self.assertEqual(fields["version"], e.version)
            self.assertEqual(fields["timestamp"], e.timestamp)
            if e.value is None:
                self.assertEqual((fields["type"], value), ("deleted", b""))
            elif isinstance(e.value, str):
                self.assertEqual((fields["type"], value), ("str", e.value.encode()))
            else:
                self.assertEqual((fields["type"], value), ("bytes", e.value))

    @given(
        st.one_of(st.none(), st.text(), st.binary()),
        st.integers(min_value=0, max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
    )
    def test_any_entry_round_trips_exactly(
        self, value: str | bytes | None, version: int, timestamp: float
    ) -> None:
        e = Entry(value, version, timestamp)
        field = encode_field(e)
        raw = field.encode() if isinstance(field, str) else field
        decoded = decode_field(raw)
        self.assertEqual(decoded, e)
        self.assertEqual(type(decoded.value), type(value))
        # the timestamp is a plain JSON number giving back the same double
        header = json.loads(raw.partition(b"\n")[0])
        self.assertEqual(header["timestamp"], timestamp)

    def test_the_store_encodes_as_encode_field(self) -> None:
        """A batch encodes each change as its entry alone; a drop is refused."""
        changes = [
            KeyChange("n", str(i), None, e)
            for i, e in enumerate(
                [Entry("t", 1, 0.1), Entry(b"\x00", 2, 2.0), Entry(None, 3, 3.5)]
            )
        ]
        fields = key_fields(changes)
        assert fields is not None
        self.assertEqual(
            fields["n"], [x for c in changes for x in (c.key, encode_field(c.new))]
        )
        self.assertIsNone(key_fields([KeyChange("n", "k", None, None)]))

    def test_bad_entries(self) -> None:
        for raw in [
            b"not json\nv",
            b'{"version":1}\nv',
            b'{"version":"1","timestamp":1,"type":"str"}\nv',
            b'{"version":1,"timestamp":"x","type":"str"}\nv',
            b'{"version":1,"timestamp":1,"type":"str"}',  # no newline
            b'{"version":1,"timestamp":1,"type":"str"}\n\xff',
            b'{"version":1,"timestamp":1,"type":"what"}\nv',
            b'{"version":1,"timestamp":1,"type":"deleted"}\nv',
            b'["version",1]\nv',
        ]:
            self.assertRaises(SchemaError, decode_field, raw)

    def test_nodes_round_trip(self) -> None:
        record = NodeRecord(NodeInfo("a:1", 99, "a", 2, 1, "peer"), 7, "dead")
        fields = {k.encode(): v.encode() for k, v in encode_node(record).items()}
        self.assertEqual(decode_node(fields), record)
        del fields[b"role"]
        self.assertRaises(SchemaError, decode_node, fields)
        fields[b"role"] = b"king"
        self.assertRaises(SchemaError, decode_node, fields)
