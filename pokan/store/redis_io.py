"""The blocking Redis calls of the Redis store: run only in its worker thread.

Each function takes a redis-py client and the :class:`Keys` of one prefix.
Writes go in one MULTI/EXEC each, so Redis never holds half a batch.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import attrs
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pokan.state import Entry, NodeRecord
from pokan.store.interface import Snapshot
from pokan.store.pending import Plan
from pokan.store.redis_schema import (
    SCHEMA,
    Keys,
    SchemaError,
    decode_entry,
    decode_node,
    encode_entry,
    encode_node,
    encode_value,
)


def make_client(url: str, timeout: float) -> redis.Redis:
    """A client for ``url``; connects on first use, never here."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # one immediate retry covers a pooled connection the server dropped;
        # longer outages are the store's business, not the client's
        retry=Retry(NoBackoff(), 1),
        client_name="pokan",
    )


@attrs.frozen
class Loaded:
    """What :func:`load` found."""

    run_id: str
    snapshot: Snapshot | None
    skipped: int  # entries or nodes that were not pokan's layout


def run_id(client: redis.Redis) -> str:
    """The server's run id: it changes whenever the server restarts."""
    info: Any = client.info("server")
    return str(info["run_id"])


def load(client: redis.Redis, keys: Keys, node_id: str) -> Loaded:
    """Read what the prefix holds; mark it as this node's if it held nothing."""
    server = run_id(client)
    meta: Any = client.hgetall(keys.meta)
    ids = sorted(_text(m) for m in _members(client, keys.nodes))
    if meta:
        schema = meta.get(b"schema", b"").decode(errors="replace")
        if schema != SCHEMA:
            raise SchemaError(
                f"{keys.meta} says schema {schema!r}; this pokan reads {SCHEMA!r}"
            )
    else:
        client.hset(keys.meta, mapping={"schema": SCHEMA, "node": node_id})
    if not ids:
        return Loaded(server, None, 0)
    pipe = client.pipeline(transaction=True)
    for node in ids:
        for name in keys.of_node(node):
            pipe.hgetall(name)
    found = pipe.execute()
    records: list[NodeRecord] = []
    entries: dict[str, dict[str, Entry]] = {}
    skipped = 0
    for i in range(len(ids)):
        fields, values, metas = found[3 * i : 3 * i + 3]
        try:
            record = decode_node(fields)
        except SchemaError:
            skipped += 1
            continue
        records.append(record)
        kept = entries[record.info.id] = {}
        for raw_key, raw_meta in metas.items():
            try:
                key = raw_key.decode()
                kept[key] = decode_entry(raw_meta, values.get(raw_key))
            except (SchemaError, UnicodeDecodeError):
                skipped += 1
    return Loaded(server, Snapshot(tuple(records), entries), skipped)


def _members(client: redis.Redis, name: str) -> list[Any]:
    found: Any = client.smembers(name)
    return list(found)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def write(client: redis.Redis, keys: Keys, plan: Plan) -> None:
    """Write a plan in one MULTI/EXEC."""
    pipe = client.pipeline(transaction=True)
    queue(pipe, keys, plan)
    pipe.execute()


def queue(pipe: Any, keys: Keys, plan: Plan) -> None:
    """Queue the commands that write ``plan`` on a pipeline."""
    set_values: dict[str, dict[str, bytes]] = defaultdict(dict)
    set_entries: dict[str, dict[str, str]] = defaultdict(dict)
    del_values: dict[str, list[str]] = defaultdict(list)
    del_entries: dict[str, list[str]] = defaultdict(list)
    for (node, key), entry in plan.keys.items():
        if entry is None:  # dropped with an old incarnation
            del_values[node].append(key)
            del_entries[node].append(key)
            continue
        if entry.value is None:
            del_values[node].append(key)
        else:
            set_values[node][key] = encode_value(entry.value)
        set_entries[node][key] = encode_entry(entry)
    for node, mapping in set_values.items():
        pipe.hset(keys.values(node), mapping=mapping)
    for node, names in del_values.items():
        pipe.hdel(keys.values(node), *names)
    for node, meta in set_entries.items():
        pipe.hset(keys.entries(node), mapping=meta)
    for node, names in del_entries.items():
        pipe.hdel(keys.entries(node), *names)
    for record in plan.nodes.values():
        pipe.hset(keys.node(record.info.id), mapping=encode_node(record))
    touched = {*plan.nodes, *(node for node, _ in plan.keys)}
    if touched:
        pipe.sadd(keys.nodes, *touched)
    for message in plan.events:
        pipe.publish(keys.events, message)


def rewrite(client: redis.Redis, keys: Keys, node_id: str, snapshot: Snapshot) -> None:
    """Replace everything under the prefix with ``snapshot``, in one MULTI/EXEC."""
    old = [_text(m) for m in _members(client, keys.nodes)]
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.meta, keys.nodes, *(k for n in old for k in keys.of_node(n)))
    pipe.hset(keys.meta, mapping={"schema": SCHEMA, "node": node_id})
    plan = Plan()
    for record in snapshot.nodes:
        plan.nodes[record.info.id] = record
    for node, entries in snapshot.entries.items():
        for key, entry in entries.items():
            plan.keys[node, key] = entry
    queue(pipe, keys, plan)
    pipe.execute()
