"""Giving the C heap's free pages back: glibc's malloc_trim, or nothing."""

from __future__ import annotations

import platform

from twisted.trial import unittest

from pokan.net.heap import release_free_heap


class ReleaseFreeHeapTests(unittest.TestCase):
    def test_trims_everything_free(self) -> None:
        calls: list[int] = []
        self.assertTrue(release_free_heap(calls.append))
        self.assertEqual(calls, [0])  # 0: keep no free pad at the heap's top

    def test_without_malloc_trim_does_nothing(self) -> None:
        self.assertFalse(release_free_heap(None))

    def test_found_where_the_c_library_is_glibc(self) -> None:
        on_glibc = platform.libc_ver()[0] == "glibc"
        self.assertEqual(release_free_heap(), on_glibc)
