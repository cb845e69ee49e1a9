"""The Engine's settings: one frozen value, checked once (sans-IO).

:class:`EngineSettings` holds what the sans-IO :class:`~pokan.core.engine.Engine`
decides with. The node's whole configuration (:class:`pokan.settings.Settings`)
holds one, beside what only the Twisted shell needs (ports, seeds, keys).
:meth:`EngineSettings.checked` validates raw values and raises one error type,
:class:`~pokan.errors.ConfigurationError`, whose message names the option as
the user gave it (``gossip_interval=`` for the Server, ``--gossip-interval``
for twistd: see :data:`API_NAMES`).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from pokan import wire
from pokan.core import bounds, plausible
from pokan.core.failure import DEFAULT_THRESHOLD
from pokan.errors import ConfigurationError

DEFAULT_INTERVAL = 1.0
#: live peers gossiped with per round (chitchat uses 3, Cassandra 1)
DEFAULT_FANOUT = 3
DEFAULT_TOMBSTONE_TTL = 3600.0
DEFAULT_DEAD_NODE_TTL = 86400.0
DEFAULT_SYNC_TIMEOUT = 10.0
#: the failure detectors there are (see pokan.core.detection)
FAILURE_DETECTORS = ("swim", "phi")
DEFAULT_FAILURE_DETECTOR = "swim"
#: with SWIM and no idle interval given, an idle node opens its exchanges
#: once every this many seconds, or every DEFAULT_IDLE_ROUNDS gossip
#: intervals if that is longer: its probes find failures, the gossip of a
#: write runs every interval, and the idle exchanges only repair what both
#: missed (memberlist's push-pull runs every 30 s)
DEFAULT_IDLE_PACE = 20.0
DEFAULT_IDLE_ROUNDS = 10
#: with no probe interval given, SWIM probes once every this many seconds,
#: or twice per gossip interval if that is slower: each probe costs an idle
#: node wakeups, and the cluster as a whole still probes a dead node about
#: once a period, whatever N (docs/membership.md)
MIN_DEFAULT_PROBE_PERIOD = 2.0
#: a probe's stages (its timeout, a helper's nack, its end) are shares of
#: half the gossip interval but at least this many seconds, or of the probe
#: period if that is shorter: probes far apart fail as fast as close ones
MIN_PROBE_STAGE_PERIOD = 0.5

#: how the Server's keyword arguments name each setting in messages
API_NAMES: Mapping[str, str] = {
    "gossip_interval": "gossip_interval=",
    "idle_interval": "idle_interval=",
    "probe_interval": "probe_interval=",
    "fanout": "gossip_fanout=",
    "max_datagram": "max_datagram=",
    "max_nodes": "max_nodes=",
    "phi_threshold": "phi_threshold=",
    "tombstone_ttl": "tombstone_ttl=",
    "dead_node_ttl": "dead_node_ttl=",
    "sync_timeout": "sync_timeout=",
    "failure_detector": "failure_detector=",
}


def given(name: str, value: object) -> str:
    """A setting as the user gives it, by ``name``: ``max_datagram=1400`` (a
    keyword), ``--max-datagram 1400`` (an option)."""
    return f"{name}{value}" if name.endswith("=") else f"{name} {value}"


def check_interval(seconds: object, name: str = "gossip_interval=") -> float:
    """A gossip interval within :data:`pokan.core.bounds.GOSSIP_INTERVAL`."""
    return bounds.GOSSIP_INTERVAL.check(seconds, name)


def check_fanout(fanout: object, name: str = "gossip_fanout=") -> int:
    """Live peers per round: a whole number within :data:`pokan.core.bounds.FANOUT`."""
    return bounds.check_fanout(fanout, name)


def check_idle_interval(
    seconds: object, interval: float, name: str = "idle_interval="
) -> float | None:
    """An idle interval: None (the gossip interval), or from that to 300 s."""
    if seconds is None:
        return None
    return bounds.check_idle(seconds, name, interval)


def check_probe_interval(
    seconds: object, name: str = "probe_interval="
) -> float | None:
    """A probe period: None (from the gossip interval), or 0.01 to 60 s."""
    if seconds is None:
        return None
    return bounds.PROBE_INTERVAL.check(seconds, name)


def check_max_datagram(size: object, name: str = "max_datagram=") -> int:
    """A datagram size from :data:`wire.MIN_DATAGRAM` to the UDP payload's."""
    if isinstance(size, bool) or not isinstance(size, int):
        try:
            size = int(str(size), 10)
        except ValueError:
            raise ConfigurationError(
                f"{name} must be a number of bytes, got {size!r}"
            ) from None
    if not wire.MIN_DATAGRAM <= size <= wire.MAX_UDP_PAYLOAD:
        raise ConfigurationError(
            f"{name} must be from {wire.MIN_DATAGRAM} to"
            f" {wire.MAX_UDP_PAYLOAD} bytes, got {size}"
        )
    return size


def check_ttl(value: object, what: str) -> float:
    """A TTL within :data:`pokan.core.bounds.TTL`."""
    return bounds.TTL.check(value, what)


#: the API's names of the membership settings, for its messages
MEMBERSHIP_NAMES = ("phi_threshold=", "tombstone_ttl=", "dead_node_ttl=")


def check_membership_options(
    phi_threshold: object,
    tombstone_ttl: object,
    dead_node_ttl: object,
    names: tuple[str, str, str] = MEMBERSHIP_NAMES,
) -> tuple[float, float, float]:
    """Validate the membership settings; ConfigurationError names the bad one."""
    return (
        bounds.PHI_THRESHOLD.check(phi_threshold, names[0]),
        check_ttl(tombstone_ttl, names[1]),
        check_ttl(dead_node_ttl, names[2]),
    )


def check_failure_detector(kind: object, name: str = "failure_detector=") -> str:
    """One of :data:`FAILURE_DETECTORS`."""
    if kind not in FAILURE_DETECTORS:
        raise ConfigurationError(
            f"{name} must be one of {', '.join(FAILURE_DETECTORS)}, got {kind!r}"
        )
    return str(kind)


@attrs.frozen
class EngineSettings:
    """What the Engine decides with; build it checked with :meth:`checked`.

    The defaults are valid. Change one with :func:`attrs.evolve` on a value
    checked already, or check again with :meth:`checked`.
    """

    gossip_interval: float = DEFAULT_INTERVAL
    #: None: :data:`DEFAULT_IDLE_PACE` seconds (or more) with SWIM, the
    #: gossip interval (no idle pace) with phi; see :attr:`idle_pace`
    idle_interval: float | None = None
    #: SWIM's probe period in seconds; None: see :attr:`probe_period`
    probe_interval: float | None = None
    fanout: int = DEFAULT_FANOUT
    max_datagram: int = wire.DEFAULT_MAX_DATAGRAM
    max_nodes: int = plausible.DEFAULT_MAX_NODES
    phi_threshold: float = DEFAULT_THRESHOLD
    tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL
    dead_node_ttl: float = DEFAULT_DEAD_NODE_TTL
    #: a reset sync with a peer is asked again after max(10 rounds, this)
    sync_timeout: float = DEFAULT_SYNC_TIMEOUT
    failure_detector: str = DEFAULT_FAILURE_DETECTOR

    @property
    def idle_pace(self) -> float:
        """Seconds between the exchanges of an idle node: the idle interval
        given, else with SWIM :data:`DEFAULT_IDLE_PACE` seconds or
        :data:`DEFAULT_IDLE_ROUNDS` gossip intervals, whichever is longer
        (its probes find failures, not the gossip), and with phi the gossip
        interval (which convicts on the heartbeats the gossip carries)."""
        if self.idle_interval is not None:
            return self.idle_interval
        if self.failure_detector == "swim":
            return max(self.gossip_interval * DEFAULT_IDLE_ROUNDS, DEFAULT_IDLE_PACE)
        return self.gossip_interval

    @property
    def idle_rounds(self) -> int:
        """Gossip rounds per idle exchange (1: no idle pace)."""
        return max(1, round(self.idle_pace / self.gossip_interval))

    @property
    def probe_period(self) -> float:
        """Seconds between SWIM's probes: the probe interval given, else half
        the gossip interval but at least :data:`MIN_DEFAULT_PROBE_PERIOD`
        (a fast gossip interval speeds writes, not probes; a probe's own
        timeouts keep a shorter period: :attr:`probe_stage_period`)."""
        if self.probe_interval is not None:
            return self.probe_interval
        return max(self.gossip_interval / 2, MIN_DEFAULT_PROBE_PERIOD)

    @property
    def probe_stage_period(self) -> float:
        """What a SWIM probe's timeouts are shares of (0.4 of it for the
        direct probe, 0.25 for a helper's nack, 0.9 for the probe's end):
        the probe period, but no more than half the gossip interval or
        :data:`MIN_PROBE_STAGE_PERIOD` seconds if that is more, so that a
        slow probe pace (fewer wakeups) does not slow a failed probe."""
        stage = max(self.gossip_interval / 2, MIN_PROBE_STAGE_PERIOD)
        return min(self.probe_period, stage)

    @classmethod
    def checked(
        cls, names: Mapping[str, str] = API_NAMES, **raw: object
    ) -> EngineSettings:
        """Settings from raw values (the defaults for those not given), checked.

        ConfigurationError names the first bad one as ``names`` says (by
        default, or for those it does not name, as :data:`API_NAMES` does).
        """
        names = {**API_NAMES, **names}
        unknown = set(raw) - set(attrs.fields_dict(cls))
        if unknown:
            raise TypeError(f"unknown engine settings: {', '.join(sorted(unknown))}")
        default = cls()
        value = {f: raw.get(f, getattr(default, f)) for f in attrs.fields_dict(cls)}
        interval = check_interval(value["gossip_interval"], names["gossip_interval"])
        return cls(
            gossip_interval=interval,
            idle_interval=check_idle_interval(
                value["idle_interval"], interval, names["idle_interval"]
            ),
            probe_interval=check_probe_interval(
                value["probe_interval"], names["probe_interval"]
            ),
            fanout=check_fanout(value["fanout"], names["fanout"]),
            max_datagram=check_max_datagram(
                value["max_datagram"], names["max_datagram"]
            ),
            max_nodes=plausible.check_max_nodes(value["max_nodes"]),
            phi_threshold=bounds.PHI_THRESHOLD.check(
                value["phi_threshold"], names["phi_threshold"]
            ),
            tombstone_ttl=check_ttl(value["tombstone_ttl"], names["tombstone_ttl"]),
            dead_node_ttl=check_ttl(value["dead_node_ttl"], names["dead_node_ttl"]),
            sync_timeout=bounds.SYNC_TIMEOUT.check(
                value["sync_timeout"], names["sync_timeout"]
            ),
            failure_detector=check_failure_detector(
                value["failure_detector"], names["failure_detector"]
            ),
        )
