"""The cluster state: nodes, their versioned entries, and the merge rule.

Plain Python over plain data (no I/O, no clock, no randomness): the same code
runs in a real node, in unit tests and in the simulator.

Every node owns an *entity*, its key/value pairs. Each write the owner makes
gets the next value of the owner's version counter, so the pair
``(node, version)`` names one write for ever. A node's *watermark* (``version``
of a :class:`NodeState`) says "I hold every write of this node up to here";
Scuttlebutt digests carry watermarks and deltas carry the writes above them.

A node identity also carries a *generation*, set when the node starts: a node
restarted without persistence starts its versions again from 1 under a newer
generation, and every other node then drops the old incarnation's entries and
takes the new one.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Literal

import attrs

from pokan.core import plausible

if TYPE_CHECKING:
    from pokan.store.interface import Snapshot

Value = str | bytes
Role = Literal["seed", "peer"]
Status = Literal["alive", "dead", "left"]

#: the highest generation, version or heartbeat a node takes from the network
#: or reaches itself: far below 2**64, so nothing done on receipt can overflow
MAX_COUNTER = 2**62

ROLES: tuple[Role, ...] = ("seed", "peer")
STATUSES: tuple[Status, ...] = ("alive", "dead", "left")


@attrs.frozen
class NodeInfo:
    """Who a node is: fixed for one incarnation (one generation)."""

    id: str
    generation: int
    address: str
    tcp_port: int
    udp_port: int
    role: Role = "peer"


@attrs.frozen
class Entry:
    """One write of one key: ``value`` is None for a deletion (a tombstone)."""

    value: Value | None
    version: int
    timestamp: float

    @property
    def deleted(self) -> bool:
        return self.value is None


@attrs.frozen
class KeyChange:
    """One key of one node went from ``old`` to ``new``.

    ``new`` is None when the key was dropped altogether (the node restarted
    under a new generation and the key belonged to the old incarnation).
    """

    node_id: str
    key: str
    old: Entry | None
    new: Entry | None

    @property
    def event(self) -> str | None:
        """The key event this change fires, if any."""
        was = self.old is not None and not self.old.deleted
        now = self.new is not None and not self.new.deleted
        if was and not now:
            return "key_removed"
        if now and not was:
            return "new_key"
        if now and was:
            assert self.old is not None and self.new is not None
            if type(self.old.value) is not type(self.new.value):
                return "key_changed"
            if self.old.value != self.new.value:
                return "key_changed"
        return None

    @property
    def value(self) -> Value | None:
        """The value handlers receive: the new one, or the removed one."""
        if self.new is not None and not self.new.deleted:
            return self.new.value
        return self.old.value if self.old is not None else None


@attrs.frozen
class NodeRecord:
    """What a store persists about a node besides its entries."""

    info: NodeInfo
    version: int
    status: Status


@attrs.frozen
class Batch:
    """Everything one operation changed: persisted at once, then announced."""

    changes: tuple[KeyChange, ...] = ()
    nodes: tuple[NodeRecord, ...] = ()
    #: ids of nodes forgotten (dead or left too long): drop them and their keys
    forgotten: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changes or self.nodes or self.forgotten)

    def __add__(self, other: Batch) -> Batch:
        nodes = {r.info.id: r for r in (*self.nodes, *other.nodes)}
        forgotten = self.forgotten + other.forgotten
        for node_id in forgotten:
            nodes.pop(node_id, None)
        return Batch(self.changes + other.changes, tuple(nodes.values()), forgotten)


@attrs.frozen
class NodeDelta:
    """Writes of one node above ``since``, up to the watermark ``version``.

    The sender promises that ``entries`` holds every write of the node with a
    version in ``(since, version]`` (older writes of a key that was written
    again are superseded and never sent).

    ``left``: the node said goodbye. ``gc_point`` > 0 makes the delta a
    *reset* (only with ``since == 0``): the sender removed the node's
    tombstones up to that version, and ``entries`` is the node's complete
    state up to ``version``; a receiver behind ``gc_point`` drops the keys it
    holds that are not listed (see :mod:`pokan.core.gc`).
    """

    info: NodeInfo
    heartbeat: int
    since: int
    version: int
    entries: tuple[tuple[str, Entry], ...]
    left: bool = False
    gc_point: int = 0


@attrs.define
class Claims:
    """What the network claims of this node's own record that it never did.

    Gathered at merge, undone by :meth:`ClusterState.reassert`.
    """

    version: int = 0
    heartbeat: int = 0
    #: keys claimed at writes this node never made (bounded)
    keys: set[str] = attrs.field(factory=set)
    #: claimed to have left: only a new generation undoes it
    left: bool = False

    def __bool__(self) -> bool:
        return bool(self.version or self.heartbeat or self.keys or self.left)


#: forged keys remembered per re-assert at most (a re-assert per round)
MAX_CLAIMED_KEYS = 1024

#: what a merge refused, kept until drained, at most
MAX_REJECTED = 256


@attrs.define
class NodeState:
    """What this node knows of one node (itself included)."""

    info: NodeInfo
    entries: dict[str, Entry] = attrs.field(factory=dict)
    version: int = 0
    heartbeat: int = 0
    status: Status = "alive"
    #: the highest version of this node's tombstones removed here by GC
    gc_point: int = 0

    def own_entries(self) -> dict[str, Entry]:
        """``entries``, ready to change.

        Every change of ``entries`` goes through here, so that a subclass
        can share them copy-on-write (the simulator's converged start,
        :mod:`pokan.sim.shared`); a real node's are its own.
        """
        return self.entries

    def record(self) -> NodeRecord:
        return NodeRecord(self.info, self.version, self.status)

    def live_items(self) -> Iterator[tuple[str, Entry]]:
        """The entries that are not tombstones."""
        return ((k, e) for k, e in self.entries.items() if not e.deleted)

    def entries_since(self, since: int) -> list[tuple[str, Entry]]:
        """Entries written after version ``since``, oldest first."""
        found = [(k, e) for k, e in self.entries.items() if e.version > since]
        found.sort(key=lambda item: item[1].version)
        return found


class ClusterState:
    """Every node's state as this node knows it, its own included."""

    def __init__(self, me: NodeInfo) -> None:
        self.me = NodeState(me)
        self.nodes: dict[str, NodeState] = {me.id: self.me}
        self._sorted_ids: list[str] | None = None
        #: ids of other nodes whose heartbeat went up since last drained
        #: (a set: bounded by the node count even if nobody drains it)
        self.heartbeat_news: set[str] = set()
        #: forgotten nodes: id -> the last generation, never taken back
        self.forgotten: dict[str, int] = {}
        #: other nodes added, forgotten or whose status changed since the peer
        #: view (:mod:`pokan.core.peerview`) last looked: id -> the status before
        #: (None: the node was not known); bounded by the node count
        self.view_news: dict[str, Status | None] = {}
        #: the newest generation merges take (:func:`plausible.max_generation`
        #: of the driver's wall clock, set by it; None: unchecked)
        self.max_generation: int | None = None
        #: the driver's clock (seconds) when it last fed us a message, for the
        #: timestamps of re-asserted tombstones (None: 0)
        self.now: float | None = None
        #: nodes tracked at most; new ones beyond are refused, none evicted
        self.max_nodes = plausible.DEFAULT_MAX_NODES
        #: what merges refused since last drained: (reason, detail)
        self.rejected: list[tuple[str, str]] = []
        self._rejected_more: dict[str, int] = {}
        #: forged claims about our own record, for :meth:`reassert`
        self.claims = Claims()
        #: nodes added by merges so far (to bound new nodes per source)
        self.added = 0
        #: times this node re-asserted its own state over a forgery
        self.reasserts = 0
        #: new nodes the merge under way may still add (None: no limit)
        self._room: int | None = None
        #: our store had no record of us: take back, once, the keys the
        #: cluster still holds of our previous incarnation (see :meth:`_adopt`)
        self.adopt_previous = False
        #: keys taken back so, for the driver to report (None: none yet)
        self.adopted: int | None = None

    # -- identity -------------------------------------------------------------

    def rename_self(self, info: NodeInfo) -> None:
        """Take a new identity (id, ports or generation) before gossiping."""
        del self.nodes[self.me.info.id]
        self.me.info = info
        self.nodes[info.id] = self.me
        self._sorted_ids = None

    def sorted_ids(self) -> list[str]:
        """Node ids in a fixed order, for rotating digest slices."""
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self.nodes)
        return self._sorted_ids

    def others(self) -> Iterator[NodeState]:
        return (n for n in self.nodes.values() if n is not self.me)

    def note_status(self, node_id: str, before: Status | None) -> None:
        """Tell the peer view that ``node_id``'s status or presence changed."""
        self.view_news.setdefault(node_id, before)

    def set_status(self, node: NodeState, status: Status) -> NodeState:
        """Give our record ``node`` a new status; the record, now writable."""
        node = self.writable(node)
        self.note_status(node.info.id, node.status)
        node.status = status
        return node

    def writable(self, node: NodeState) -> NodeState:
        """Our record ``node``, ready to change: ``node`` itself.

        Every change of a record goes through here, so that a subclass can
        share records between states copy-on-write (the simulator's
        converged start: :class:`pokan.sim.shared.SharingClusterState`).
        """
        return node

    # -- local writes ---------------------------------------------------------

    def write(self, key: str, value: Value | None, timestamp: float) -> Batch:
        """Store (or, with ``value=None``, delete) one of this node's keys.

        A write whose timestamp is older than the key's current one changes
        nothing, as in the original pokan; otherwise it gets the next version.
        """
        me = self.me
        old = me.entries.get(key)
        if old is not None and timestamp < old.timestamp:
            return Batch()
        if value is None and (old is None or old.deleted):
            return Batch()
        me.version += 1
        new = Entry(value, me.version, timestamp)
        me.entries[key] = new
        return Batch((KeyChange(me.info.id, key, old, new),), (me.record(),))

    # -- merging what others send ---------------------------------------------

    def reject(self, reason: str, detail: str) -> None:
        """Note something refused, for the driver to count and log."""
        if len(self.rejected) < MAX_REJECTED:
            self.rejected.append((reason, detail))
        else:  # counted still, without details
            self._rejected_more[reason] = self._rejected_more.get(reason, 0) + 1

    @property
    def has_rejected(self) -> bool:
        return bool(self.rejected or self._rejected_more)

    def drain_rejected(self) -> tuple[tuple[str, str], ...]:
        """What was refused since last drained: one (reason, detail) each."""
        rejected, self.rejected = self.rejected, []
        for reason, count in self._rejected_more.items():
            rejected.extend([(reason, "")] * count)
        self._rejected_more = {}
        return tuple(rejected)

    def merge(self, deltas: Iterable[NodeDelta], new_limit: int | None = None) -> Batch:
        """Apply deltas from the network; return what changed.

        Implausible deltas are dropped and noted in :attr:`rejected`; at most
        ``new_limit`` nodes new to us are added (None: up to ``max_nodes``).
        """
        changes: list[KeyChange] = []
        nodes: dict[str, NodeRecord] = {}
        newest = self.max_generation
        self._room = new_limit
        for delta in deltas:
            reason = plausible.check_counters(delta, newest)
            if reason is not None:
                self.reject(reason, plausible.describe(delta.info))
                continue
            one = self._merge_one(delta)
            changes.extend(one.changes)
            for record in one.nodes:
                nodes[record.info.id] = record
        # one Batch at the end: adding batches one delta at a time copies
        # every record so far each time (quadratic in a full sync)
        return Batch(tuple(changes), tuple(nodes.values()))

    def _merge_one(self, delta: NodeDelta) -> Batch:
        info = delta.info
        if info.id == self.me.info.id:
            return self._outlive(delta)
        node = self.nodes.get(info.id)
        changes: list[KeyChange] = []
        dropped: dict[str, Entry] = {}
        node_changed = False
        if node is None:
            if info.generation <= self.forgotten.get(info.id, -1):
                return Batch()  # forgotten: only a newer generation comes back
            if not self._admit(info):
                return Batch()
            node = self.nodes[info.id] = NodeState(info)
            self._add_sorted_id(info.id)
            self.note_status(info.id, None)
            node_changed = True
        elif info.generation < node.info.generation:
            return Batch()  # the old incarnation of a restarted node
        elif info.generation > node.info.generation:
            if (reason := plausible.check_info(info)) is not None:
                self.reject(reason, plausible.describe(info))
                return Batch()
            node = self.writable(node)
            self.note_status(info.id, node.status)
            dropped = self._reset(node, info)
            node_changed = True
        for key, entry in delta.entries:
            old = node.entries.get(key)
            if old is None or entry.version > old.version:
                node = self.writable(node)
                node.own_entries()[key] = entry
                changes.append(
                    KeyChange(info.id, key, old or dropped.pop(key, None), entry)
                )
        # keys of the old incarnation that the new one does not (yet) have
        changes.extend(KeyChange(info.id, k, e, None) for k, e in dropped.items())
        if delta.gc_point and node.version < delta.gc_point:
            node = self.writable(node)
            changes.extend(_apply_reset(node, delta))
            node_changed = True
        if delta.since <= node.version < delta.version:
            node = self.writable(node)
            node.version = delta.version
            node_changed = True
        if delta.heartbeat > node.heartbeat:
            node = self.writable(node)
            node.heartbeat = delta.heartbeat
            self.heartbeat_news.add(info.id)
        if delta.left and node.status != "left":
            node = self.set_status(node, "left")
            node_changed = True
        if not (changes or node_changed):
            return Batch()
        return Batch(tuple(changes), (node.record(),))

    def _admit(self, info: NodeInfo) -> bool:
        """Whether a node new to us may be tracked (noting why not)."""
        reason = plausible.check_info(info)
        if reason is None:
            reason = plausible.check_family(info, self.me.info.address)
            if reason is not None:
                self.reject(reason, info.id)  # one warning per peer: its id
                return False
        if reason is None and len(self.nodes) >= self.max_nodes:
            reason = "too-many-nodes"
        if reason is None and self._room is not None:
            if self._room <= 0:
                reason = "too-many-new-nodes"
            else:
                self._room -= 1
        if reason is not None:
            self.reject(reason, plausible.describe(info))
            return False
        self.added += 1
        return True

    def _add_sorted_id(self, node_id: str) -> None:
        """Keep the sorted ids up to date for a new node, without a full sort.

        The list may be shared with other states, so it is copied, never
        changed in place.
        """
        if self._sorted_ids is not None:
            ids = self._sorted_ids.copy()
            insort(ids, node_id)
            self._sorted_ids = ids

    def _outlive(self, delta: NodeDelta) -> Batch:
        """Nobody knows us better than we do: deltas about us change nothing
        here, but claims of writes we never made are noted for
        :meth:`reassert`; an incarnation of our id at a newer (plausible)
        generation (our clock stepped back across a restart) makes us move
        above it, or the others would keep ignoring us as the older one."""
        generation = delta.info.generation
        me = self.me
        if generation < me.info.generation:
            return self._adopt(delta) if self.adopt_previous else Batch()
        if generation == me.info.generation:
            self.claim(delta.version, delta.heartbeat, delta.left)
            self._claim_entries(delta.entries)
            return Batch()
        if generation >= MAX_COUNTER:
            self.reject("counter-out-of-range", plausible.describe(delta.info))
            return Batch()
        me.info = attrs.evolve(me.info, generation=generation + 1)
        return Batch((), (me.record(),))

    def _adopt(self, delta: NodeDelta) -> Batch:
        """Take as ours the live keys of our previous incarnation in ``delta``.

        Only once, and only keys we do not hold (what we wrote since we
        started, or hold a tombstone of, stays ours); each is written anew
        under our generation, so the cluster keeps it.
        """
        self.adopt_previous = False
        me = self.me
        entries = me.own_entries()
        changes: list[KeyChange] = []
        for key, old in delta.entries:
            if old.deleted or key in entries:
                continue
            me.version += 1
            new = entries[key] = Entry(old.value, me.version, old.timestamp)
            changes.append(KeyChange(me.info.id, key, None, new))
        self.adopted = len(changes)
        if not changes:
            return Batch()
        return Batch(tuple(changes), (me.record(),))

    def claim(self, version: int, heartbeat: int, left: bool = False) -> None:
        """Note what a peer holds of our record at our generation, if forged."""
        me, claims = self.me, self.claims
        if version > me.version and version > claims.version:
            claims.version = min(version, MAX_COUNTER)
        if heartbeat > me.heartbeat and heartbeat > claims.heartbeat:
            claims.heartbeat = min(heartbeat, MAX_COUNTER)
        if left and me.status != "left":
            claims.left = True

    def _claim_entries(self, entries: Iterable[tuple[str, Entry]]) -> None:
        """Note the writes of ours in ``entries`` that we never made."""
        me, claims = self.me, self.claims
        for key, entry in entries:
            mine = me.entries.get(key)
            if mine is None:
                forged = entry.version > me.gc_point
            elif entry.version != mine.version:
                forged = entry.version > mine.version
            else:
                forged = (
                    type(entry.value) is not type(mine.value)
                    or entry.value != mine.value
                    or entry.timestamp != mine.timestamp
                )
            if forged:
                claims.version = max(claims.version, min(entry.version, MAX_COUNTER))
                if len(claims.keys) < MAX_CLAIMED_KEYS:
                    claims.keys.add(key)

    def reassert(self) -> Batch:
        """Undo what the network claims of us that we never did.

        Our version (and heartbeat) jump above the claimed ones and every
        entry of ours is written again above them (a tombstone for each
        forged key we do not hold), so our true state wins everywhere. A
        claim above ``MAX_COUNTER // 2`` (or that we left) is answered with a
        new generation instead: no counter of ours can be walked to the cap.
        """
        claims = self.claims
        if not claims:
            return Batch()
        self.claims = Claims()
        self.reasserts += 1
        me = self.me
        half = MAX_COUNTER // 2
        fresh = claims.left or claims.version > half or claims.heartbeat > half
        if fresh:
            me.info = attrs.evolve(me.info, generation=me.info.generation + 1)
            version, me.heartbeat = 0, 0
        else:
            version = max(me.version, claims.version) + 1
            me.heartbeat = max(me.heartbeat, claims.heartbeat) + 1
        entries = me.own_entries()
        changes: list[KeyChange] = []
        stamp = 0.0 if self.now is None else self.now
        for key, old in me.entries_since(0):
            if fresh and old.deleted:
                del entries[key]  # a new generation starts without tombstones
                changes.append(KeyChange(me.info.id, key, old, None))
                continue
            version += 1
            new = entries[key] = Entry(old.value, version, old.timestamp)
            changes.append(KeyChange(me.info.id, key, old, new))
        if not fresh:
            for key in claims.keys:
                if key not in entries:
                    version += 1
                    tomb = entries[key] = Entry(None, version, stamp)
                    changes.append(KeyChange(me.info.id, key, None, tomb))
        if fresh:
            me.gc_point = 0
        me.version = version
        return Batch(tuple(changes), (me.record(),))

    @staticmethod
    def _reset(node: NodeState, info: NodeInfo) -> dict[str, Entry]:
        """Forget an old incarnation; return its entries, now dropped."""
        # ours to change (popped from below), even if the entries were shared
        dropped = node.own_entries()
        node.info = info
        node.entries = {}
        node.version = 0
        node.heartbeat = 0
        node.status = "alive"
        node.gc_point = 0
        return dropped

    def observe_heartbeat(self, node_id: str, generation: int, heartbeat: int) -> bool:
        """Take a heartbeat seen in a digest; True if it was news."""
        node = self.nodes.get(node_id)
        if node is None or node.info.generation != generation:
            return False
        if heartbeat > MAX_COUNTER:
            self.reject("counter-out-of-range", f"heartbeat of {node_id!r}")
            return False
        if node is self.me:
            self.claim(0, heartbeat)
            return False
        if heartbeat > node.heartbeat:
            self.writable(node).heartbeat = heartbeat
            self.heartbeat_news.add(node_id)
            return True
        return False

    def mark(self, node_id: str, generation: int, status: Status) -> Batch:
        """Set a node's status (e.g. dead after its goodbye)."""
        node = self.nodes.get(node_id)
        if (
            node is None
            or node is self.me
            or node.info.generation != generation
            or node.status == status
        ):
            return Batch()
        node = self.set_status(node, status)
        return Batch((), (node.record(),))

    def restore(self, snapshot: Snapshot) -> int:
        """Load what a store persisted; return our own previous generation."""
        previous = 0
        for record in snapshot.nodes:
            entries = dict(snapshot.entries.get(record.info.id, {}))
            top = max((e.version for e in entries.values()), default=0)
            if record.info.id == self.me.info.id:
                previous = record.info.generation
                self.me.entries = entries
                self.me.version = max(record.version, top)
            else:
                known = self.nodes.get(record.info.id)
                self.note_status(record.info.id, known.status if known else None)
                self.nodes[record.info.id] = NodeState(
                    record.info, entries, record.version, 0, record.status
                )
        self._sorted_ids = None
        return previous

    # -- full state (TCP sync) ------------------------------------------------

    def full_deltas(self) -> list[NodeDelta]:
        """Every node's every entry, for a full sync (a reset after GC)."""
        return [
            NodeDelta(
                n.info,
                n.heartbeat,
                0,
                n.version,
                tuple((k, e) for k, e in n.entries_since(0) if e.version <= n.version),
                left=n.status == "left",
                gc_point=min(n.gc_point, n.version),
            )
            for n in self.nodes.values()
        ]


def _apply_reset(node: NodeState, delta: NodeDelta) -> list[KeyChange]:
    """Drop the keys a reset delta does not list (deleted, then collected)."""
    listed = {key for key, _ in delta.entries}
    gone = [
        (k, e)
        for k, e in node.entries.items()
        if k not in listed and e.version <= delta.version
    ]
    entries = node.own_entries()
    for key, _ in gone:
        del entries[key]
    node.gc_point = max(node.gc_point, delta.gc_point)
    return [KeyChange(node.info.id, k, e, None) for k, e in gone]
