"""The "peer X joined / dead / alive / left" log lines, throttled.

A flood of forged nodes must not flood the log: at most ``max_lines`` lines
per window of ``interval`` seconds, then one line summing up how many more of
each transition there were (the first transition after the window ends logs
it). Events still fire for every transition; only the lines are throttled.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger

from pokan.net.badinput import LogWindow

log = Logger()

#: transition lines at most per window
MAX_LINES = 10


class Seconds:
    """An ``IReactorTime``-like ``seconds()`` over any clock function."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.seconds = now


class TransitionLog:
    """Logs membership transitions, a few per window, the rest summed up."""

    def __init__(
        self, clock: Seconds, interval: float = 10.0, max_lines: int = MAX_LINES
    ) -> None:
        self._lines = ThrottledLines(clock, "peer transitions", interval, max_lines)

    def line(self, event: str, peer: str, note: str = "") -> None:
        """Log ``peer`` (a validated node id) going through ``event``."""
        self._lines.emit(
            event,
            "peer {peer} {event}{note}",
            peer=peer,
            event=event,
            note=f" ({note})" if note else "",
        )


class ThrottledLines:
    """Any kind of line a peer can make a node log: a few per window.

    ``what`` names them in the summary line ("full sync", ...).
    """

    def __init__(
        self,
        clock: Seconds,
        what: str,
        interval: float = 10.0,
        max_lines: int = MAX_LINES,
    ) -> None:
        self.what = what
        self._window = LogWindow(clock, interval, max_lines)  # type: ignore[arg-type]

    def emit(
        self, kind: str, format: str, warn: bool = False, **fields: object
    ) -> None:
        """Log ``format`` with ``fields`` unless this window had its lines."""
        window = self._window
        left = window.roll()
        if left is not None:
            suppressed, ago = left
            log.info(
                "{count} more {what} without a line each in the {interval}s"
                " window that began {ago}s ago ({kinds})",
                count=sum(suppressed.values()),
                what=self.what,
                interval=window.interval,
                ago=ago,
                kinds=", ".join(f"{k}: {n}" for k, n in suppressed.most_common()),
            )
        if window.admit(kind):
            (log.warn if warn else log.info)(format, **fields)
