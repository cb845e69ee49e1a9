"""Injected network faults, for tests and benchmarks only.

A :class:`Faults` sits between a Server and its UDP socket: it can drop a
share of the datagrams sent (seeded, so runs repeat) and cut all traffic to
and from chosen addresses (a partition). A production node leaves it empty.
"""

from __future__ import annotations

import contextlib
import math
import random

from pokan.errors import ConfigurationError

Address = tuple[str, int]


def check_drop_rate(rate: object, name: str = "drop_rate=") -> float:
    """A share of datagrams, 0 to 1 (a number or its text)."""
    value = math.nan
    if not isinstance(rate, bool) and isinstance(rate, int | float | str):
        with contextlib.suppress(ValueError):
            value = float(rate)
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ConfigurationError(f"{name} must be a number from 0 to 1, got {rate!r}")
    return value


class Faults:
    """Which datagrams to lose: a random share, and any to or from ``blocked``."""

    def __init__(self, drop_rate: float = 0.0, rng: random.Random | None = None):
        self.drop_rate = check_drop_rate(drop_rate)
        self.rng = rng if rng is not None else random.Random(0)
        self.blocked: set[Address] = set()
        self.dropped = 0

    def blocks(self, address: Address) -> bool:
        """True (and counted) if traffic with ``address`` is cut."""
        if self.blocked and (address[0], address[1]) in self.blocked:
            self.dropped += 1
            return True
        return False

    def drops(self, address: Address) -> bool:
        """True (and counted) if a datagram sent to ``address`` is to be lost."""
        if self.blocks(address):
            return True
        if self.drop_rate and self.rng.random() < self.drop_rate:
            self.dropped += 1
            return True
        return False
