"""Bounded, event-driven waits for integration tests on the global reactor."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task


@defer.inlineCallbacks
def wait_for(
    condition: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02
) -> Any:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition}")
        yield task.deferLater(reactor, interval, lambda: None)
