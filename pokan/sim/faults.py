"""Injected network faults, for tests and benchmarks only.

A :class:`Faults` sits between a Server and its UDP socket: it can drop a
share of the datagrams sent (seeded, so runs repeat) and cut all traffic to
and from chosen addresses (a partition). A production node leaves it empty.

The simulator's node faults are plans, drawn from a seeded ``random.Random``:
:func:`plan_kills` (nodes that go silent for good, ``--kill``) and
:func:`plan_pauses` (nodes that stop processing for a while and then resume,
Lifeguard's slow node, ``--pause F:R``); the simulator carries them out.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection

import attrs

Address = tuple[str, int]


def check_drop_rate(rate: object) -> float:
    if isinstance(rate, bool) or not isinstance(rate, int | float | str):
        raise ValueError(f"drop rate must be a number from 0 to 1, got {rate!r}")
    try:
        value = float(rate)
    except ValueError:
        raise ValueError(
            f"drop rate must be a number from 0 to 1, got {rate!r}"
        ) from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"drop rate must be a number from 0 to 1, got {rate!r}")
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


# -- the simulator's faults: nodes that die, nodes that stall -------------------


@attrs.frozen
class Kill:
    """Node ``index`` goes silent for good at virtual time ``at``."""

    index: int
    at: float


@attrs.frozen
class Pause:
    """Node ``index`` processes nothing from ``start`` until ``end``."""

    index: int
    start: float
    end: float


def parse_pause(text: str) -> tuple[float, float]:
    """``F:R`` (a fraction of the nodes, rounds per pause) as numbers."""
    fraction, sep, rounds = text.partition(":")
    try:
        share, length = float(fraction), float(rounds)
    except ValueError:
        share = length = math.nan
    if (
        not (sep and math.isfinite(share) and 0 <= share <= 1 and math.isfinite(length))
        or length <= 0
    ):
        raise ValueError(
            f"--pause takes F:R, a fraction from 0 to 1 and a number of rounds"
            f" above 0 (e.g. 0.01:5), got {text!r}"
        )
    return share, length


def plan_kills(
    rng: random.Random,
    n: int,
    count: int,
    start: float,
    end: float,
    spare: Collection[int] = (),
) -> list[Kill]:
    """``count`` distinct nodes (none of ``spare``), each killed at a uniform
    random time in [start, end); in time order."""
    choices = [i for i in range(n) if i not in spare]
    if count > len(choices) - 1:
        raise ValueError(f"cannot kill {count} of {n} nodes and keep one alive")
    victims = rng.sample(choices, count)
    return sorted(
        (Kill(i, rng.uniform(start, end)) for i in victims), key=lambda k: k.at
    )


def plan_pauses(
    rng: random.Random,
    n: int,
    fraction: float,
    length: float,
    start: float,
    end: float,
    spare: Collection[int] = (),
) -> list[Pause]:
    """Lifeguard's slow nodes: ``round(fraction * n)`` nodes (none of
    ``spare``), each stalled for ``length`` seconds at a time, again and again.

    Each one's first stall starts at a uniform random time within one stall
    cycle of ``start``; between two stalls it runs for a uniform random 1 to
    3 stall lengths. No stall starts at or after ``end``. In time order.
    """
    count = round(fraction * n)
    choices = [i for i in range(n) if i not in spare]
    pauses: list[Pause] = []
    for index in rng.sample(choices, min(count, len(choices))):
        at = start + rng.uniform(0, 3 * length)
        while at < end:
            pauses.append(Pause(index, at, at + length))
            at += length + rng.uniform(length, 3 * length)
    pauses.sort(key=lambda p: p.start)
    return pauses
