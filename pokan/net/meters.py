"""What a node measures as it runs, for ``/metrics`` (pokan.control.metrics).

The gossip socket counts messages and bytes by message type and times each
exchange (a Syn sent, its SynAck back); the node times its full syncs. Plain
counters, and :class:`Timings` (a histogram's buckets, sum and count): the
node's own collector (:mod:`pokan.control.metrics`) turns them into
prometheus-client histograms at scrape time, so several nodes in one
process never share one and a node that serves no metrics never imports
prometheus-client (about a megabyte of a node's memory).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

from pokan import wire
from pokan.core.node import Address

#: seconds: loopback exchanges take well under a millisecond, WANs tens of ms
RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: seconds: a small state syncs in milliseconds, 18 MB in about one second
SYNC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Syns awaiting their SynAck, at most (a round opens ``fanout`` of them)
MAX_OPEN_EXCHANGES = 256


class Timings:
    """Durations counted into buckets: a Prometheus histogram's figures.

    ``buckets``: the upper bounds, ascending (an observation equal to a
    bound falls in its bucket, as Prometheus counts ``le``).
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]):
        self.name = name
        self.documentation = documentation
        self.buckets = buckets
        #: observations per bucket, and above the last one
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations at or below it)``, +inf last."""
        total, out = 0, []
        bounds = (*self.buckets, float("inf"))
        for bound, count in zip(bounds, self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


def type_name(message: wire.Message) -> str:
    """The message's type as a metric label: syn, syn_ack, ack, goodbye..."""
    return wire.kind_of(message).name.lower()


class Traffic:
    """Gossip datagrams by message type, and exchange round trips."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.sent_bytes: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.received_bytes: Counter[str] = Counter()
        #: exchanges whose SynAck came back
        self.exchanges = 0
        self.exchange_rtt = Timings(
            "pokan_exchange_rtt_seconds",
            "Seconds from a Syn sent to its SynAck received.",
            RTT_BUCKETS,
        )
        #: destination -> when its Syn went, oldest first
        self._open: dict[Address, float] = {}

    def on_sent(
        self, message: wire.Message, size: int, address: Address, now: float
    ) -> None:
        kind = type_name(message)
        self.sent[kind] += 1
        self.sent_bytes[kind] += size
        if isinstance(message, wire.Syn):
            self._open.pop(address, None)
            self._open[address] = now
            if len(self._open) > MAX_OPEN_EXCHANGES:
                del self._open[next(iter(self._open))]

    def on_received(
        self, message: wire.Message, size: int, address: Address, now: float
    ) -> None:
        kind = type_name(message)
        self.received[kind] += 1
        self.received_bytes[kind] += size
        if isinstance(message, wire.SynAck):
            started = self._open.pop(address, None)
            if started is not None and now >= started:
                self.exchanges += 1
                self.exchange_rtt.observe(now - started)


class Syncs:
    """Full syncs over TCP: those this node opened (timed) and answered."""

    def __init__(self) -> None:
        #: syncs this node opened, by outcome: ok or failed
        self.done: Counter[str] = Counter()
        #: Hellos this node answered (other nodes' syncs with it)
        self.answered = 0
        self.duration = Timings(
            "pokan_full_sync_duration_seconds",
            "Seconds a full sync this node opened took, from connect to merged.",
            SYNC_BUCKETS,
        )

    def finished(self, seconds: float, ok: bool) -> None:
        self.done["ok" if ok else "failed"] += 1
        if ok and seconds >= 0:
            self.duration.observe(seconds)


class Meters:
    """One node's measurements: its traffic and its syncs."""

    def __init__(self) -> None:
        self.traffic = Traffic()
        self.syncs = Syncs()
