"""How many nodes new to us the joiners of one host may bring, sans-IO.

A joiner's Hello may add a few nodes this node did not know
(:data:`pokan.core.plausible.MAX_NEW_PER_MESSAGE`), but anyone can open TCP
connections and send Hellos. So the new nodes the Hellos of one source host
bring share a bucket that holds that many and refills at that many a
minute: a real joiner is never held back (it brings itself, and nodes the
cluster knows), a host sending Hellos of fake nodes adds at most 64 a
minute. Hosts are remembered up to a bound, the oldest forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

from pokan.core.plausible import MAX_NEW_PER_MESSAGE

#: seconds in which a host's bucket fills again
REFILL_SECONDS = 60.0
MAX_HOSTS = 4096


class JoinBudget:
    """Token buckets of new nodes, one per source host; time passed in."""

    def __init__(
        self,
        size: int = MAX_NEW_PER_MESSAGE,
        refill: float = REFILL_SECONDS,
        max_hosts: int = MAX_HOSTS,
    ) -> None:
        self.size = size
        self.rate = size / refill
        self.max_hosts = max_hosts
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def available(self, host: str, now: float) -> int:
        """New nodes a Hello from ``host`` may add now."""
        return int(self._level(host, now))

    def spend(self, host: str, count: int, now: float) -> None:
        """``host``'s Hello added ``count`` new nodes."""
        level = max(0.0, self._level(host, now) - count)
        self._buckets[host] = (level, now)
        self._buckets.move_to_end(host)
        while len(self._buckets) > self.max_hosts:
            self._buckets.popitem(last=False)

    def _level(self, host: str, now: float) -> float:
        known = self._buckets.get(host)
        if known is None:
            return float(self.size)
        level, since = known
        return min(float(self.size), level + (now - since) * self.rate)
