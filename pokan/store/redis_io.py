"""The blocking Redis calls of the Redis store: run only in its worker thread.

Each function takes a redis-py client and the :class:`Keys` of one prefix.
Writes go in one MULTI/EXEC each, so Redis never holds half a batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs
import redis
from hiredis import pack_command
from redis.backoff import NoBackoff
from redis.retry import Retry

from pokan.state import Batch, Entry, KeyChange, NodeRecord
from pokan.store.interface import Snapshot
from pokan.store.pending import Plan
from pokan.store.redis_schema import (
    SCHEMA,
    Keys,
    SchemaError,
    decode_field,
    decode_node,
    encode_node,
    key_fields,
)


def make_client(url: str, timeout: float) -> redis.Redis:
    """A client for ``url``; connects on first use, never here."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # no retry of redis-py's own: a Redis that does not answer within
        # ``timeout`` is unavailable at once (see :func:`send`); outages are
        # the store's business, not the client's
        retry=Retry(NoBackoff(), 0),
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
                f"{keys.meta} says schema {schema!r}; this pokan reads {SCHEMA!r}."
                f" Delete the keys under {keys.prefix!r} (the node gets its state"
                " back from its peers) or choose another --redis-prefix"
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
        fields, raw_keys = found[2 * i : 2 * i + 2]
        try:
            record = decode_node(fields)
        except SchemaError:
            skipped += 1
            continue
        records.append(record)
        kept = entries[record.info.id] = {}
        for raw_key, raw_field in raw_keys.items():
            try:
                kept[raw_key.decode()] = decode_field(raw_field)
            except (SchemaError, UnicodeDecodeError):
                skipped += 1
    return Loaded(server, Snapshot(tuple(records), entries), skipped)


def _members(client: redis.Redis, name: str) -> list[Any]:
    found: Any = client.smembers(name)
    return list(found)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


@attrs.frozen
class Packed:
    """One transaction as bytes, ready to send: MULTI, the commands, EXEC."""

    data: bytes
    commands: int

    @classmethod
    def of(cls, queued: list[tuple[Any, ...]]) -> Packed:
        framed = [("MULTI",), *queued, ("EXEC",)]
        return cls(b"".join(map(pack_command, framed)), len(queued))


def pack(keys: Keys, plan: Plan) -> Packed:
    """The transaction that writes ``plan``."""
    return Packed.of(commands(keys, plan))


def pack_written(keys: Keys, written: Plan | Batch) -> Packed:
    """The transaction for a plan, or for a batch (a plan only if it must)."""
    if isinstance(written, Plan):
        return pack(keys, written)
    return pack_batch(keys, written) or pack(keys, Plan.of(written))


def write(client: redis.Redis, keys: Keys, written: Sequence[Plan | Batch]) -> None:
    """Write each plan or batch in its own MULTI/EXEC, in order, pipelined."""
    send(client, (pack_written(keys, w) for w in written))


#: bytes sent at once; the next chunk is encoded while Redis runs this one
CHUNK_BYTES = 256 << 10


def send(client: redis.Redis, transactions: Iterable[Packed]) -> None:
    """Run transactions in order, each atomic, pipelined on one connection.

    ``transactions`` may be a generator that encodes as it goes: chunks of
    them are sent while the next is encoded, so Python's encoding and Redis's
    work overlap. The commands are packed by hiredis (see :class:`Packed`)
    and written on one of redis-py's connections: several times faster than
    redis-py's pipeline, which packs every argument in Python.

    A Redis that does not answer fails this after ``timeout`` (the client's),
    once: a timeout is never retried. Only a connection Redis closed or
    reset under us (a pooled one it dropped: that fails at once) is tried
    again, once, on a new connection.
    """
    produced: list[Packed] = []
    source = _recorded(iter(transactions), produced)
    pool = client.connection_pool
    for attempt in (1, 2):
        conn = None
        try:
            conn = pool.get_connection()
            error = _pipeline(conn, source)
        except redis.ConnectionError:
            if conn is None:
                raise  # could not connect: no point in connecting again
            conn.disconnect()
            if attempt == 2:
                raise
            # from the start (a batch written twice is written the same)
            source = itertools.chain(list(produced), source)
            continue
        except BaseException:
            if conn is not None:
                conn.disconnect()  # the reply stream is in an unknown state
            raise
        finally:
            if conn is not None:
                pool.release(conn)
        if error is not None:
            raise error
        return


def _recorded(source: Iterator[Packed], produced: list[Packed]) -> Iterator[Packed]:
    for packed in source:
        produced.append(packed)
        yield packed


def _pipeline(conn: Any, transactions: Iterable[Packed]) -> Exception | None:
    """Send chunk after chunk; read a chunk's replies once the next is sent."""
    first: Exception | None = None
    in_flight: list[Packed] = []
    chunk: list[Packed] = []
    size = 0
    for packed in transactions:
        chunk.append(packed)
        size += len(packed.data)
        if size >= CHUNK_BYTES:
            conn.send_packed_command([b"".join(p.data for p in chunk)])
            error = _read_replies(conn, in_flight)
            first = first or error
            in_flight, chunk, size = chunk, [], 0
    if chunk:
        conn.send_packed_command([b"".join(p.data for p in chunk)])
    for sent in (in_flight, chunk):
        error = _read_replies(conn, sent)
        first = first or error
    return first


def _read_replies(conn: Any, transactions: list[Packed]) -> Exception | None:
    """Read every reply of every transaction; return the first error."""
    first: Exception | None = None
    for transaction in transactions:
        refused: list[Exception] = []
        for _ in range(transaction.commands + 1):  # +OK, then +QUEUED each
            try:
                conn.read_response()
            except redis.ResponseError as e:
                refused.append(e)
        try:
            replies: Any = conn.read_response()
        except redis.ResponseError as e:  # EXECABORT: nothing applied
            refused.append(e)
            replies = []
        refused += [r for r in replies if isinstance(r, redis.ResponseError)]
        if refused and first is None:
            first = refused[0]
    return first


def commands(keys: Keys, plan: Plan) -> list[tuple[Any, ...]]:
    """The commands that write ``plan``: a few per node, whatever its size."""
    out: list[tuple[Any, ...]] = []
    # forgotten nodes first: a plan never writes to a node it forgets after
    forgotten = sorted(plan.forgotten)
    for node in forgotten:
        out.append(("DEL", *keys.of_node(node)))
    if forgotten:
        out.append(("SREM", keys.nodes, *forgotten))
    sets: list[KeyChange] = []
    for node, entries in plan.keys.items():
        dropped = [key for key, entry in entries.items() if entry is None]
        if dropped:  # keys of an old incarnation
            out.append(("HDEL", keys.keys(node), *dropped))
        sets += (
            KeyChange(node, key, None, entry)
            for key, entry in entries.items()
            if entry is not None
        )
    fields_of = key_fields(sets)
    assert fields_of is not None  # no change in ``sets`` drops its key
    out += hset_keys(keys, fields_of)
    out += record_commands(keys, plan.nodes.values(), {*plan.nodes, *plan.keys})
    for message in plan.events:
        out.append(("PUBLISH", keys.events, message))
    return out


def pack_batch(keys: Keys, batch: Batch) -> Packed | None:
    """The transaction that writes a batch that only sets keys and records.

    The hot path of the store (no :class:`Plan` built): None when the batch
    forgets nodes or drops keys, which take :func:`pack`'s way.
    """
    if batch.forgotten:
        return None
    fields_of = key_fields(batch.changes)
    if fields_of is None:
        return None
    touched = {record.info.id for record in batch.nodes}
    touched.update(fields_of)
    return Packed.of(
        hset_keys(keys, fields_of) + record_commands(keys, batch.nodes, touched)
    )


def hset_keys(keys: Keys, fields_of: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    """One HSET per node of :func:`key_fields`'s result."""
    return [("HSET", keys.keys(node), *fields) for node, fields in fields_of.items()]


def record_commands(
    keys: Keys, records: Iterable[NodeRecord], touched: set[str]
) -> list[tuple[Any, ...]]:
    """Write node records; add every node ``touched`` to the set of nodes."""
    out: list[tuple[Any, ...]] = [
        ("HSET", keys.node(record.info.id), *_flat(encode_node(record)))
        for record in records
    ]
    if touched:
        out.append(("SADD", keys.nodes, *touched))
    return out


def _flat(fields: dict[str, str]) -> list[str]:
    return [x for item in fields.items() for x in item]


def rewrite(client: redis.Redis, keys: Keys, node_id: str, snapshot: Snapshot) -> None:
    """Replace everything under the prefix with ``snapshot``, in one MULTI/EXEC."""
    old = [_text(m) for m in _members(client, keys.nodes)]
    plan = Plan()
    for record in snapshot.nodes:
        plan.nodes[record.info.id] = record
    for node, entries in snapshot.entries.items():
        plan.keys[node] = dict(entries)
    stale = [k for n in old for k in keys.of_node(n)]
    queued = [
        ("DEL", keys.meta, keys.nodes, *stale),
        ("HSET", keys.meta, "schema", SCHEMA, "node", node_id),
        *commands(keys, plan),
    ]
    send(client, [Packed.of(queued)])
