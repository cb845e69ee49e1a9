"""A second SIGINT or SIGTERM while the node stops ends the process at once.

The first signal stops the reactor, which waits for the node's stop: its
``shutdown`` handlers (each at most the handler timeout), the ports, the
store. Whoever does not want to wait sends the signal again: the loop ends
there, without a traceback (Twisted's own handler would call
``reactor.stop()`` a second time, which raises ReactorNotRunning).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

log = Logger()

SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: what must not outlive a process that a second signal ends (the commands
#: of ``--on-event`` running in process groups of their own)
_at_forced_end: set[Callable[[], None]] = set()


def at_forced_end(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` if a second signal ends the loop; returns its removal."""
    _at_forced_end.add(callback)
    return lambda: _at_forced_end.discard(callback)


def _run_forced_end_callbacks() -> None:
    for callback in list(_at_forced_end):
        try:
            callback()
        except Exception:
            log.failure("while ending at once")


class SecondSignal:
    """Once armed, SIGINT and SIGTERM end ``reactor``'s loop at once."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._previous: dict[int, Any] = {}
        #: the signal that ended the loop, if one did
        self.received: int | None = None

    def arm(self) -> None:
        """From now on (the stop has begun) a signal ends the loop.

        Does nothing outside the main thread, where signals cannot be set.
        """
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for number in SIGNALS:
            self._previous[number] = signal.signal(number, self._received)

    def disarm(self) -> None:
        """The stop is over: the handlers from before :meth:`arm` again."""
        previous, self._previous = self._previous, {}
        for number, handler in previous.items():
            signal.signal(number, handler)

    def _received(self, number: int, frame: Any) -> None:
        if self.received is not None:
            return
        self.received = number
        log.warn(
            "{signal} while stopping: ending now, without waiting for the"
            " shutdown handlers and the store",
            signal=signal.Signals(number).name,
        )
        _run_forced_end_callbacks()
        self._reactor.callFromThread(self._reactor.crash)


def arm_while_stopping(reactor: Any) -> Callable[[], None]:
    """Arm a :class:`SecondSignal` now; return its ``disarm``."""
    second = SecondSignal(reactor)
    second.arm()
    return second.disarm


def exit_with_signal(number: int) -> None:
    """End the process as that signal does by default (as twistd does)."""
    signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)


__all__ = ["SecondSignal", "arm_while_stopping", "at_forced_end", "exit_with_signal"]
