"""A node's whole configuration: one frozen value, checked once.

:class:`Settings` holds what the Twisted shell needs (address, ports, seeds,
TCP sync limits, cluster name, keys, handler timeout) and the
:class:`~pokan.core.settings.EngineSettings` the sans-IO Engine decides
with. :meth:`Settings.checked` validates raw values once and raises one
error type, :class:`~pokan.errors.ConfigurationError`, naming the option as
the caller calls it: :data:`API_NAMES` for the Server's keywords,
``pokan.daemon.tap.FLAG_NAMES`` for twistd's flags. Errors raised later,
once the node runs, take the same names (:class:`pokan.errors.NamesSettings`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from pokan import wire
from pokan.core import bounds, plausible
from pokan.core.address import (
    DEFAULT_PORT,
    check_ip,
    check_port,
    check_seed_family,
    parse_host_port,
    parse_seeds,
)
from pokan.core.durations import check_seconds
from pokan.core.settings import API_NAMES as ENGINE_NAMES
from pokan.core.settings import (
    DEFAULT_SYNC_TIMEOUT,
    EngineSettings,
    check_max_datagram,
)
from pokan.errors import ConfigurationError
from pokan.net.events import DEFAULT_HANDLER_TIMEOUT
from pokan.net.faults import check_drop_rate
from pokan.net.protocols import (
    DEFAULT_MAX_HELLO,
    DEFAULT_MAX_SYNC_CONNECTIONS,
    DEFAULT_MAX_SYNC_PER_HOST,
)

#: the TCP frame's length prefix (pokan.wire.framing): four bytes, unsigned
MAX_FRAME_LIMIT = 2**32 - 1

#: how the Server's keyword arguments name each setting in messages
API_NAMES: Mapping[str, str] = {
    **ENGINE_NAMES,
    "address": "address",
    "seeds": "gossip_with=",
    "tcp_port": "tcp_port=",
    "udp_port": "udp_port=",
    "max_frame": "max_frame=",
    "max_hello": "max_hello=",
    "max_sync_connections": "max_sync_connections=",
    "max_sync_per_host": "max_sync_per_host=",
    "max_nodes": "max_nodes=",
    "handler_timeout": "handler_timeout=",
    "cluster": "cluster=",
    "drop_rate": "drop_rate=",
}


def check_max_frame(size: object, max_datagram: int, name: str = "max_frame=") -> int:
    """A TCP sync frame limit: room for any one write (a datagram's worth)."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise ConfigurationError(f"{name} must be a number of bytes, got {size!r}")
    if not max_datagram <= size <= MAX_FRAME_LIMIT:
        raise ConfigurationError(
            f"{name} must be from the max datagram ({max_datagram}) to"
            f" {MAX_FRAME_LIMIT} bytes, got {size}: a frame of the full sync must"
            " hold any one write"
        )
    return size


def check_max_hello(
    size: object, max_datagram: int, max_frame: int, name: str = "max_hello="
) -> int:
    """The largest Hello read: room for one write, at most a frame."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise ConfigurationError(f"{name} must be a number of bytes, got {size!r}")
    if not max_datagram <= size <= max_frame:
        raise ConfigurationError(
            f"{name} must be from the max datagram ({max_datagram}) to the max"
            f" frame ({max_frame}) bytes, got {size}"
        )
    return size


def check_sync_cap(count: object, what: str) -> int:
    """A cap on inbound sync connections: a whole number from 1."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigurationError(f"{what} must be a whole number from 1, got {count!r}")
    return count


def check_max_nodes(value: object, name: str) -> int:
    """``max_nodes``: a whole number of at least 2."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ConfigurationError(
            f"{name} must be a whole number of at least 2, got {value!r}"
        )
    return value


def check_cluster(cluster: object, name: str = "cluster=") -> str:
    """A cluster name as :func:`pokan.wire.check_cluster` takes it."""
    try:
        return wire.check_cluster(cluster)
    except ConfigurationError:
        raise ConfigurationError(
            f"{name} must be 1 to {wire.MAX_CLUSTER_LEN} letters, digits, '.',"
            f" '_' or '-', got {cluster!r}"
        ) from None


def check_seeds(
    seeds: object, address: str, name: str = "gossip_with="
) -> tuple[tuple[str, int], ...]:
    """Seeds (``HOST:PORT``, a comma-separated text, or a list of them) of
    ``address``'s family."""
    if seeds is None:
        return ()
    if isinstance(seeds, str):
        parsed = parse_seeds(seeds)
    else:
        parsed = [parse_host_port(s) for s in seed_list(seeds, name)]
    check_seed_family(parsed, address)
    return tuple(parsed)


def seed_list(seeds: object, name: str) -> list[str]:
    """``seeds`` as a list of texts; ConfigurationError, saying the form
    expected, for anything else (a port alone, bytes, a list of numbers)."""
    if isinstance(seeds, Iterable) and not isinstance(seeds, bytes | bytearray):
        items = list(seeds)
        wrong = [s for s in items if not isinstance(s, str)]
        if not wrong:
            return items
        got = f"{wrong[0]!r} ({type(wrong[0]).__name__}) in {items!r}"
    else:
        got = f"{seeds!r} ({type(seeds).__name__})"
    raise ConfigurationError(
        f'{name} must be a "HOST:PORT" string or a list of them, such as'
        f' "10.0.0.9:{DEFAULT_PORT}" or ["10.0.0.9:{DEFAULT_PORT}", "10.0.0.10"]'
        f" (the seeds' TCP port, {DEFAULT_PORT} if left out), got {got}"
    )


@attrs.frozen
class Settings:
    """A node's configuration; build it checked with :meth:`checked`."""

    address: str
    tcp_port: int = DEFAULT_PORT
    udp_port: int = DEFAULT_PORT
    #: seeds to join through: (host, TCP port)
    seeds: tuple[tuple[str, int], ...] = ()
    max_frame: int = wire.DEFAULT_MAX_FRAME
    max_hello: int = DEFAULT_MAX_HELLO
    max_sync_connections: int = DEFAULT_MAX_SYNC_CONNECTIONS
    max_sync_per_host: int = DEFAULT_MAX_SYNC_PER_HOST
    cluster: str = wire.DEFAULT_CLUSTER
    key_file: str | None = None
    #: testing and benchmarks only: a share of datagrams dropped on purpose
    drop_rate: float = 0.0
    handler_timeout: float = DEFAULT_HANDLER_TIMEOUT
    engine: EngineSettings = attrs.field(factory=EngineSettings)

    @property
    def sync_timeout(self) -> float:
        return self.engine.sync_timeout

    @property
    def max_datagram(self) -> int:
        return self.engine.max_datagram

    @classmethod
    def checked(
        cls,
        names: Mapping[str, str] = API_NAMES,
        *,
        any_port: bool = True,
        address: object,
        seeds: object = None,
        tcp_port: object = DEFAULT_PORT,
        udp_port: object = DEFAULT_PORT,
        max_frame: object = wire.DEFAULT_MAX_FRAME,
        max_hello: object = None,
        max_sync_connections: object = DEFAULT_MAX_SYNC_CONNECTIONS,
        max_sync_per_host: object = DEFAULT_MAX_SYNC_PER_HOST,
        cluster: object = wire.DEFAULT_CLUSTER,
        key_file: str | None = None,
        drop_rate: object = 0.0,
        handler_timeout: object = DEFAULT_HANDLER_TIMEOUT,
        gossip_interval: object = 1.0,
        idle_interval: object = None,
        probe_interval: object = None,
        fanout: object = 3,
        max_datagram: object = wire.DEFAULT_MAX_DATAGRAM,
        max_nodes: object = plausible.DEFAULT_MAX_NODES,
        phi_threshold: object = None,
        tombstone_ttl: object = None,
        dead_node_ttl: object = None,
        sync_timeout: object = DEFAULT_SYNC_TIMEOUT,
        failure_detector: object = None,
    ) -> Settings:
        """Every setting checked, in the order the Server always checked them.

        ``names``: how messages name each option (:data:`API_NAMES` for
        those not in it); ``any_port``: whether port 0 (any free port) is
        accepted.
        """
        names = {**API_NAMES, **names}
        ip = check_ip(address, names["address"])
        tcp = check_port(tcp_port, names["tcp_port"], allow_any=any_port)
        udp = check_port(udp_port, names["udp_port"], allow_any=any_port)
        interval = bounds.GOSSIP_INTERVAL.check(
            gossip_interval, names["gossip_interval"]
        )
        datagram = check_max_datagram(max_datagram, names["max_datagram"])
        frame = check_max_frame(max_frame, datagram, names["max_frame"])
        timeout = bounds.SYNC_TIMEOUT.check(sync_timeout, names["sync_timeout"])
        hello = check_max_hello(
            min(DEFAULT_MAX_HELLO, frame) if max_hello is None else max_hello,
            datagram,
            frame,
            names["max_hello"],
        )
        connections = check_sync_cap(
            max_sync_connections, names["max_sync_connections"]
        )
        per_host = check_sync_cap(max_sync_per_host, names["max_sync_per_host"])
        seeds_given = check_seeds(seeds, ip, names["seeds"])
        handler = check_seconds(handler_timeout, names["handler_timeout"])
        nodes = check_max_nodes(max_nodes, names["max_nodes"])
        optional = {
            "phi_threshold": phi_threshold,
            "tombstone_ttl": tombstone_ttl,
            "dead_node_ttl": dead_node_ttl,
            "failure_detector": failure_detector,
        }
        engine = EngineSettings.checked(
            names,
            gossip_interval=interval,
            idle_interval=idle_interval,
            probe_interval=probe_interval,
            fanout=fanout,
            max_datagram=datagram,
            max_nodes=nodes,
            sync_timeout=timeout,
            **{k: v for k, v in optional.items() if v is not None},
        )
        rate = check_drop_rate(drop_rate, names["drop_rate"])
        name = check_cluster(cluster, names["cluster"])
        return cls(
            address=ip,
            tcp_port=tcp,
            udp_port=udp,
            seeds=seeds_given,
            max_frame=frame,
            max_hello=hello,
            max_sync_connections=connections,
            max_sync_per_host=per_host,
            cluster=name,
            key_file=key_file,
            drop_rate=rate,
            handler_timeout=handler,
            engine=engine,
        )
