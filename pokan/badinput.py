"""Counting dropped input and reporting it without flooding the log."""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()

#: sources remembered for rate limiting before the table is cleared
MAX_SOURCES = 4096


class BadInputReporter:
    """Counts drops by reason; logs at most one line per source per interval.

    The line after a quiet spell says how many more drops that source had.
    """

    def __init__(self, clock: IReactorTime, interval: float = 10.0) -> None:
        self.clock = clock
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self._last_logged: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self, channel: str, source: str, reason: str, detail: str = "") -> None:
        """Count one dropped message from ``source`` on ``channel`` (udp/tcp)."""
        self.counts[reason] += 1
        now = self.clock.seconds()
        last = self._last_logged.get(source)
        if last is not None and now - last < self.interval:
            self._suppressed[source] += 1
            return
        if len(self._last_logged) >= MAX_SOURCES:
            self._last_logged.clear()
            self._suppressed.clear()
        self._last_logged[source] = now
        log.warn(
            "dropped bad {channel} input from {source}: {reason} ({detail});"
            " {suppressed} more from it since the last report",
            channel=channel,
            source=source,
            reason=reason,
            detail=detail or "no detail",
            suppressed=self._suppressed.pop(source, 0),
        )
