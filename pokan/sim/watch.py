"""What the simulator measures while it runs: spreads and convictions.

A *spread* is a fact (a fresh write, a death) from the moment it became true
until every node waited for holds it: :class:`Spreads` is told after every
event a node handled and asks that node only. :class:`Convictions` reads the
membership transitions every node reports and sorts its ``peer_dead``
events: of a node killed (right), of a node stalled at that moment, and of
a node running (a false conviction).
"""

from __future__ import annotations

import math
import resource
from collections.abc import Callable, Collection, Iterable, Sequence

import attrs


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, in MB (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (inf for no values)."""
    if not values:
        return math.inf
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


#: a fact's name: its kind ("write", "kill"), then what tells it apart
FactKey = tuple[str, object]


@attrs.define
class _Fact:
    start: float
    waiting: set[int]
    holds: Callable[[int], bool]


class Spreads:
    """Facts spreading; the rounds each took to reach every node waited for."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._pending: dict[FactKey, _Fact] = {}
        #: rounds each finished fact took, by kind (the key's first item)
        self.rounds: dict[str, list[float]] = {}
        #: per node: the facts it is waited for in (checks ask only those)
        self._waits: dict[int, set[FactKey]] = {}

    def start(
        self,
        key: FactKey,
        at: float,
        waiting: Iterable[int],
        holds: Callable[[int], bool],
    ) -> None:
        """Fact ``key`` holds from ``at``; wait for ``waiting`` to learn it."""
        self.rounds.setdefault(key[0], [])
        fact = _Fact(at, {i for i in waiting if not holds(i)}, holds)
        self._pending[key] = fact
        for index in fact.waiting:
            self._waits.setdefault(index, set()).add(key)
        self._settle(key, at)

    def check(self, index: int, now: float) -> None:
        """Node ``index`` handled something at ``now``: does it hold its facts?"""
        keys = self._waits.get(index)
        if not keys:
            return
        for key in [k for k in keys if self._pending[k].holds(index)]:
            keys.discard(key)
            self._pending[key].waiting.discard(index)
            self._settle(key, now)

    def drop(self, index: int, now: float) -> None:
        """Stop waiting for node ``index`` (it died, or stalled)."""
        for key in self._waits.pop(index, ()):
            self._pending[key].waiting.discard(index)
            self._settle(key, now)

    def _settle(self, key: FactKey, now: float) -> None:
        fact = self._pending[key]
        if not fact.waiting:
            del self._pending[key]
            self.rounds[key[0]].append((now - fact.start) / self.interval)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def unfinished(self, kind: str) -> int:
        return sum(1 for key in self._pending if key[0] == kind)


class Convictions:
    """Every ``peer_dead`` one node reported of another, sorted by what the
    convicted node was doing at that moment."""

    def __init__(
        self,
        killed: Collection[int],
        stalled: Callable[[int], bool],
        sample: int = 20,
    ) -> None:
        #: nodes killed so far (shared with the simulation, which adds to it)
        self.killed = killed
        self.stalled = stalled
        #: (observer, node) pairs: a running node held dead (false)
        self.false: set[tuple[int, int]] = set()
        #: (observer, node) pairs: a node convicted while it was stalled
        self.of_stalled: set[tuple[int, int]] = set()
        #: (observer, node): a killed node convicted (right)
        self.right: set[tuple[int, int]] = set()
        #: a killed node held alive again after it was convicted
        self.revived = 0
        #: node -> when it last woke from a stall (set by the driver)
        self.resumed_at: dict[int, float] = {}
        #: false pairs whose node had stalled before (woke, then convicted)
        self.false_after_stall: set[tuple[int, int]] = set()
        #: the first false convictions, for a reader: (observer, node, time,
        #: seconds since the node last woke from a stall or None)
        self.examples: list[tuple[int, int, float, float | None]] = []
        self._sample = sample

    def transition(self, observer: int, event: str, node: int, now: float) -> None:
        """Observer ``observer`` reported ``event`` about ``node`` at ``now``."""
        pair = (observer, node)
        if event == "peer_dead":
            if node in self.killed:
                self.right.add(pair)
            elif self.stalled(node):
                self.of_stalled.add(pair)
            else:
                woke = self.resumed_at.get(node)
                if pair not in self.false and len(self.examples) < self._sample:
                    since = None if woke is None else now - woke
                    self.examples.append((observer, node, now, since))
                self.false.add(pair)
                if woke is not None:
                    self.false_after_stall.add(pair)
        elif event in ("peer_alive", "peer_joined") and pair in self.right:
            self.revived += 1
