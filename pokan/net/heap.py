"""Giving the C heap's free pages back to the system, where glibc allows it."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any


def _find_malloc_trim() -> Callable[[int], Any] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to give back this way


_malloc_trim = _find_malloc_trim()


def release_free_heap(trim: Callable[[int], Any] | None = _malloc_trim) -> bool:
    """Return the free pages of the C heap to the system; True if it could.

    Starting a node (imports, options, a full sync's large frames) leaves
    free holes in the C heap that glibc keeps for later by default: about
    1.5 MB of a 35 MB node. A long-running node gives them back once it is
    up and after each full sync; pages it needs again it simply touches anew.
    """
    if trim is None:
        return False
    trim(0)
    return True
