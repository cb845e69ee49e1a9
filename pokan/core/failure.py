"""The phi-accrual failure detector (Hayashibara et al., 2004), sans-IO.

For every other node it keeps a bounded window of the intervals between
arrivals of that node's heartbeat (an arrival is any message that shows the
heartbeat counter higher than before). As Cassandra and chitchat do, it
models the intervals as exponentially distributed: the chance that a live
node stays silent for ``elapsed`` seconds is ``exp(-elapsed / mean)``, and
the suspicion level is its negative logarithm, in natural-log units as
chitchat computes it::

    phi = elapsed / mean_interval

A node is convicted once ``phi > threshold``: with the default threshold of
8, after 8 mean intervals of silence (a live node stays that silent with a
chance of e^-8, about 3 in 10,000 silences). Time is passed in.

A node never convicts after its own event loop stalled (a long GC pause, a
suspended VM, a handler that blocked): :meth:`PhiAccrualDetector.tick` is
called once per gossip round and, when rounds were delayed by far more than
the interval, every window restarts from ``now`` instead of counting the
stall as silence. That holds from the first round: the first tick is
measured from :meth:`~PhiAccrualDetector.start` (or, without it, from the
first window opened).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import attrs

DEFAULT_THRESHOLD = 8.0
DEFAULT_WINDOW = 100


def check_threshold(value: object) -> float:
    """A phi threshold: a positive, finite number."""
    if isinstance(value, bool):
        raise ValueError(f"phi threshold must be a number, got {value!r}")
    try:
        threshold = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"phi threshold must be a number, got {value!r}") from None
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"phi threshold must be a positive number, got {value!r}")
    return threshold


@attrs.define
class _Window:
    """Recent inter-arrival times of one node's heartbeat."""

    last: float
    intervals: deque[float]
    total: float = 0.0

    def add(self, interval: float) -> None:
        if len(self.intervals) == self.intervals.maxlen:
            self.total -= self.intervals[0]
        self.intervals.append(interval)
        self.total += interval

    @property
    def mean(self) -> float:
        return self.total / len(self.intervals)


class PhiAccrualDetector:
    """Phi-accrual suspicion per node, fed arrival times, asked at time ``t``.

    ``interval`` is the gossip interval: a new window starts with one interval
    of that length (so a node heard once is convicted after about
    ``threshold`` gossip intervals of silence); intervals longer
    than ``max_interval`` (a node coming back, a partition healing) are not
    recorded; ``min_mean`` keeps bursts of arrivals from making the detector
    jumpy. ``pause_factor``: checks (one per round) more than that many
    intervals apart, a stall of over 1.5 rounds, mean this
    node itself stalled.
    """

    def __init__(
        self,
        interval: float,
        threshold: float = DEFAULT_THRESHOLD,
        window: int = DEFAULT_WINDOW,
        max_interval: float | None = None,
        min_mean: float | None = None,
        pause_factor: float = 2.5,
    ) -> None:
        self.interval = interval
        self.threshold = check_threshold(threshold)
        self.window = window
        self.max_interval = max_interval if max_interval is not None else 10 * interval
        self.min_mean = min_mean if min_mean is not None else interval / 4
        self.pause_factor = pause_factor
        self.pauses = 0
        self._windows: dict[str, _Window] = {}
        self._last_tick: float | None = None
        #: when the first window opened: pause detection before any tick
        self._first_window: float | None = None

    def __contains__(self, node_id: str) -> bool:
        return node_id in self._windows

    def __len__(self) -> int:
        return len(self._windows)

    def heartbeat(self, node_id: str, now: float) -> None:
        """Record an arrival of ``node_id``'s heartbeat at ``now``."""
        window = self._windows.get(node_id)
        if window is None:
            self._windows[node_id] = self._new_window(now)
            if self._first_window is None:
                self._first_window = now
            return
        elapsed = now - window.last
        if elapsed < 0:
            return  # a clock that went back: keep the later arrival
        if elapsed <= self.max_interval:
            window.add(elapsed)
        window.last = now

    def phi(self, node_id: str, now: float) -> float:
        """The suspicion level of ``node_id`` at ``now``; 0 if never heard."""
        window = self._windows.get(node_id)
        if window is None:
            return 0.0
        elapsed = max(0.0, now - window.last)
        return elapsed / max(window.mean, self.min_mean)

    def silence(self, node_id: str, now: float) -> float:
        """Seconds since ``node_id``'s last heartbeat arrival; 0 if never heard."""
        window = self._windows.get(node_id)
        return 0.0 if window is None else max(0.0, now - window.last)

    def silent_until(self, node_ids: Iterable[str]) -> float:
        """A time before which none of ``node_ids`` can be over the threshold.

        Arrivals only move a window's last arrival later, and no mean counts
        for less than ``min_mean``: so until then nobody needs asking.
        """
        windows = self._windows
        lasts = [windows[n].last for n in node_ids if n in windows]
        if not lasts:
            # nobody to bound: a window opened later must be asked about
            return -math.inf
        return min(lasts) + self.threshold * self.min_mean

    def is_dead(self, node_id: str, now: float) -> bool:
        return self.phi(node_id, now) > self.threshold

    def dead(self, node_ids: Iterable[str], now: float) -> list[str]:
        """Those of ``node_ids`` whose phi is above the threshold at ``now``."""
        return [n for n in node_ids if self.is_dead(n, now)]

    def forget(self, node_id: str) -> None:
        self._windows.pop(node_id, None)

    def start(self, now: float) -> None:
        """This node's rounds start now: the first :meth:`tick` is measured
        from here, so a stall before the first round is a pause too."""
        self._last_tick = now

    def tick(self, now: float) -> bool:
        """Note one of our own rounds; False (and windows reset) after a pause.

        Call it before asking who is dead: when this node's own rounds were
        delayed by more than ``pause_factor`` intervals, nobody is convicted
        for the silence this node caused itself.
        """
        last, self._last_tick = self._last_tick, now
        if last is None:  # not started: measured from its first window on
            last = self._first_window
        if last is None or now - last <= self.pause_factor * self.interval:
            return True
        self.pauses += 1
        self.reset(now)
        return False

    def reset(self, now: float) -> None:
        """Restart every window at ``now``, keeping what was learnt of the mean."""
        for window in self._windows.values():
            window.last = now

    def _new_window(self, now: float) -> _Window:
        window = _Window(now, deque(maxlen=self.window))
        window.add(self.interval)
        return window
