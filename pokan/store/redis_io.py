"""The blocking Redis calls of the Redis store: run only in its worker thread.

Each function takes a redis-py client and the :class:`Keys` of one prefix.
Writes go in one MULTI/EXEC each, so Redis never holds half a batch.
"""

from __future__ import annotations

import itertools
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs
import redis
from hiredis import pack_command
from redis.backoff import NoBackoff
from redis.retry import Retry

from pokan.core.state import Batch, Entry, KeyChange, NodeRecord
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
    """A client for ``url``; connects on first use, never here.

    ValueError for a bad URL, a database that is not a number included
    (redis-py would quietly take database 0 for ``redis://host/abc``).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("redis", "rediss") and not re.fullmatch(r"/?\d*", parts.path):
        raise ValueError(
            f"the database must be a number, such as redis://host:6379/0,"
            f" got {parts.path.lstrip('/')!r}"
        )
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
    #: what was not pokan's layout and was removed: keys, or fields of keys
    removed: tuple[str, ...] = ()
    #: nodes dropped whole for it (learned again from the cluster)
    dropped: tuple[str, ...] = ()


def run_id(client: redis.Redis) -> str:
    """The server's run id: it changes whenever the server restarts."""
    info: Any = client.info("server")
    return str(info["run_id"])


@attrs.frozen
class Health:
    """What a health check or a probe found."""

    run_id: str
    #: the prefix's meta key is there (else a FLUSHALL, a FLUSHDB or a
    #: deleted prefix lost what this node wrote)
    kept: bool


def health(client: redis.Redis, keys: Keys) -> Health:
    """The server's run id, and whether the prefix still holds its meta."""
    return Health(run_id(client), bool(client.exists(keys.meta)))


def load(client: redis.Redis, keys: Keys, node_id: str) -> Loaded:
    """Read what the prefix holds; mark it as this node's if it held nothing.

    Refuse (SchemaError) a prefix that holds another layout, another node's
    state, or keys of the wrong type where pokan keeps its meta and node set.
    Under the node's own keys, what is not pokan's layout is removed: a field
    of this node's keys, or the whole of another node (its peers send it
    again).
    """
    server = run_id(client)
    if not check_prefix(client, keys, node_id):
        client.hset(keys.meta, mapping={"schema": SCHEMA, "node": node_id})
    layout = _Layout(keys)
    ids = layout.node_ids(_members(client, keys.nodes))
    if not ids and not layout.removed:
        return Loaded(server, None)
    pipe = client.pipeline(transaction=True)
    for node in ids:
        for name in keys.of_node(node):
            pipe.hgetall(name)
    found = pipe.execute(raise_on_error=False)
    for i, node in enumerate(ids):
        layout.read_node(node, node_id, *found[2 * i : 2 * i + 2])
    if layout.removed:
        layout.remove(client)
    snapshot = Snapshot(tuple(layout.records), layout.entries) if ids else None
    return Loaded(server, snapshot, tuple(layout.removed), tuple(layout.dropped))


def check_prefix(client: redis.Redis, keys: Keys, node_id: str) -> bool:
    """Refuse (SchemaError) what :func:`load` refuses, changing nothing.

    False if the prefix holds nothing of pokan's yet.
    """
    _check_type(client, keys, keys.meta, "hash")
    _check_type(client, keys, keys.nodes, "set")
    meta: Any = client.hgetall(keys.meta)
    if meta:
        _check_meta(meta, keys, node_id)
    return bool(meta)


def _check_type(client: redis.Redis, keys: Keys, name: str, kind: str) -> None:
    """Refuse the prefix if ``name`` exists and is not a ``kind``."""
    found = _text(client.type(name))
    if found not in (kind, "none"):
        raise SchemaError(
            f"{name} is a Redis {found}, not the {kind} pokan keeps there: the"
            f" prefix {keys.prefix!r} holds something else. Choose another"
            f" --redis-prefix, or delete {name} if nothing needs it"
        )


def _check_meta(meta: dict[bytes, bytes], keys: Keys, node_id: str) -> None:
    """Refuse another layout, or another node's state."""
    schema = meta.get(b"schema", b"").decode(errors="replace")
    if schema != SCHEMA:
        raise SchemaError(
            f"{keys.meta} says schema {schema!r}; this pokan reads {SCHEMA!r}."
            f" Delete the keys under {keys.prefix!r} (the node gets its state"
            " back from its peers) or choose another --redis-prefix"
        )
    owner = meta.get(b"node", b"").decode(errors="replace")
    if owner != node_id:
        raise SchemaError(
            f"Redis prefix {keys.prefix!r} holds the state of node {owner!r}, not"
            f" of this node {node_id!r} ({keys.meta} says so): give each node its"
            " own --redis-prefix; if this is that node moved to another address"
            f" or port, delete the keys under {keys.prefix!r} first (see"
            " docs/redis.md)"
        )


class _Layout:
    """The nodes :func:`load` reads, and what it removes as not pokan's."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.records: list[NodeRecord] = []
        self.entries: dict[str, dict[str, Entry]] = {}
        self.removed: list[str] = []
        self.dropped: list[str] = []
        self._members: list[bytes] = []  # to remove from the node set
        self._deleted: list[str] = []  # keys to delete
        self._fields: dict[str, list[bytes]] = {}  # fields to delete, per key

    def node_ids(self, members: list[Any]) -> list[str]:
        """The node ids in the node set, sorted; members not text are removed."""
        ids = []
        for member in members:
            try:
                ids.append(_text(member))
            except UnicodeDecodeError:
                self.removed.append(f"{self.keys.nodes} member {member!r}")
                self._members.append(member)
        return sorted(ids)

    def read_node(self, node: str, me: str, fields: Any, raw_keys: Any) -> None:
        """Keep one node's record and keys, or remove what is not pokan's."""
        record_key, keys_key = self.keys.of_node(node)
        if isinstance(fields, redis.ResponseError) or not fields:
            found = "missing" if not fields else "not a hash"
            self._drop(node, f"{record_key} ({found})")
            return
        try:
            record = decode_node(fields)
        except SchemaError:
            self._drop(node, record_key)
            return
        if isinstance(raw_keys, redis.ResponseError):
            self._drop(node, f"{keys_key} (not a hash)")
            return
        kept: dict[str, Entry] = {}
        bad: list[bytes] = []
        for raw_key, raw_field in raw_keys.items():
            try:
                kept[raw_key.decode()] = decode_field(raw_field)
            except (SchemaError, UnicodeDecodeError):
                bad.append(raw_key)
        self.removed += (f"{keys_key} field {_shown(k)}" for k in bad)
        if bad and node != me:
            # its peers would not send again what it seems to have: drop it
            # whole, and take all of it afresh from the cluster
            self._drop(node, None)
            return
        if bad:
            self._fields[keys_key] = bad
        self.records.append(record)
        self.entries[record.info.id] = kept

    def _drop(self, node: str, what: str | None) -> None:
        if what is not None:
            self.removed.append(what)
        self.dropped.append(node)
        self._members.append(node.encode())
        self._deleted += self.keys.of_node(node)

    def remove(self, client: redis.Redis) -> None:
        """Remove what is not pokan's layout, in one MULTI/EXEC."""
        pipe = client.pipeline(transaction=True)
        if self._deleted:
            pipe.delete(*self._deleted)
        if self._members:
            pipe.srem(self.keys.nodes, *self._members)
        for name, fields in self._fields.items():
            pipe.hdel(name, *fields)
        pipe.execute()


def _shown(raw: bytes) -> str:
    """A field's name for a message: its text if it is text."""
    try:
        return repr(raw.decode())
    except UnicodeDecodeError:
        return repr(raw)


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
