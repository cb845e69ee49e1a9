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


class LogWindow:
    """Time cut into windows of ``interval`` seconds, ``max_lines`` lines each.

    :meth:`admit` says whether one more line may be logged now; what it
    refuses is counted by kind, and :meth:`roll` hands those counts over
    (once) when a window ends, for one summary line.
    """

    def __init__(self, clock: IReactorTime, interval: float, max_lines: int) -> None:
        self.clock = clock
        self.interval = interval
        self.max_lines = max_lines
        self.start: float | None = None
        self.lines = 0
        self.suppressed: Counter[str] = Counter()

    def roll(self) -> tuple[Counter[str], float] | None:
        """Start a new window if the last one ended: its unlogged counts and
        how long ago it began, if it left any; else None."""
        now = self.clock.seconds()
        if self.start is not None and now - self.start < self.interval:
            return None
        left = None
        if self.suppressed and self.start is not None:
            left = (self.suppressed, round(now - self.start, 1))
        self.start = now
        self.lines = 0
        self.suppressed = Counter()
        return left

    def admit(self, kind: str) -> bool:
        """Whether a line of ``kind`` may be logged (False: counted instead)."""
        if self.lines >= self.max_lines:
            self.suppressed[kind] += 1
            return False
        self.lines += 1
        return True


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
        self._window = LogWindow(clock, interval, max_lines)
        self._logged_hosts: set[str] = set()
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
        window = self._window
        window.interval, window.max_lines = self.interval, self.max_lines
        if window.start is None or self.clock.seconds() - window.start >= self.interval:
            self._new_window()
        host = host or source
        if host in self._logged_hosts or not window.admit(reason):
            if host in self._logged_hosts:
                window.suppressed[reason] += 1
            if len(self._suppressed_hosts) < MAX_SOURCES:
                self._suppressed_hosts.add(host)
            return
        self._logged_hosts.add(host)
        self._log_line(channel, source, reason, detail)

    def _log_line(self, channel: str, source: str, reason: str, detail: str) -> None:
        log.warn(
            "dropped bad {channel} input from {source}: {reason} ({detail})",
            channel=channel,
            source=source,
            reason=reason,
            detail=detail or "no detail",
        )

    def _new_window(self) -> None:
        """Sum up the last window's unlogged drops, if any; start a new one."""
        left = self._window.roll()
        if left is not None:
            suppressed, ago = left
            sources = len(self._suppressed_hosts)
            self._log_summary(
                count=sum(suppressed.values()),
                interval=self.interval,
                ago=ago,
                reasons=", ".join(
                    f"{reason}: {n}" for reason, n in suppressed.most_common()
                ),
                sources=f"{sources}+" if sources >= MAX_SOURCES else sources,
                plural="" if sources == 1 else "es",
            )
        self._logged_hosts.clear()
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


class OtherFamilyReporter:
    """Peers of the other address family, refused: one warning per peer, ever.

    ``report(peer_id)`` logs the first refusal of each peer (of the first
    ``MAX_SOURCES`` peers; the caller counts every refusal).
    """

    def __init__(self, address: str, family: str) -> None:
        self.address = address
        self.family = family
        self._warned: set[str] = set()

    def report(self, peer_id: str) -> None:
        if peer_id in self._warned or len(self._warned) >= MAX_SOURCES:
            return
        self._warned.add(peer_id)
        log.warn(
            "refused peer {peer}: it is not an {family} node, and this node"
            " ({address}) gossips over {family} only; it is not gossiped with"
            " nor tracked. Give every node of a cluster an address of the same"
            " family (see docs/membership.md)",
            peer=peer_id,
            family=self.family,
            address=self.address,
        )
