"""What an operator sees of a node, as plain data.

The counters, health, settings, keys and failure detector's view that
:class:`pokan.Server` gives the control API, ``/metrics`` and the ``pokan``
command; each is built here from the parts it reads, passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from pokan import wire
from pokan.core.address import format_host_port
from pokan.core.engine import Engine
from pokan.core.membership import Membership
from pokan.core.node import Address
from pokan.core.state import ROLES, STATUSES, ClusterState, NodeState, Value
from pokan.net.badinput import BadInputReporter
from pokan.net.events import EventDispatcher
from pokan.net.faults import Faults
from pokan.net.protocols import GossipProtocol
from pokan.net.settings import Settings
from pokan.net.watch import Watches
from pokan.store import IStore, MemoryStore
from pokan.wire.envelope import Envelope


def stats(
    engine: Engine,
    *,
    gossip: GossipProtocol | None,
    bad_input: BadInputReporter | None,
    events: EventDispatcher,
    store: IStore,
    faults: Faults,
    envelope: Envelope,
    watches: Watches,
) -> dict[str, Any]:
    """Counters for monitoring: messages, drops, handler failures."""
    state, node = engine.state, engine.node
    nodes = state.nodes.values()
    held = sum(len(n.entries) for n in nodes)
    tombstones = sum(1 for n in nodes for e in n.entries.values() if e.deleted)
    statuses = {status: 0 for status in STATUSES}
    for other in state.others():
        statuses[other.status] = statuses.get(other.status, 0) + 1
    return {
        "datagrams_sent": gossip.sent if gossip else 0,
        "datagrams_received": gossip.received if gossip else 0,
        "bytes_sent": gossip.bytes_sent if gossip else 0,
        "bytes_received": gossip.bytes_received if gossip else 0,
        "send_errors": gossip.send_errors if gossip else 0,
        "dropped": bad_input.total if bad_input else 0,
        "dropped_by_reason": dict(bad_input.counts) if bad_input else {},
        "handler_runs": events.runs,
        "handler_failures": events.failures,
        "handler_timeouts": events.timeouts,
        "nodes": len(state.nodes),
        "peers_by_status": statuses,
        "keys": held - tombstones,
        "tombstones": tombstones,
        "rumours_queued": len(node.rumours),
        "rumours_evicted": node.rumours.evicted,
        "store_pending": getattr(store, "pending", 0),
        "convictions": engine.convictions,
        "pauses": engine.pauses,
        "rounds": node.rounds,
        "idle_rounds": node.idle_skipped,
        "dropped_on_purpose": faults.dropped,
        "sealed": envelope.sealed,
        "cluster": envelope.cluster,
        "reasserts": state.reasserts,
        "watch_hints": watches.hints,
        "early_watches": watches.early,
    }


def peers(state: ClusterState, status: str | None, role: str | None) -> list[NodeState]:
    """The other nodes, sorted by id: of ``status`` and ``role`` if given."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return [
        n
        for n in sorted(state.others(), key=lambda n: n.info.id)
        if (status is None or n.status == status)
        and (role is None or n.info.role == role)
    ]


def health(
    listening: bool, seeds: Iterable[tuple[str, int]], synced: bool
) -> dict[str, Any]:
    """``{"listening", "synced", "reason"}``: reason None when healthy.

    ``seeds``: the seeds other than the node itself; ``synced``: whether it
    synced with one (or joined a node) at least once.
    """
    seeds = list(seeds)
    synced = not seeds or synced
    reason = None
    if not listening:
        reason = "not listening yet: the node is starting, or stopped"
    elif not synced:
        reason = (
            "not yet synced with any seed ("
            + ", ".join(format_host_port(*s) for s in seeds)
            + "): is one of them running?"
        )
    return {"listening": listening, "synced": bool(synced), "reason": reason}


def settings(
    configuration: Settings,
    engine: Engine,
    *,
    events: EventDispatcher,
    store: IStore,
    control: str | None,
    handlers: Iterable[str],
) -> dict[str, Any]:
    """A node's settings, as plain data (for ``GET /v1/info``)."""
    membership = cast(Membership, engine.detector)
    interval = engine.settings.gossip_interval
    return {
        "gossip_interval": interval,
        "idle_interval": engine.settings.idle_pace,
        "probe_interval": engine.settings.probe_period,
        "gossip_fanout": engine.node.fanout,
        "max_datagram": configuration.max_datagram,
        "max_frame": configuration.max_frame,
        "max_hello": configuration.max_hello,
        "sync_timeout": configuration.sync_timeout,
        "phi_threshold": membership.detector.threshold,
        "tombstone_ttl": membership.tombstone_ttl,
        "dead_node_ttl": membership.dead_node_ttl,
        "max_nodes": engine.state.max_nodes,
        "handler_timeout": events.timeout,
        "seeds": [format_host_port(h, p) for h, p in configuration.seeds],
        "store": describe_store(store),
        "key_file": configuration.key_file,
        "control": control,
        "handlers": list(handlers),
    }


def entries(
    state: ClusterState, node_id: str
) -> list[tuple[str, Value, int, float]] | None:
    """A node's live keys as ``(key, value, version, timestamp)``, by key;
    None for a node this node does not know."""
    node = state.nodes.get(node_id)
    if node is None:
        return None
    return [
        (key, entry.value, entry.version, entry.timestamp)
        for key, entry in sorted(node.live_items())
        if entry.value is not None
    ]


class Heard:
    """When each member last sent a datagram from its own socket.

    SWIM gossips no heartbeats to time: :func:`last_heard` reads these.
    """

    def __init__(self, state: ClusterState) -> None:
        self._state = state
        self.times: dict[str, float] = {}

    def note(self, message: wire.Message, source: Address, now: float) -> None:
        """A datagram came from ``source``: its sender's, if sent from its own."""
        sender = getattr(message, "sender", None)
        nodes = self._state.nodes
        node = nodes.get(sender) if isinstance(sender, str) else None
        if node is None or (node.info.address, node.info.udp_port) != source:
            return
        heard = self.times
        heard[node.info.id] = now
        if len(heard) > 2 * len(nodes) + 16:  # forgotten nodes
            for node_id in [n for n in heard if n not in nodes]:
                del heard[node_id]


def last_heard(engine: Engine, heard: Heard, node_id: str, now: float) -> float | None:
    """Seconds since ``node_id`` was last heard: its last datagram from its
    own socket (SWIM), or its last fresh heartbeat (phi); None if it was
    not heard yet (or it is this node)."""
    if node_id == engine.id:
        return None
    if engine.settings.failure_detector != "phi":
        at = heard.times.get(node_id)
        return None if at is None else max(0.0, now - at)
    detector = cast(Membership, engine.detector).detector
    if node_id not in detector:
        return None
    return detector.silence(node_id, now)


def detector_view(engine: Engine, node_id: str, now: float) -> dict[str, Any]:
    """What the failure detector thinks of ``node_id`` (see
    :meth:`pokan.Server.detector_view`)."""
    if engine.settings.failure_detector != "phi":
        return engine.detector_view(node_id, now)
    detector = cast(Membership, engine.detector).detector
    phi = None
    if node_id != engine.id and node_id in detector:
        phi = round(detector.phi(node_id, now), 3)
    return {"kind": "phi", "phi": phi, "threshold": detector.threshold}


def describe_store(store: IStore) -> str:
    """The store for the start banner: ``memory``, or its (redacted) URL."""
    url = getattr(store, "url", None)  # RedisStore's hides the password
    if url:
        return f"{type(store).__name__} {url}"
    return "memory" if isinstance(store, MemoryStore) else type(store).__name__
