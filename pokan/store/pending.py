"""What one Redis transaction writes, and the changes waiting for Redis.

Plain data, no I/O. A :class:`Plan` is the final state of every key and node
record some batches touched; :class:`Pending` keeps, while Redis is away, the
latest change per key (so memory stays bounded by the state's own size), each
tagged with the sequence number of the batch it came from so that a late,
older change never overwrites a newer one.
"""

from __future__ import annotations

import attrs

from pokan.core.state import Batch, Entry, NodeRecord
from pokan.store.interface import Snapshot
from pokan.store.redis_schema import encode_event

KeyId = tuple[str, str]  # (node id, key)
#: node id -> key -> its final entry, or None: drop the key (old incarnation)
Keys = dict[str, dict[str, Entry | None]]


@attrs.define
class Plan:
    """The final state of the keys and node records to write, in one go."""

    keys: Keys = attrs.field(factory=dict)
    nodes: dict[str, NodeRecord] = attrs.field(factory=dict)
    #: JSON messages to publish on the events channel in the same transaction
    events: list[str] = attrs.field(factory=list)
    #: nodes forgotten (GC): their record and keys are deleted
    forgotten: set[str] = attrs.field(factory=set)

    @classmethod
    def of(cls, batch: Batch, with_events: bool = False) -> Plan:
        plan = cls()
        keys = plan.keys
        gone = plan.forgotten
        gone.update(batch.forgotten)
        current = None
        ignored: dict[str, Entry | None] = {}  # changes of forgotten nodes
        # the hot path: one dict lookup per run of a node's changes
        for change in batch.changes:
            node = change.node_id
            if node != current:
                current = node
                target = ignored if node in gone else keys.setdefault(node, {})
            target[change.key] = change.new
        for record in batch.nodes:
            plan.nodes[record.info.id] = record
        if with_events:
            for change in batch.changes:
                event = change.event
                if event is not None:
                    plan.events.append(
                        encode_event(
                            event, change.node_id, change.key, change.new, change.value
                        )
                    )
        return plan

    def __len__(self) -> int:
        keys = sum(map(len, self.keys.values()))
        return keys + len(self.nodes) + len(self.forgotten)

    def updated(self, later: Plan) -> Plan:
        """This plan with a later one's changes on top."""
        gone = later.forgotten
        keys = {n: dict(k) for n, k in self.keys.items() if n not in gone}
        for node, entries in later.keys.items():
            keys.setdefault(node, {}).update(entries)
        nodes = {n: r for n, r in self.nodes.items() if n not in gone}
        back = {*later.nodes, *later.keys}  # a newer generation
        return Plan(
            keys,
            {**nodes, **later.nodes},
            [*self.events, *later.events],
            (self.forgotten - back) | gone,
        )


class Pending:
    """Changes not yet in Redis: the latest per key and per node record."""

    def __init__(self) -> None:
        self._keys: dict[KeyId, tuple[int, Entry | None]] = {}
        self._nodes: dict[str, tuple[int, NodeRecord]] = {}
        self._forgotten: dict[str, int] = {}
        #: changes from batches numbered up to here are superseded (a full
        #: rewrite of the state covered them): drop them
        self.floor = 0

    def __len__(self) -> int:
        return len(self._keys) + len(self._nodes) + len(self._forgotten)

    def add(self, seq: int, plan: Plan) -> None:
        """Keep the changes of batch number ``seq`` unless newer ones are here."""
        if seq <= self.floor:
            return
        for node_id in plan.forgotten:
            if self._forgotten.get(node_id, 0) < seq:
                self._forgotten[node_id] = seq
                self._drop_node(node_id, seq)
        keys = self._keys
        for node_id, entries in plan.keys.items():
            for key, entry in entries.items():
                held = keys.get((node_id, key))
                if held is None or held[0] <= seq:
                    keys[node_id, key] = (seq, entry)
        nodes = self._nodes
        for node_id, record in plan.nodes.items():
            held_node = nodes.get(node_id)
            if held_node is None or held_node[0] <= seq:
                nodes[node_id] = (seq, record)
            if self._forgotten.get(node_id, seq) < seq:
                del self._forgotten[node_id]  # back under a newer generation

    def _drop_node(self, node_id: str, seq: int) -> None:
        """Forget what is pending for a node forgotten at batch ``seq``."""
        self._keys = {
            k: v for k, v in self._keys.items() if k[0] != node_id or v[0] > seq
        }
        held = self._nodes.get(node_id)
        if held is not None and held[0] <= seq:
            del self._nodes[node_id]

    def add_all(self, other: Pending) -> None:
        """Put back changes taken earlier (a flush failed)."""
        for key_id, (seq, entry) in other._keys.items():
            held = self._keys.get(key_id)
            if seq > self.floor and (held is None or held[0] < seq):
                self._keys[key_id] = (seq, entry)
        for node_id, (seq, record) in other._nodes.items():
            held_node = self._nodes.get(node_id)
            if seq > self.floor and (held_node is None or held_node[0] < seq):
                self._nodes[node_id] = (seq, record)
        for node_id, seq in other._forgotten.items():
            if seq > self.floor and self._forgotten.get(node_id, 0) < seq:
                self._forgotten[node_id] = seq

    def take(self) -> Pending:
        """Move everything out into a new Pending (to flush it)."""
        taken = Pending()
        taken._keys, self._keys = self._keys, {}
        taken._nodes, self._nodes = self._nodes, {}
        taken._forgotten, self._forgotten = self._forgotten, {}
        return taken

    def drop_up_to(self, seq: int) -> None:
        """A full rewrite covers every batch up to ``seq``: forget them."""
        self.floor = max(self.floor, seq)
        self._keys = {k: v for k, v in self._keys.items() if v[0] > seq}
        self._nodes = {k: v for k, v in self._nodes.items() if v[0] > seq}
        self._forgotten = {k: s for k, s in self._forgotten.items() if s > seq}

    def plan(self) -> Plan:
        keys: Keys = {}
        for (node_id, key), (_, entry) in self._keys.items():
            keys.setdefault(node_id, {})[key] = entry
        return Plan(
            keys,
            {k: record for k, (_, record) in self._nodes.items()},
            [],
            set(self._forgotten),
        )


def overlay(snapshot: Snapshot, plan: Plan, me: str) -> tuple[Snapshot, Plan]:
    """Put this node's writes made before the store opened on top of what
    the store held; return the result and the writes, renumbered above the
    persisted versions, that the store must still write.
    """
    entries = {node: dict(keys) for node, keys in snapshot.entries.items()}
    records = {record.info.id: record for record in snapshot.nodes}
    mine = entries.setdefault(me, {})
    top = max((e.version for e in mine.values()), default=0)
    if me in records:
        top = max(top, records[me].version)
    own = sorted(
        (
            (key, entry)
            for key, entry in plan.keys.get(me, {}).items()
            if entry is not None
        ),
        key=lambda item: item[1].version,
    )
    written = Plan()
    for key, entry in own:
        top += 1
        mine[key] = attrs.evolve(entry, version=top)
        written.keys.setdefault(me, {})[key] = mine[key]
    for record in plan.nodes.values():
        records.setdefault(record.info.id, record)
    if me in records:
        record = records[me] = attrs.evolve(records[me], version=top)
        written.nodes[me] = record
    return Snapshot(tuple(records.values()), entries), written
