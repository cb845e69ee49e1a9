"""The simulator's node faults: plans drawn from a seeded ``random.Random``.

:func:`plan_kills` (nodes that go silent for good, ``--kill``) and
:func:`plan_pauses` (nodes that stop processing for a while and then resume,
Lifeguard's slow node, ``--pause F:R``); the simulator carries them out.
A real node's datagram faults (``--drop-rate``, partitions) are
:class:`pokan.net.faults.Faults`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection

import attrs


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
