"""Read a node's state from Redis with plain commands, as docs/redis.md says.

Deliberately independent of pokan's store code: only redis-py and json, so
the tests check the documented layout, not pokan against itself.
"""

from __future__ import annotations

import json
from typing import Any

import redis

# (value or None for a tombstone, version, timestamp)
KeyState = tuple[Any, int, float]


def read_cluster(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """``{"nodes": {id: {field: value}}, "keys": {id: {key: KeyState}}}``."""
    nodes: dict[str, Any] = {}
    keys: dict[str, dict[str, KeyState]] = {}
    members: Any = client.smembers(f"{prefix}:nodes")
    for raw_id in members:
        node_id = raw_id.decode()
        fields: Any = client.hgetall(f"{prefix}:node:{node_id}")
        node = {k.decode(): v.decode() for k, v in fields.items()}
        for name in ("tcp_port", "udp_port", "generation", "version"):
            node[name] = int(node[name])
        nodes[node_id] = node
        fields = client.hgetall(f"{prefix}:keys:{node_id}")
        keys[node_id] = {k.decode(): parse_field(v) for k, v in fields.items()}
    return {"nodes": nodes, "keys": keys}


def parse_field(raw: bytes) -> KeyState:
    """A field of ``P:keys:<id>``: a JSON header line, then the raw value."""
    header, newline, raw_value = raw.partition(b"\n")
    assert newline, f"no newline after the header: {raw!r}"
    meta = json.loads(header)
    value: Any
    if meta["type"] == "deleted":
        assert raw_value == b"", "a tombstone has no value"
        value = None
    elif meta["type"] == "str":
        value = raw_value.decode("utf-8")
    else:
        assert meta["type"] == "bytes", meta
        value = raw_value
    return (value, meta["version"], meta["timestamp"])


def raw_value(client: redis.Redis, prefix: str, node_id: str, key: str) -> Any:
    """The value's bytes of one key as Redis holds it, or None if absent."""
    raw: Any = client.hget(f"{prefix}:keys:{node_id}", key)
    if raw is None:
        return None
    return raw.partition(b"\n")[2]


def memory_cluster(server: Any) -> dict[str, Any]:
    """The same shape, from a running Server's in-memory state."""
    nodes: dict[str, Any] = {}
    keys: dict[str, dict[str, KeyState]] = {}
    for node_id, node in server._state.nodes.items():
        info = node.info
        nodes[node_id] = {
            "id": info.id,
            "address": info.address,
            "tcp_port": info.tcp_port,
            "udp_port": info.udp_port,
            "role": info.role,
            "status": node.status,
            "generation": info.generation,
            "version": node.version,
        }
        keys[node_id] = {
            k: (e.value, e.version, e.timestamp) for k, e in node.entries.items()
        }
    return {"nodes": nodes, "keys": keys}


def api_cluster(server: Any) -> dict[str, Any]:
    """What the node's public API says: every node and its live keys."""
    view: dict[str, Any] = {}
    for peer in [server.me, *server.peers()]:
        view[peer.id] = {
            "address": peer.address,
            "tcp_port": peer.tcp_port,
            "udp_port": peer.udp_port,
            "role": peer.role,
            "status": peer.status,
            "generation": peer.generation,
            "items": {k: (v, peer.timestamp(k)) for k, v in peer.items().items()},
        }
    return view


def redis_as_api(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Redis's content in :func:`api_cluster`'s shape (tombstones left out)."""
    state = read_cluster(client, prefix)
    view: dict[str, Any] = {}
    for node_id, node in state["nodes"].items():
        view[node_id] = {
            "address": node["address"],
            "tcp_port": node["tcp_port"],
            "udp_port": node["udp_port"],
            "role": node["role"],
            "status": node["status"],
            "generation": node["generation"],
            "items": {
                k: (v, ts)
                for k, (v, _, ts) in state["keys"].get(node_id, {}).items()
                if v is not None
            },
        }
    return view
