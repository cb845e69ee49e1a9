"""How the Redis store lays the cluster state out in Redis (see docs/redis.md).

Pure functions over plain data: key names, and the encoding of entries and
node records. A program in any language reads the same layout with plain
Redis commands; the layout is versioned by ``SCHEMA`` in the meta hash.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Any

from orjson import dumps

from pokan.core.state import ROLES, STATUSES, Entry, KeyChange, NodeInfo, NodeRecord
from pokan.errors import PokanError

#: the layout's version, stored in ``<prefix>:meta`` as ``schema``
SCHEMA = "2"

#: the kind of an entry: a text value, a binary value, or a tombstone
STR, BYTES, DELETED = "str", "bytes", "deleted"


class SchemaError(PokanError, ValueError):
    """What Redis holds under a prefix is not pokan's layout."""


def default_prefix(node_id: str) -> str:
    """The prefix a node uses unless told otherwise: ``pokan:<node id>``."""
    return f"pokan:{node_id}"


class Keys:
    """The names of the Redis keys under one prefix."""

    def __init__(self, prefix: str) -> None:
        if not prefix:
            raise ValueError("the Redis key prefix must not be empty")
        self.prefix = prefix
        self.meta = f"{prefix}:meta"
        self.nodes = f"{prefix}:nodes"
        self.events = f"{prefix}:events"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}"

    def keys(self, node_id: str) -> str:
        return f"{self.prefix}:keys:{node_id}"

    def of_node(self, node_id: str) -> tuple[str, str]:
        return self.node(node_id), self.keys(node_id)


def key_fields(changes: Iterable[KeyChange]) -> dict[str, list[Any]] | None:
    """Per node, the keys ``changes`` set and their fields in
    ``<prefix>:keys:<node>``, flat and in order (the last change of a key
    wins); None if a change drops its key.

    A field is a JSON header line, then the raw value (UTF-8 for text;
    nothing for a tombstone). The store's hot path: one loop, no call per key.
    """
    fields_of: dict[str, list[Any]] = {}
    current = None
    for change in changes:
        entry = change.new
        if entry is None:
            return None
        if change.node_id != current:
            current = change.node_id
            fields = fields_of.setdefault(current, [])
        value = entry.value
        # orjson writes a finite float in its shortest round-tripping form
        # (valid JSON) several times faster than repr()
        stamp = dumps(entry.timestamp).decode()
        if value is None:
            field: str | bytes = (
                f'{{"version":{entry.version},"timestamp":{stamp},"type":"deleted"}}\n'
            )
        elif isinstance(value, str):
            field = (
                f'{{"version":{entry.version},"timestamp":{stamp},'
                f'"type":"str"}}\n{value}'
            )
        else:
            field = (
                f'{{"version":{entry.version},"timestamp":{stamp},"type":"bytes"}}\n'
            ).encode() + value
        fields += (change.key, field)
    return fields_of


def encode_field(entry: Entry) -> str | bytes:
    """One entry's field in ``<prefix>:keys:<node>`` (see :func:`key_fields`)."""
    fields = key_fields([KeyChange("", "", None, entry)])
    assert fields is not None  # a change that sets its key
    return fields[""][1]


def decode_field(raw: bytes) -> Entry:
    """An entry from its field in ``<prefix>:keys:<node>``."""
    header, newline, value = raw.partition(b"\n")
    try:
        if not newline:
            raise ValueError("no newline after the header")
        fields = json.loads(header)
        version = fields["version"]
        timestamp = fields["timestamp"]
        kind = fields["type"]
    except (ValueError, TypeError, KeyError) as e:
        raise SchemaError(f"key field is not pokan's: {raw[:80]!r}") from e
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise SchemaError(f"entry version is not a count: {version!r}")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise SchemaError(f"entry timestamp is not a number: {timestamp!r}")
    if kind == DELETED:
        if value:
            raise SchemaError("a tombstone has a value")
        return Entry(None, version, float(timestamp))
    if kind == STR:
        try:
            return Entry(value.decode(), version, float(timestamp))
        except UnicodeDecodeError as e:
            raise SchemaError("a str value is not UTF-8") from e
    if kind == BYTES:
        return Entry(value, version, float(timestamp))
    raise SchemaError(f"unknown entry type {kind!r}")


def encode_node(record: NodeRecord) -> dict[str, str]:
    """The fields of a node's hash ``<prefix>:node:<id>``."""
    info = record.info
    return {
        "id": info.id,
        "address": info.address,
        "tcp_port": str(info.tcp_port),
        "udp_port": str(info.udp_port),
        "role": info.role,
        "status": record.status,
        "generation": str(info.generation),
        "version": str(record.version),
    }


def decode_node(fields: Mapping[bytes, bytes]) -> NodeRecord:
    try:
        text = {k.decode(): v.decode() for k, v in fields.items()}
        role: Any = text["role"]
        status: Any = text["status"]
        if role not in ROLES or status not in STATUSES:
            raise ValueError(f"role {role!r} or status {status!r}")
        info = NodeInfo(
            id=text["id"],
            generation=int(text["generation"]),
            address=text["address"],
            tcp_port=int(text["tcp_port"]),
            udp_port=int(text["udp_port"]),
            role=role,
        )
        return NodeRecord(info, int(text["version"]), status)
    except (KeyError, ValueError) as e:
        raise SchemaError(f"node hash is not pokan's: {e}") from e


def encode_event(
    event: str, node_id: str, key: str, entry: Entry | None, value: str | bytes | None
) -> str:
    """The JSON message published on ``<prefix>:events`` for one key event."""
    message: dict[str, Any] = {"event": event, "node": node_id, "key": key}
    if isinstance(value, bytes):
        message["type"] = BYTES
        message["value"] = base64.b64encode(value).decode()
    else:
        message["type"] = STR
        message["value"] = value
    if entry is not None:
        message["version"] = entry.version
        message["timestamp"] = entry.timestamp
    return json.dumps(message, separators=(",", ":"))
