"""Bounded, event-driven waits for integration tests on the global reactor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from tests.support import wait_until


def wait_for(
    condition: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02
) -> defer.Deferred[Any]:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    return wait_until(condition, timeout, interval=interval)
