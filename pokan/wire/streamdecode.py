"""Decoding the body of a TCP frame (Hello, Welcome) without trusting its counts.

``msgpack.unpackb`` builds the whole object tree before any field is checked:
a frame of millions of empty arrays costs hundreds of MB and seconds of CPU.
Here the body is read structurally: every array header is read on its own
and its count checked against the bytes left (each item has a smallest valid
encoding), every leaf is unpacked alone and may not be an array or a map, and
each delta is validated by :mod:`pokan.wire`'s own field checks as soon as it
is read. Junk is refused after a handful of objects; a valid body gives the
very message ``wire.decode`` gives.
"""

from __future__ import annotations

from typing import Any

import msgpack

from pokan import wire
from pokan.core.state import NodeDelta
from pokan.errors import DecodeError
from pokan.wire import codec

# The smallest valid encodings, in bytes (a non-empty string takes 2).
#: an entry: [key, nil, version, timestamp]
MIN_ENTRY_SIZE = 1 + 2 + 1 + 1 + 1
#: a node info: [id, generation, address, tcp port, udp port, role]
MIN_INFO_SIZE = 1 + 2 + 1 + 2 + 1 + 1 + 1
#: a delta: [info, heartbeat, since, version, []]
MIN_DELTA_SIZE = 1 + MIN_INFO_SIZE + 1 + 1 + 1 + 1

_CLASSES: dict[wire.MessageType, type[wire.Hello | wire.Welcome]] = {
    wire.MessageType.HELLO: wire.Hello,
    wire.MessageType.WELCOME: wire.Welcome,
}


def decode_stream_body(
    kind: wire.MessageType, body: bytes
) -> wire.Hello | wire.Welcome:
    """The Hello or Welcome of ``body`` (msgpack); DecodeError if invalid."""
    return BodyReader(body).message(kind)


class BodyReader:
    """Reads one body; ``objects`` counts the headers and leaves read so far."""

    def __init__(self, body: bytes) -> None:
        self.size = len(body)
        self.objects = 0
        self._unpacker = msgpack.Unpacker(
            raw=False,
            strict_map_key=True,
            max_buffer_size=max(len(body), 1),
            max_str_len=wire.MAX_VALUE_LEN,
            max_bin_len=wire.MAX_VALUE_LEN,
            max_array_len=0,  # leaves only: arrays are read by their headers
            max_map_len=0,
            max_ext_len=0,
        )
        self._unpacker.feed(body)

    @property
    def position(self) -> int:
        """Bytes of the body read so far."""
        return int(self._unpacker.tell())

    def message(self, kind: wire.MessageType) -> wire.Hello | wire.Welcome:
        cls = _CLASSES.get(kind)
        if cls is None:
            raise DecodeError("unexpected-type", f"{kind.name} is not a stream message")
        self._array(cls.__name__, 2)
        sender = codec.read_str(self._leaf(), "sender", wire.MAX_ID_LEN)
        count = self._array("deltas", minimum=MIN_DELTA_SIZE)
        deltas = tuple(self._delta() for _ in range(count))
        if self.position != self.size:
            raise DecodeError(
                "bad-body", f"{self.size - self.position} bytes after the message"
            )
        return cls(sender, deltas)

    def _delta(self) -> NodeDelta:
        fields = self._array("delta")
        if fields not in (5, 7):
            raise DecodeError("bad-field", f"delta has {fields} fields, not 5 or 7")
        self._array("node info", 6)
        info = [self._leaf() for _ in range(6)]
        header = [info, self._leaf(), self._leaf(), self._leaf()]
        entries = [
            self._entry() for _ in range(self._array("entries", minimum=MIN_ENTRY_SIZE))
        ]
        status = [self._leaf() for _ in range(fields - 5)]
        return codec.read_delta([*header, entries, *status])

    def _entry(self) -> list[Any]:
        self._array("entry", 4)
        return [self._leaf() for _ in range(4)]

    def _array(self, what: str, length: int | None = None, minimum: int = 1) -> int:
        """Read an array header: its count, checked against the bytes left."""
        try:
            count = int(self._unpacker.read_array_header())
        except ValueError:  # not an array: a scalar, or no msgpack at all
            self._leaf()  # raises bad-body for the latter, says what is wrong
            raise DecodeError("bad-field", f"{what} is not an array") from None
        except Exception as e:
            raise DecodeError("bad-body", codec.unpack_problem(e)) from None
        self.objects += 1
        if length is not None and count != length:
            raise DecodeError("bad-field", f"{what} has {count} fields, not {length}")
        left = self.size - self.position
        if count * minimum > left:
            raise DecodeError("bad-body", f"{count} {what} cannot fit in {left} bytes")
        return count

    def _leaf(self) -> Any:
        """One scalar: a string, bytes, a number, a boolean or nil."""
        try:
            value = self._unpacker.unpack()
        except Exception as e:  # msgpack raises several types for bad input
            raise DecodeError("bad-body", codec.unpack_problem(e)) from None
        self.objects += 1
        if isinstance(value, list):  # [] is the one array a leaf can be
            raise DecodeError("bad-field", "an array where a value belongs")
        return value
