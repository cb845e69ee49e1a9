"""What a peer may plausibly send: pure checks, sans-IO.

Every field of a delta comes from the network. These functions say, without
changing anything, why a node record or a delta must be refused (a short
reason, counted in ``stats()["dropped_by_reason"]``), or None when it is
plausible. :mod:`pokan.core.state` calls them at merge.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from pokan.core import state
from pokan.core.address import format_host_port
from pokan.errors import ConfigurationError

if TYPE_CHECKING:
    from pokan.core.state import NodeDelta, NodeInfo

#: the furthest a generation (microseconds since the epoch) may be ahead of
#: this node's clock: a day, in microseconds
MAX_FUTURE = 86_400 * 1_000_000

#: nodes tracked at most, by default: room for a 10,000-node cluster
DEFAULT_MAX_NODES = 20_000

#: nodes new to us that one UDP message (or a joiner's Hello) may bring
MAX_NEW_PER_MESSAGE = 64

#: nodes new to us that one source address may bring per gossip round
MAX_NEW_PER_SOURCE = 128

#: replies (SynAcks, Acks) one source gets per gossip round at most
MAX_REPLIES_PER_SOURCE = 8


def max_generation(now: float) -> int:
    """The newest generation a node whose clock reads ``now`` (seconds) takes."""
    return int(now * 1_000_000) + MAX_FUTURE


def check_info(info: NodeInfo) -> str | None:
    """Why ``info`` cannot be a real node's, or None if it can."""
    address = info.address
    if not isinstance(address, str) or not isinstance(info.id, str):
        return "invalid-node"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "invalid-address"
    if str(ip) != address or ip.is_unspecified or ip.is_multicast:
        return "invalid-address"
    for port in (info.udp_port, info.tcp_port):
        if not isinstance(port, int) or not 0 < port < 65536:
            return "invalid-port"
    if info.id != format_host_port(address, info.udp_port):
        return "invalid-node-id"
    return None


def check_family(info: NodeInfo, mine: str) -> str | None:
    """``other-family`` if ``info``'s address is not of the family of ``mine``.

    A node gossips over one UDP socket, bound to its own address: a peer of
    the other address family can neither be reached nor reach it.
    """
    try:
        ours = ipaddress.ip_address(mine).version
    except ValueError:
        return None  # not an IP address: a simulation's node, family-less
    if ipaddress.ip_address(info.address).version != ours:
        return "other-family"
    return None


def check_counters(delta: NodeDelta, newest: int | None) -> str | None:
    """Why ``delta``'s counters are out of range, or None.

    ``newest`` is the newest plausible generation (None: unchecked).
    """
    generation = delta.info.generation
    cap = state.MAX_COUNTER
    if (
        generation > cap
        or delta.version > cap
        or delta.heartbeat > cap
        or delta.since > cap
        or delta.gc_point > cap
    ):
        return "counter-out-of-range"
    if delta.entries and max(e.version for _, e in delta.entries) > cap:
        return "counter-out-of-range"
    if newest is not None and generation > newest:
        return "generation-from-future"
    return None


def describe(info: NodeInfo) -> str:
    """A node record for a log line: every field escaped (``!r``)."""
    return f"node {info.id!r} at {info.address!r} generation {info.generation}"


def check_max_nodes(value: object) -> int:
    """``max_nodes`` as Server takes it: a whole number of at least 2."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ConfigurationError(
            f"max nodes must be a whole number of at least 2, got {value!r}"
        )
    return value
