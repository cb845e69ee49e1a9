"""The documented bounds of the settings a user gives (docs/twistd.md#bounds).

Each check names the setting as the user gave it: ``--gossip-interval`` for
twistd, ``gossip_interval=`` for :class:`~pokan.Server`, ``gossip_every()``
for a setter.
"""

from __future__ import annotations

import math

import attrs

from pokan.errors import ConfigurationError


def shown(number: float) -> str:
    """A number as a message shows it: ``100``, ``0.5``, ``1e-09``."""
    number = float(number)
    if math.isfinite(number) and number.is_integer():
        return str(int(number))
    return repr(number)


@attrs.frozen
class Bound:
    """A setting's lowest and highest value; ``unit`` follows the numbers."""

    low: float
    high: float
    unit: str = " seconds"

    def check(self, value: object, name: str, low: str | None = None) -> float:
        """``value`` as a float within the bound, else ConfigurationError.

        ``low`` words the lower bound when it is not a fixed number.
        """
        number = _number(value, name, self.unit)
        if not self.low <= number <= self.high:
            raise ConfigurationError(
                f"{name} must be from {low or shown(self.low)} to"
                f" {shown(self.high)}{self.unit}, got {shown(number)}"
            )
        return number


def _number(value: object, name: str, unit: str) -> float:
    what = f"a number of{unit}" if unit else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigurationError(f"{name} must be {what}, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be {what}, got {value!r}") from None


#: below 10 ms the timer alone keeps a core busy; above a minute failures take
#: many minutes to find and a joiner's news crawls
GOSSIP_INTERVAL = Bound(0.01, 60.0)
#: from the gossip interval; above 5 minutes an idle cluster finds a failure
#: only after about an hour (phi threshold x idle interval)
IDLE_INTERVAL = Bound(0.01, 300.0)
#: a probe period: below 10 ms probes would flood; above a minute a death
#: takes minutes to find
PROBE_INTERVAL = Bound(0.01, 60.0)
#: a sync never needs less than 0.1 s on a sane network; a stalled peer holds
#: one of the few sync slots for at most 10 minutes
SYNC_TIMEOUT = Bound(0.1, 600.0)
#: below 1 a silent peer is convicted at the first late heartbeat (10% odds
#: of a false conviction); above 50 nothing is gained (the odds are nil
#: already at 16) but a dead peer stays alive for a very long time
PHI_THRESHOLD = Bound(1.0, 50.0, "")
#: a tenth of a second to a year: longer keeps every tombstone and every gone
#: node forever in practice (a unit mistake: milliseconds given as seconds)
TTL = Bound(0.1, 365 * 86400.0)
#: live peers per round: one at least; beyond 16 each round costs many
#: datagrams and spreads news no faster
FANOUT = Bound(1, 16, "")


def check_fanout(value: object, name: str) -> int:
    """A whole number of peers within :data:`FANOUT`."""
    if isinstance(value, float) and not value.is_integer():
        raise ConfigurationError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value, 10)
        except ValueError:
            raise ConfigurationError(
                f"{name} must be a whole number, got {value!r}"
            ) from None
    return int(FANOUT.check(value, name))


def check_idle(value: object, name: str, interval: float) -> float:
    """An idle interval: from the gossip interval to :data:`IDLE_INTERVAL`'s top."""
    idle = IDLE_INTERVAL.check(
        value, name, f"the gossip interval ({shown(interval)} s)"
    )
    if idle < interval:
        raise ConfigurationError(
            f"{name} must be from the gossip interval ({shown(interval)} s) to"
            f" {shown(IDLE_INTERVAL.high)} seconds, got {shown(idle)}"
        )
    return idle
