"""The TCP framer: the length first, chunks kept, one join per frame."""

from __future__ import annotations

import struct

from twisted.trial import unittest

from pokan.wire.framing import BufferBudget, FrameReader, FrameRefused

MiB = 1024 * 1024


def frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class FrameReaderTests(unittest.TestCase):
    def test_a_16_mib_frame_in_64_kib_chunks_is_copied_once(self) -> None:
        payload = bytes(range(256)) * (16 * MiB // 256)
        data = frame(payload)
        reader = FrameReader(16 * MiB)
        chunk = 64 * 1024
        frames = []
        for i in range(0, len(data), chunk):
            frames += reader.feed(data[i : i + chunk])
        self.assertEqual(frames, [payload])
        # the first chunk's tail (behind the prefix) and the final join; a
        # quadratic buffer would have copied about 2 GiB
        self.assertLessEqual(reader.copied, len(payload) + 2 * chunk)
        self.assertEqual(reader.buffered, 0)

    def test_a_partial_frame_is_held_as_the_chunks_that_came(self) -> None:
        reader = FrameReader(MiB)
        self.assertEqual(reader.feed(struct.pack(">I", 100_000)), [])
        chunks = [bytes([i]) * 1000 for i in range(50)]
        for c in chunks:
            self.assertEqual(reader.feed(c), [])
        self.assertEqual(len(reader._chunks), 50)
        self.assertTrue(
            all(a is b for a, b in zip(reader._chunks, chunks, strict=True))
        )
        self.assertEqual(reader.buffered, 50_000)
        self.assertEqual(reader.copied, 0)

    def test_split_at_every_byte_of_the_prefix_and_around_it(self) -> None:
        data = frame(b"hello") + frame(b"") + frame(b"world!")
        for cut in range(len(data) + 1):
            reader = FrameReader(100)
            got = reader.feed(data[:cut]) + reader.feed(data[cut:])
            self.assertEqual(got, [b"hello", b"", b"world!"], cut)
        reader = FrameReader(100)
        got = [f for byte in data for f in reader.feed(bytes([byte]))]
        self.assertEqual(got, [b"hello", b"", b"world!"])

    def test_several_frames_in_one_chunk(self) -> None:
        reader = FrameReader(100)
        self.assertEqual(reader.feed(frame(b"a") * 3 + b"\x00"), [b"a"] * 3)
        self.assertEqual(reader.feed(b"\x00\x00\x01b"), [b"b"])

    def test_a_length_over_the_limit_is_refused_before_buffering(self) -> None:
        reader = FrameReader(1000)
        with self.assertRaises(FrameRefused) as caught:
            reader.feed(struct.pack(">I", 1001) + b"x" * 500)
        self.assertEqual(caught.exception.reason, "oversized")
        self.assertIn("1001 > 1000", caught.exception.detail)
        self.assertEqual((reader.buffered, reader._chunks), (0, []))

    def test_the_budget_is_shared_and_given_back(self) -> None:
        budget = BufferBudget(100)
        first, second = FrameReader(80, budget), FrameReader(80, budget)
        first.feed(struct.pack(">I", 60) + b"x" * 10)
        self.assertEqual(budget.used, 60)  # what the frame needs, reserved
        with self.assertRaises(FrameRefused) as caught:
            second.feed(struct.pack(">I", 50))
        self.assertEqual(caught.exception.reason, "buffer-full")
        self.assertEqual(budget.used, 60)
        self.assertEqual(first.feed(b"x" * 50), [b"x" * 60])
        self.assertEqual(budget.used, 0)
        second.feed(struct.pack(">I", 50) + b"y")
        self.assertEqual(budget.used, 50)
        second.close()  # the connection ends mid-frame
        self.assertEqual(budget.used, 0)
        second.close()
        self.assertEqual(budget.used, 0)
