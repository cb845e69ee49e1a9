"""Length-prefixed TCP frames, read without quadratic buffering, sans-IO.

A frame is a 4-byte big-endian length and that many bytes. The length is
checked before a byte of the frame is kept, and the bytes a frame needs are
reserved from a :class:`BufferBudget` shared by every connection, so a peer
cannot make a node hold more than the budget by announcing frames it never
sends. A partial frame is held as the chunks that came, joined once when
complete: linear in its size, whatever the chunking.
"""

from __future__ import annotations

import struct

PREFIX = struct.Struct(">I")
PREFIX_SIZE = PREFIX.size


class FrameRefused(Exception):
    """A frame that must not be read; ``reason`` is a bad-input reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BufferBudget:
    """Bytes that all connections together may hold for their partial frames."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes if they fit; False (nothing taken) if not."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used -= size


class FrameReader:
    """Turns the bytes of one connection into frames of at most ``max_length``.

    ``feed`` returns the frames completed by a chunk; it raises FrameRefused
    (``oversized`` or ``buffer-full``) for a length over the limit or over what
    the budget has left. Call ``close`` when the connection ends: it gives back
    what a partial frame reserved.
    """

    def __init__(self, max_length: int, budget: BufferBudget | None = None) -> None:
        self.max_length = max_length
        self.budget = budget
        self._prefix = b""
        self._length: int | None = None  # of the frame being read
        self._chunks: list[bytes] = []
        #: bytes of the current frame held in ``_chunks``
        self.buffered = 0
        #: bytes copied so far (slices and joins), linear in the bytes fed
        self.copied = 0

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        offset = 0
        while offset < len(data) or self._length == 0:
            if self._length is None:
                need = PREFIX_SIZE - len(self._prefix)
                self._prefix += data[offset : offset + need]
                offset += need
                if len(self._prefix) < PREFIX_SIZE:
                    break
                (length,) = PREFIX.unpack(self._prefix)
                self._prefix = b""
                self._start(length)
                continue
            rest = self._length - self.buffered
            if offset == 0 and len(data) <= rest:
                chunk = data  # the whole chunk: kept as it is, no copy
            else:
                chunk = data[offset : offset + rest]
                self.copied += len(chunk)
            offset += len(chunk)
            self._chunks.append(chunk)
            self.buffered += len(chunk)
            if self.buffered == self._length:
                frames.append(self._finish())
        return frames

    def _start(self, length: int) -> None:
        if length > self.max_length:
            raise FrameRefused("oversized", f"frame of {length} > {self.max_length}")
        if self.budget is not None and not self.budget.reserve(length):
            raise FrameRefused(
                "buffer-full",
                f"frame of {length} bytes: {self.budget.used} of the"
                f" {self.budget.limit} bytes for all sync connections in use",
            )
        self._length = length

    def _finish(self) -> bytes:
        frame = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        if len(self._chunks) > 1:
            self.copied += len(frame)
        self.close()
        return frame

    def close(self) -> None:
        """Drop the partial frame, if any, and give back its reservation."""
        if self._length is not None and self.budget is not None:
            self.budget.release(self._length)
        self._length = None
        self._chunks = []
        self.buffered = 0
