"""``twistd pokan``: command-line options and the service they make."""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from pokan import reactors, wire
from pokan.address import DEFAULT_PORT, check_ip, check_port, parse_host_port
from pokan.errors import ConfigurationError, PokanError
from pokan.server import Server, check_interval, check_max_datagram

log = Logger()


class Options(usage.Options):
    synopsis = "--address IP [--gossip-with HOST:PORT ...] [options]"
    longdesc = (
        "Run a pokan node. The first node of a cluster needs only --address and"
        " acts as a seed; the others name one or more seeds with --gossip-with."
    )
    optParameters = [
        [
            "address",
            "a",
            None,
            "IP address of this node, as peers reach it (required).",
        ],
        ["tcp-port", "t", str(DEFAULT_PORT), "TCP port for full syncs."],
        ["udp-port", "u", str(DEFAULT_PORT), "UDP port for gossip."],
        ["gossip-interval", "i", "1", "Seconds between gossip rounds."],
        [
            "max-datagram",
            None,
            str(wire.DEFAULT_MAX_DATAGRAM),
            f"Largest datagram sent, in bytes ({wire.MIN_DATAGRAM}-"
            f"{wire.MAX_UDP_PAYLOAD}); the same on every node.",
        ],
        [
            "redis",
            None,
            None,
            "Persist the cluster state in Redis at this URL (redis://host:port/db,"
            " rediss://, unix:///path?db=N); default: in memory only.",
        ],
        [
            "redis-prefix",
            None,
            None,
            "Prefix of the Redis keys this node writes (default pokan:<node id>).",
        ],
    ]
    optFlags = [
        ["epoll", None, "Use the epoll reactor (Linux)."],
        ["redis-events", None, "Also publish key events on <prefix>:events."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["gossip-with"] = []
        self["store"] = []

    def opt_gossip_with(self, value: str) -> None:
        """HOST:PORT of a seed (its TCP port); repeatable, first that answers wins."""
        try:
            parse_host_port(value)
        except ConfigurationError as e:
            raise usage.UsageError(f"--gossip-with: {e}") from None
        self["gossip-with"].append(value)

    def opt_store(self, value: str) -> None:
        """KEY=VALUE stored on this node at start; repeatable."""
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise usage.UsageError(f"--store expects KEY=VALUE, got {value!r}")
        self["store"].append((key, val))

    def postOptions(self) -> None:
        if not self["address"]:
            raise usage.UsageError(
                "--address is required: the IP address peers use to reach this node"
            )
        try:
            self["address"] = check_ip(self["address"], "--address")
            self["tcp-port"] = check_port(self["tcp-port"], "--tcp-port")
            self["udp-port"] = check_port(self["udp-port"], "--udp-port")
            self["gossip-interval"] = check_interval(self["gossip-interval"])
            self["max-datagram"] = check_max_datagram(self["max-datagram"])
            if self["redis"] is None and (
                self["redis-prefix"] is not None or self["redis-events"]
            ):
                raise ConfigurationError(
                    "--redis-prefix and --redis-events need --redis"
                )
            if self["epoll"]:
                reactors.install_epoll()
        except ConfigurationError as e:
            raise usage.UsageError(str(e)) from None


class DaemonService(service.MultiService):
    """Runs the node under twistd: a failed start ends the process, plainly."""

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server
        server.setServiceParent(self)

    def startService(self) -> None:
        service.Service.startService(self)
        failures: list[Failure] = []
        d = self.server.startService()
        d.addErrback(failures.append)
        if failures:  # failed at once: before the reactor runs, exit cleanly
            raise SystemExit(f"pokan: {failures[0].getErrorMessage()}")
        d.addErrback(self._failed_later)

    def _failed_later(self, failure: Failure) -> None:
        log.critical("pokan: {error}", error=failure.getErrorMessage())
        from twisted.internet import reactor

        reactor.stop()

    def stopService(self) -> defer.Deferred[Any]:
        service.Service.stopService(self)
        return defer.maybeDeferred(self.server.stopService)


def redis_store(options: Options) -> Any:
    """The Redis store the options ask for, checked reachable; None if none."""
    if options["redis"] is None:
        return None
    from pokan.store.redis import RedisStore

    try:
        store = RedisStore(
            options["redis"],
            prefix=options["redis-prefix"],
            publish_events=options["redis-events"],
        )
        store.check()  # blocking, before the reactor runs: fail plainly
    except PokanError as e:
        raise SystemExit(f"pokan: {e}") from None
    return store


def makeService(options: Options) -> service.IService:
    server = Server(
        options["address"],
        gossip_with=options["gossip-with"] or None,
        tcp_port=options["tcp-port"],
        udp_port=options["udp-port"],
        gossip_interval=options["gossip-interval"],
        max_datagram=options["max-datagram"],
        store=redis_store(options),
    )
    if options["epoll"]:
        server.use_epoll()
    for key, value in options["store"]:
        try:
            server.store(key, value)
        except (TypeError, ValueError) as e:
            raise SystemExit(f"pokan: --store {key}=...: {e}") from None
    return DaemonService(server)
