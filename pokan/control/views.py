"""What the control API says of a node, its members and keys: plain JSON data."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from typing import Any

from pokan.control.jsonio import ApiError, query_one

#: list endpoints return at most this many items unless ``limit`` says fewer
DEFAULT_PAGE = 500
#: and never more than this
MAX_PAGE = 1000


def encode_value(value: str | bytes | None) -> dict[str, Any]:
    """A value in JSON: text as is, bytes in base64, with the type saying which."""
    if isinstance(value, bytes):
        return {"value": base64.b64encode(value).decode("ascii"), "type": "bytes"}
    return {"value": value, "type": "str"}


def decode_value(body: dict[str, Any]) -> str | bytes:
    """The value of a write's body ``{"value": ..., "type": "str"|"bytes"}``."""
    if "value" not in body:
        raise ApiError(400, 'the body needs "value" (and "type": "str" or "bytes")')
    unknown = sorted(set(body) - {"value", "type"})
    if unknown:
        raise ApiError(
            400, f"unknown field(s) {', '.join(unknown)}: expected value, type"
        )
    kind = body.get("type", "str")
    value = body["value"]
    if not isinstance(value, str):
        raise ApiError(
            400, f'"value" must be a JSON string, got {type(value).__name__}'
        )
    if kind == "str":
        return value
    if kind == "bytes":
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, '"value" of type bytes must be base64') from None
    raise ApiError(400, f'"type" must be "str" or "bytes", got {kind!r}')


def page_limit(request: Any) -> int:
    """The ``limit`` query parameter: 1 to :data:`MAX_PAGE`, default 500."""
    text = query_one(request, "limit")
    if text is None:
        return DEFAULT_PAGE
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PAGE:
        raise ApiError(
            400, f"limit must be a whole number from 1 to {MAX_PAGE}, got {text!r}"
        )
    return int(text)


def paged(
    items: Iterable[tuple[str, dict[str, Any]]], limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """At most ``limit`` of the (cursor, item) pairs, and the cursor of the
    next page (the last item's) if more follow, else None."""
    out: list[dict[str, Any]] = []
    last = None
    for cursor, item in items:
        if len(out) == limit:
            return out, last
        out.append(item)
        last = cursor
    return out, None


def member(server: Any, peer: Any) -> dict[str, Any]:
    node_id = peer.id
    return {
        "id": node_id,
        "address": peer.address,
        "udp_port": peer.udp_port,
        "tcp_port": peer.tcp_port,
        "role": peer.role,
        "status": peer.status,
        "generation": peer.generation,
        "last_heard_s": server.last_heard(node_id),
        "me": node_id == server.id,
        "detector": detector(server, peer),
    }


def detector(server: Any, peer: Any) -> dict[str, Any] | None:
    """The failure detector's view of a member; None for one that left: it
    said goodbye, no detector watches it (SWIM's view would say alive)."""
    if peer.status == "left":
        return None
    view: dict[str, Any] = server.detector_view(peer.id)
    return view


def members(
    server: Any, status: str | None, role: str | None, after: str | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """This node and every node it knows, by id, from after ``after``."""
    everyone = sorted([server.me, *server.peers()], key=lambda p: p.id)
    for peer in everyone:
        if after is not None and peer.id <= after:
            continue
        if status is not None and peer.status != status:
            continue
        if role is not None and peer.role != role:
            continue
        yield peer.id, member(server, peer)


def key_item(
    node_id: str, key: str, value: str | bytes, version: int, timestamp: float
) -> dict[str, Any]:
    return {
        "node": node_id,
        "key": key,
        **encode_value(value),
        "version": version,
        "timestamp": timestamp,
    }


def node_keys(
    server: Any, node_id: str, after_key: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """One node's live keys by name (after ``after_key``); cursors ``node/key``."""
    for key, value, version, timestamp in server.entries(node_id) or ():
        if after_key is not None and key <= after_key:
            continue
        yield f"{node_id}/{key}", key_item(node_id, key, value, version, timestamp)


def all_keys(server: Any, after: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every node's keys, by node then key, after the cursor ``node/key``."""
    after_node, after_key = (None, None)
    if after is not None:
        after_node, sep, after_key = after.partition("/")
        if not sep:
            raise ApiError(400, f"after must be a cursor NODE/KEY, got {after!r}")
    ids = sorted([server.id, *(p.id for p in server.peers())])
    for node_id in ids:
        if after_node is not None and node_id < after_node:
            continue
        start = after_key if node_id == after_node else None
        yield from node_keys(server, node_id, start)


def write_limit(server: Any) -> str:
    """What one write may take on this node, and how to allow more."""
    return (
        "a key and its value must fit in one gossip datagram: with max_datagram"
        f" {server.max_datagram} one write may take at most {server.write_room}"
        " bytes packed. Store less per key, or raise --max-datagram"
        " (Server(max_datagram=...)) on every node"
    )


def pokan_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pokan")
    except PackageNotFoundError:
        from pokan import __version__

        return __version__


def info(server: Any) -> dict[str, Any]:
    """``GET /v1/info``: this node, its settings and its counters (the
    cluster and whether it is sealed stand at the top, not among them)."""
    counters = dict(server.stats)
    for shown_above in ("cluster", "sealed"):
        counters.pop(shown_above, None)
    return {
        "id": server.id,
        "address": server.address,
        "udp_port": server.udp_port,
        "tcp_port": server.tcp_port,
        "cluster": server.cluster,
        "sealed": server.envelope.sealed,
        "generation": server.generation,
        "version": pokan_version(),
        "settings": settings(server),
        "counters": counters,
    }


def settings(server: Any) -> dict[str, Any]:
    """Every setting of the node, named as the Server's keywords and twistd's
    flags; ``probe_interval`` None under phi (SWIM probes, phi does not),
    ``phi_threshold`` None under SWIM."""
    configuration = server.configuration
    shown: dict[str, Any] = {
        **server.settings(),
        "failure_detector": configuration.engine.failure_detector,
        "max_sync_connections": configuration.max_sync_connections,
        "max_sync_per_host": configuration.max_sync_per_host,
        "drop_rate": configuration.drop_rate,
        "handler_queue": handler_queue(server),
    }
    # each detector's own tunable means nothing under the other
    if shown["failure_detector"] == "phi":
        shown["probe_interval"] = None
    elif "phi_threshold" in shown:
        shown["phi_threshold"] = None
    return shown


def handler_queue(server: Any) -> int | None:
    """How many events each ``--on-event`` command may have waiting
    (``--handler-queue``); None when the node runs no such command."""
    from pokan.daemon.commands import attached_commands

    sizes = [command.max_queue for command in attached_commands(server)]
    return max(sizes) if sizes else None
