"""What a write must be: a key, a value and a timestamp the wire can carry.

:meth:`pokan.Server.store` and :meth:`~pokan.Server.delete` check their
arguments here before the Engine takes the write.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs

from pokan import wire
from pokan.core import reconcile
from pokan.core.address import format_host_port
from pokan.core.settings import API_NAMES, given
from pokan.core.state import Entry, NodeDelta, NodeInfo, Value
from pokan.errors import NamesSettings


class TooLargeToGossip(NamesSettings, ValueError):
    """A write that could not fit one datagram: it could never be gossiped."""

    def __init__(self, size: int, room: int, max_datagram: int) -> None:
        self.size = size
        self.room = room
        self.max_datagram = max_datagram
        super().__init__(self.describe(API_NAMES))

    def describe(self, names: Mapping[str, str]) -> str:
        """The message, naming the datagram limit as ``names["max_datagram"]``."""
        name = names["max_datagram"]
        return (
            f"key and value take {self.size} bytes packed; with"
            f" {given(name, self.max_datagram)} one write may take at most"
            f" {self.room}. Store less per key, or raise {name.removesuffix('=')}"
            " on every node."
        )


def check_key(key: object) -> None:
    """TypeError unless ``key`` is a str; ValueError unless the wire can carry it."""
    if not isinstance(key, str):
        raise TypeError(f"key must be a non-empty str, got {key!r}")
    if not key:
        raise ValueError(f"key is empty: a key is 1 to {wire.MAX_KEY_LEN} characters")
    if len(key) > wire.MAX_KEY_LEN:
        raise ValueError(
            f"key is {len(key)} characters; the limit is {wire.MAX_KEY_LEN}"
        )
    check_utf8(key, "key", "use a key without them")


def check_value(value: object) -> None:
    """TypeError unless ``value`` is str or bytes; ValueError for bad text."""
    if not isinstance(value, str | bytes):
        raise TypeError(f"value must be str or bytes, got {type(value).__name__}")
    if isinstance(value, str):
        check_utf8(value, "value", "store text without them, or bytes")


def check_timestamp(timestamp: object) -> float:
    """The timestamp as a float: seconds since the epoch, finite, 0 or more."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise TypeError(f"timestamp must be a number, got {timestamp!r}")
    if not math.isfinite(timestamp) or timestamp < 0:
        raise ValueError(
            "timestamp must be seconds since the epoch (a finite number, 0"
            f" or more), got {timestamp}; omit it to use the current time"
        )
    return float(timestamp)


def check_fits(key: str, value: Value, info: NodeInfo, max_datagram: int) -> None:
    """A write must fit one datagram, or it could never be gossiped.

    Before the node binds port 0 its id and header are shorter than they
    will be: the check takes the longest ones (port 65535, a full-size
    generation), so what it accepts before start still fits after.
    """
    room = write_room(info, max_datagram)
    size = wire.packed_size(wire.pack_entry(key, Entry(value, 2**32, 0.0)))
    if size > room:
        raise TooLargeToGossip(size, room, max_datagram)


def write_room(info: NodeInfo, max_datagram: int) -> int:
    """The most bytes one write (its key and value, packed) may take on the
    node ``info``, whether it has started yet or not (see :func:`check_fits`)."""
    info = _largest_identity(info)
    return reconcile.entry_room(max_datagram, info.id, _header(info))


def check_utf8(text: str, what: str, fix: str) -> None:
    """ValueError unless ``text`` encodes as UTF-8 (the wire's text encoding)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} cannot be encoded as UTF-8: it has a lone surrogate"
            f" ({text[e.start]!r} at index {e.start}); {fix}"
        ) from None


def _header(info: NodeInfo) -> NodeDelta:
    return NodeDelta(info, 2**32, 2**32, 2**32, ())


def _largest_identity(info: NodeInfo) -> NodeInfo:
    """``info`` as large as it can get once started: ports 0 bound, a generation."""
    udp = info.udp_port or 65535
    return attrs.evolve(
        info,
        id=format_host_port(info.address, udp),
        generation=2**63,  # a started node's (microseconds): as many bytes
        tcp_port=info.tcp_port or 65535,
        udp_port=udp,
    )
