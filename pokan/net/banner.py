"""The start banner: the line a node logs once it listens, and its warnings.

Built here as plain :class:`Line` values; the Server logs them, so they
stay ``[pokan.net.server#info]`` (and ``#warn``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

import attrs
from twisted.logger import LogLevel

from pokan.core.address import format_host_port
from pokan.net.seeds import NO_OTHER_SEED
from pokan.net.settings import Settings


@attrs.frozen
class Line:
    """One log line: its level, its format and the format's fields."""

    level: LogLevel
    format: str
    fields: Mapping[str, object]


def start_lines(
    config: Settings,
    *,
    id: str,
    fanout: int,
    detector: str,
    store: str,
    handlers: Sequence[str],
    keys: str | None,
    control: str | None,
) -> list[Line]:
    """The banner of a node that listens, then its warnings.

    ``config``: the node's configuration with the ports as bound; ``keys``
    the keys that seal its gossip (None: unauthenticated); ``control`` where
    its control API listens (None: off).
    """
    seeds = other_seeds(config)
    engine = config.engine
    idle = engine.idle_pace
    lines = [
        Line(
            LogLevel.info,
            "pokan node {id} listening on {address} udp {udp} tcp {tcp}; gossip"
            " every {interval}s to {fanout} peers{idle}; {detector};"
            " max datagram {max_datagram}; seeds: {seeds}; store: {store};"
            " handlers: {handlers}; cluster {cluster}, gossip {seal}{control}",
            {
                "id": id,
                "address": config.address,
                "udp": config.udp_port,
                "tcp": config.tcp_port,
                "interval": engine.gossip_interval,
                "idle": (
                    ""
                    if idle == engine.gossip_interval
                    else f", every {idle}s to one peer when idle"
                ),
                "fanout": fanout,
                "detector": detector,
                "max_datagram": config.max_datagram,
                "seeds": ", ".join(format_host_port(*s) for s in seeds)
                or "none (acting as seed)",
                "store": store,
                "handlers": ", ".join(handlers) or "none",
                "cluster": config.cluster,
                "seal": "unauthenticated" if keys is None else f"sealed with {keys}",
                "control": "" if control is None else f"; control API on {control}",
            },
        )
    ]
    if keys is None and not ipaddress.ip_address(config.address).is_loopback:
        lines.append(
            Line(
                LogLevel.warn,
                "gossip is unauthenticated: anyone who can reach {address} can"
                " read this cluster's keys and values and inject their own. Give"
                " every node a key (--key-file, key_file=): see docs/security.md",
                {"address": config.address},
            )
        )
    if config.drop_rate:
        lines.append(
            Line(
                LogLevel.warn,
                "dropping {percent:g}% of the datagrams this node sends, on purpose"
                " (--drop-rate: for tests only)",
                {"percent": config.drop_rate * 100},
            )
        )
    if len(seeds) < len(config.seeds):
        lines.append(
            Line(
                LogLevel.warn,
                "seed {seed} is this node itself; ignored{rest}",
                {
                    "seed": format_host_port(config.address, config.tcp_port),
                    "rest": "" if seeds else NO_OTHER_SEED,
                },
            )
        )
    return lines


def other_seeds(config: Settings) -> list[tuple[str, int]]:
    """The seeds, without the node itself (its own address and TCP port)."""
    me = (config.address, config.tcp_port)
    return [s for s in config.seeds if s != me]
