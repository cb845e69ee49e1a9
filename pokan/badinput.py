"""Counting dropped input and reporting it without flooding the log."""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()

#: log lines at most per interval, whatever the number of sources
MAX_LINES = 10

#: distinct source addresses remembered per interval for the summary line
MAX_SOURCES = 4096


class BadInputReporter:
    """Counts every drop by reason; logs a few of them.

    Time is cut into windows of ``interval`` seconds. In a window, each source
    *address* (host, whatever its port: a sender can pick a new port for every
    datagram) gets at most one line, and all sources together at most
    ``max_lines``. The drops left unlogged are summed up in one line at the
    first report after the window ends.
    """

    def __init__(
        self, clock: IReactorTime, interval: float = 10.0, max_lines: int = MAX_LINES
    ) -> None:
        self.clock = clock
        self.interval = interval
        self.max_lines = max_lines
        self.counts: Counter[str] = Counter()
        self._window_start: float | None = None
        self._lines = 0
        self._logged_hosts: set[str] = set()
        self._suppressed: Counter[str] = Counter()
        self._suppressed_hosts: set[str] = set()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(
        self, channel: str, source: str, reason: str, detail: str = "", host: str = ""
    ) -> None:
        """Count one message dropped from ``source`` (host:port) on ``channel``.

        ``host`` is the address the throttle goes by (``source`` if not given).
        """
        self.counts[reason] += 1
        now = self.clock.seconds()
        if self._window_start is None or now - self._window_start >= self.interval:
            self._new_window(now)
        host = host or source
        if host in self._logged_hosts or self._lines >= self.max_lines:
            self._suppressed[reason] += 1
            if len(self._suppressed_hosts) < MAX_SOURCES:
                self._suppressed_hosts.add(host)
            return
        self._logged_hosts.add(host)
        self._lines += 1
        self._log_line(channel, source, reason, detail)

    def _log_line(self, channel: str, source: str, reason: str, detail: str) -> None:
        log.warn(
            "dropped bad {channel} input from {source}: {reason} ({detail})",
            channel=channel,
            source=source,
            reason=reason,
            detail=detail or "no detail",
        )

    def _new_window(self, now: float) -> None:
        """Sum up the last window's unlogged drops, if any; start a new one."""
        if self._suppressed and self._window_start is not None:
            sources = len(self._suppressed_hosts)
            self._log_summary(
                count=sum(self._suppressed.values()),
                interval=self.interval,
                ago=round(now - self._window_start, 1),
                reasons=", ".join(
                    f"{reason}: {n}" for reason, n in self._suppressed.most_common()
                ),
                sources=f"{sources}+" if sources >= MAX_SOURCES else sources,
                plural="" if sources == 1 else "es",
            )
        self._window_start = now
        self._lines = 0
        self._logged_hosts.clear()
        self._suppressed.clear()
        self._suppressed_hosts.clear()

    def _log_summary(self, **fields: object) -> None:
        log.warn(
            "dropped {count} more bad inputs without a line each in the {interval}s"
            " window that began {ago}s ago ({reasons}; from {sources} source"
            " address{plural}); the dropped_by_reason stats count every one",
            **fields,
        )


class SendErrorReporter(BadInputReporter):
    """Failed sends, throttled as bad input: one line per destination per window.

    ``report(kind, to, error_type, error)``: the message kind, the destination
    ``host:port`` (the throttle goes by it), the exception's type (counted in
    ``counts``) and its text.
    """

    def _log_line(self, channel: str, source: str, reason: str, detail: str) -> None:
        log.warn(
            "could not send {kind} to {to}: {error}",
            kind=channel,
            to=source,
            error=f"{reason}: {detail}" if detail else reason,
        )

    def _log_summary(self, **fields: object) -> None:
        log.warn(
            "could not send {count} more messages, without a line each, in the"
            " {interval}s window that began {ago}s ago ({reasons}; to {sources}"
            " destination address{plural})",
            **fields,
        )
