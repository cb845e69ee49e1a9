"""``twistd pokan``: command-line options and the service they make."""

from __future__ import annotations

import atexit
import os
import signal
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

import twisted
from pokan import wire
from pokan.core import plausible
from pokan.core.address import DEFAULT_PORT, parse_seeds
from pokan.core.failure import DEFAULT_THRESHOLD
from pokan.core.settings import (
    DEFAULT_DEAD_NODE_TTL,
    DEFAULT_FAILURE_DETECTOR,
    DEFAULT_TOMBSTONE_TTL,
)
from pokan.daemon.handler_options import HandlerOptions, install_handlers
from pokan.daemon.logsetup import check_log_level, filter_twistd_log
from pokan.errors import ConfigurationError, NamesSettings, PokanError, StartupError
from pokan.net import reactors
from pokan.net.protocols import (
    DEFAULT_MAX_HELLO,
    DEFAULT_MAX_SYNC_CONNECTIONS,
    DEFAULT_MAX_SYNC_PER_HOST,
)
from pokan.net.server import DEFAULT_FANOUT, Server
from pokan.net.settings import Settings
from pokan.net.stopping import arm_while_stopping

log = Logger()


GOSSIP_WITH_HELP = (
    f"A seed to join through: HOST[:PORT], its TCP port (default {DEFAULT_PORT})."
    " Repeatable, or several separated by commas; the first that answers is used."
)


def pokan_version() -> str:
    """The installed pokan's version (the source tree's if not installed)."""
    try:
        return version("pokan")
    except PackageNotFoundError:
        from pokan import __version__

        return __version__


#: what a refused option's message ends with
USAGE_HINT = "(see `twistd pokan --help`)"


class Options(HandlerOptions):
    synopsis = "--address IP [--gossip-with HOST[:PORT][,HOST[:PORT]...]] [options]"
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
            "max-hello",
            None,
            str(DEFAULT_MAX_HELLO),
            "Largest Hello (a joiner's state) read from a full sync, in bytes.",
        ],
        [
            "max-sync-connections",
            None,
            str(DEFAULT_MAX_SYNC_CONNECTIONS),
            "Inbound full-sync connections open at once.",
        ],
        [
            "max-sync-per-host",
            None,
            str(DEFAULT_MAX_SYNC_PER_HOST),
            "Inbound full-sync connections open at once from one address.",
        ],
        [
            "gossip-fanout",
            None,
            str(DEFAULT_FANOUT),
            "Live peers gossiped with per round.",
        ],
        [
            "idle-interval",
            None,
            None,
            "Seconds between the exchanges of a node with nothing new to spread"
            " (default: 10 gossip intervals with swim, the gossip interval with"
            " phi).",
        ],
        [
            "probe-interval",
            None,
            None,
            "Seconds between SWIM's probes (default: half the gossip interval,"
            " at least 0.5).",
        ],
        [
            "failure-detector",
            None,
            DEFAULT_FAILURE_DETECTOR,
            "How dead peers are found: swim (probes, the default) or phi"
            " (heartbeats in the gossip; small clusters).",
        ],
        [
            "phi-threshold",
            None,
            str(DEFAULT_THRESHOLD),
            "Suspicion (phi) above which a silent peer is convicted dead"
            " (--failure-detector phi).",
        ],
        [
            "tombstone-ttl",
            None,
            str(int(DEFAULT_TOMBSTONE_TTL)),
            "Seconds a deleted key's tombstone is kept before GC.",
        ],
        [
            "dead-node-ttl",
            None,
            str(int(DEFAULT_DEAD_NODE_TTL)),
            "Seconds a dead or left node is kept before it is forgotten.",
        ],
        [
            "max-nodes",
            None,
            str(plausible.DEFAULT_MAX_NODES),
            "Nodes tracked at most; beyond it new nodes are refused (room for"
            " a 10,000-node cluster by default).",
        ],
        [
            "drop-rate",
            None,
            "0",
            "Testing only: share of datagrams to drop on purpose (0-1).",
        ],
        [
            "cluster",
            None,
            wire.DEFAULT_CLUSTER,
            "Name of the cluster: messages of other clusters are dropped, and"
            " their sender told (letters, digits, '.', '_', '-').",
        ],
        [
            "key-file",
            None,
            None,
            "Seal all gossip with the keys in this file (mode 0600; one base64"
            " 32-byte key per line, the first seals, all open; make one with"
            " `pokan keygen`). SIGHUP reads it again. See docs/security.md.",
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
        [
            "control",
            None,
            None,
            "Serve the control API (docs/control-api.md) on HOST:PORT or"
            " unix:/path (default: 127.0.0.1 on the TCP port + 1818, so 7373"
            " for 5555).",
        ],
        [
            "control-token-file",
            None,
            None,
            "Require 'Authorization: Bearer TOKEN' on the control API, TOKEN"
            " being the first line of this file (mode 0600); needed to listen"
            " beyond loopback.",
        ],
        [
            "log-level",
            None,
            "info",
            "Log this level and up: debug, info, warn or error.",
        ],
    ]
    optFlags = [
        ["epoll", None, "Use the epoll reactor (Linux)."],
        ["redis-events", None, "Also publish key events on <prefix>:events."],
        ["no-control", None, "Serve no control API."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["gossip-with"] = []
        self["store"] = []
        self.docs["gossip-with"] = GOSSIP_WITH_HELP

    def parseOptions(self, options: Any = None) -> None:
        """Parse; a bad option is one line, with a hint, not the whole usage.

        Under twistd (which would print its synopsis and usage, then the
        error) the line is printed here and the process exits with status 1,
        as twistd does; elsewhere a UsageError with the hint is raised, and
        the usage (:meth:`getUsage`) is empty after it.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            self.failed = True
            if getattr(self, "parent", None) is not None:
                refuse_option(str(e))
            raise usage.UsageError(with_hint(str(e))) from None

    def getUsage(self, width: int | None = None) -> str:
        if getattr(self, "failed", False):
            return ""
        return str(super().getUsage(width))

    def opt_version(self) -> None:
        """Print pokan's and Twisted's versions and exit."""
        print(f"pokan {pokan_version()}")
        print(f"Twisted {twisted.__version__}")
        sys.exit(0)

    def opt_gossip_with(self, value: str) -> None:
        """A seed's HOST[:PORT]; see GOSSIP_WITH_HELP."""
        try:
            parse_seeds(value)
        except ConfigurationError as e:
            raise usage.UsageError(f"--gossip-with: {e}") from None
        self["gossip-with"].extend(seed.strip() for seed in value.split(","))

    def opt_store(self, value: str) -> None:
        """KEY=VALUE stored on this node at start; repeatable."""
        key, sep, val = value.partition("=")
        if not sep:
            raise usage.UsageError(f"--store {value}: expected KEY=VALUE")
        if not key:
            raise usage.UsageError(
                f"--store {value}: expected KEY=VALUE, the key is empty"
            )
        self["store"].append((key, val))

    def postOptions(self) -> None:
        self.check_handler_options()
        if not self["address"]:
            raise usage.UsageError(
                "--address is required: the IP address peers use to reach this node"
            )
        try:
            max_nodes = self["max-nodes"]
            self.settings = settings_of(
                self,
                max_hello=_whole(self["max-hello"], "--max-hello"),
                max_sync_connections=_whole(
                    self["max-sync-connections"], "--max-sync-connections"
                ),
                max_sync_per_host=_whole(
                    self["max-sync-per-host"], "--max-sync-per-host"
                ),
                max_nodes=int(max_nodes) if str(max_nodes).isdigit() else max_nodes,
            )
            self._take_checked(self.settings)
            if self["redis"] is None and (
                self["redis-prefix"] is not None or self["redis-events"]
            ):
                raise ConfigurationError(
                    "--redis-prefix and --redis-events need --redis"
                )
            if self["redis-prefix"] == "":
                raise ConfigurationError(
                    "--redis-prefix must not be empty: give a prefix, or leave"
                    " the option out for the default (pokan:<node id>)"
                )
            self["log-level"] = check_log_level(self["log-level"])
            self._check_control()
            if self["epoll"]:
                reactors.install_epoll()
        except ConfigurationError as e:
            raise usage.UsageError(str(e)) from None

    def _take_checked(self, settings: Settings) -> None:
        """The options as checked (numbers, not their text)."""
        engine = settings.engine
        for option, value in {
            "address": settings.address,
            "tcp-port": settings.tcp_port,
            "udp-port": settings.udp_port,
            "gossip-interval": engine.gossip_interval,
            "max-datagram": engine.max_datagram,
            "max-hello": settings.max_hello,
            "max-sync-connections": settings.max_sync_connections,
            "max-sync-per-host": settings.max_sync_per_host,
            "gossip-fanout": engine.fanout,
            "max-nodes": engine.max_nodes,
            "cluster": settings.cluster,
            "idle-interval": engine.idle_interval,
            "probe-interval": engine.probe_interval,
            "phi-threshold": engine.phi_threshold,
            "tombstone-ttl": engine.tombstone_ttl,
            "dead-node-ttl": engine.dead_node_ttl,
            "drop-rate": settings.drop_rate,
            "failure-detector": engine.failure_detector,
        }.items():
            self[option] = value

    def _check_control(self) -> None:
        """--control (or its default), --no-control, --control-token-file."""
        from pokan.control.endpoint import default_control, parse_control
        from pokan.control.service import TWISTD_NAMES, ControlListener

        if self["no-control"]:
            if self["control"] is not None or self["control-token-file"] is not None:
                raise ConfigurationError(
                    "--no-control cannot go with --control or --control-token-file"
                )
            self["control-endpoint"] = None
            return
        if self["control"] is None:
            endpoint = default_control(self["tcp-port"])
        else:
            endpoint = parse_control(self["control"], "--control")
        # checked now, to name the options: the token file, loopback
        ControlListener.configure(
            None, endpoint, self["control-token-file"], TWISTD_NAMES
        )
        self["control-endpoint"] = endpoint


#: how messages name each setting: as twistd's options
FLAG_NAMES = {
    "address": "--address",
    "tcp_port": "--tcp-port",
    "udp_port": "--udp-port",
    "gossip_interval": "--gossip-interval",
    "idle_interval": "--idle-interval",
    "probe_interval": "--probe-interval",
    "fanout": "--gossip-fanout",
    "max_datagram": "--max-datagram",
    "max_hello": "--max-hello",
    "max_sync_connections": "--max-sync-connections",
    "max_sync_per_host": "--max-sync-per-host",
    "max_nodes": "--max-nodes",
    "phi_threshold": "--phi-threshold",
    "tombstone_ttl": "--tombstone-ttl",
    "dead_node_ttl": "--dead-node-ttl",
    "handler_timeout": "--handler-timeout",
    "failure_detector": "--failure-detector",
    "cluster": "--cluster",
    "drop_rate": "--drop-rate",
    "seeds": "--gossip-with",
    "redis": "--redis",
}


def settings_of(options: Any, **checked: Any) -> Settings:
    """The node's Settings of twistd's options, checked once; ConfigurationError
    names the option as typed (``--gossip-interval``)."""
    raw: dict[str, Any] = {
        "address": options["address"],
        "seeds": options["gossip-with"] or None,
        "tcp_port": options["tcp-port"],
        "udp_port": options["udp-port"],
        "gossip_interval": options["gossip-interval"],
        "max_datagram": options["max-datagram"],
        "max_hello": options["max-hello"],
        "max_sync_connections": options["max-sync-connections"],
        "max_sync_per_host": options["max-sync-per-host"],
        "phi_threshold": options["phi-threshold"],
        "tombstone_ttl": options["tombstone-ttl"],
        "dead_node_ttl": options["dead-node-ttl"],
        "fanout": options["gossip-fanout"],
        "idle_interval": options["idle-interval"],
        "probe_interval": options["probe-interval"],
        "drop_rate": options["drop-rate"],
        "cluster": options["cluster"],
        "key_file": options["key-file"],
        "max_nodes": options["max-nodes"],
        "handler_timeout": options["handler-timeout"],
        "failure_detector": options["failure-detector"],
    }
    raw.update(checked)
    return Settings.checked(FLAG_NAMES, any_port=False, **raw)


def with_hint(message: str) -> str:
    """An option error's text: its first line ends with the hint (details,
    such as the handler plugins found, follow on the next lines)."""
    first, newline, rest = message.partition("\n")
    return f"{first} {USAGE_HINT}{newline}{rest}"


def refuse_option(message: str) -> NoReturn:
    """Refuse an option under twistd (from parseOptions, or once makeService
    has the Server) as twistd refuses a usage error: one line on stdout
    (``twistd -n: ...``, the program by its name, not its path), exit
    status 1."""
    command = " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:2]])
    print(f"{command}: {with_hint(message)}")
    raise SystemExit(1)


def _whole(value: str, option: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise ConfigurationError(
            f"{option} must be a whole number, got {value!r}"
        ) from None


class DaemonService(service.MultiService):
    """Runs the node under twistd: a failed start ends the process, plainly."""

    def __init__(
        self,
        server: Server,
        daemonized: bool = False,
        log_level: Any = None,
        twistd_config: Any = None,
    ) -> None:
        super().__init__()
        self.server = server
        self.daemonized = daemonized
        self.log_level = log_level
        self.twistd_config = twistd_config
        server.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        """twistd's application: it logs at --log-level and up only."""
        if self.log_level is not None:
            why_not = filter_twistd_log(parent, self.twistd_config, self.log_level)
            if why_not is not None:
                log.warn(
                    "--log-level {chosen_level} is not applied, every level is logged:"
                    " {why_not}",
                    chosen_level=self.log_level.name,
                    why_not=why_not,
                )
        super().setServiceParent(parent)

    def _fail_at_once(self, message: str) -> None:
        if self.daemonized:
            # twistd's daemonizing parent waits for its child's status, which
            # the child reports for an Exception only: with SystemExit the
            # parent would wait for ever. The parent prints the exception's
            # first 100 bytes and points to the log: the gist goes there, the
            # whole message to the log, as one line, without a traceback.
            log.critical("pokan: {error}", error=message)
            sys.excepthook = _quiet_startup_error
            raise StartupError(message.split(". ")[0]) from None
        raise SystemExit(f"pokan: {message}")

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()  # binds the node's ports
        except StartupError as e:
            self._fail_at_once(described(e))

    def startService(self) -> None:
        service.Service.startService(self)
        at_once: list[Failure] = []
        starting = True

        def failed(failure: Failure) -> None:
            if starting:
                at_once.append(failure)
            else:  # e.g. the store's open() failed once the reactor ran
                self._failed_later(failure)

        self.server.startService().addErrback(failed)
        starting = False
        if at_once:  # failed at once: before the reactor runs, exit cleanly
            self._fail_at_once(described(at_once[0].value))
        self._reload_on_sighup()

    def _reload_on_sighup(self) -> None:
        """SIGHUP reads the key file again (in the reactor thread)."""
        reactor = reactors.global_reactor()

        def hangup(signum: int, frame: Any) -> None:
            log.info("SIGHUP: reloading the gossip keys")
            reactor.callFromThread(self.server.reload_keys)

        self._previous_sighup = signal.signal(signal.SIGHUP, hangup)

    def stopService(self) -> Any:
        previous = getattr(self, "_previous_sighup", None)
        if previous is not None:
            signal.signal(signal.SIGHUP, previous)
            self._previous_sighup = None
        # a second SIGTERM (or Ctrl-C) while the node stops: out at once
        disarm = arm_while_stopping(reactors.global_reactor())
        d = defer.maybeDeferred(super().stopService)
        return d.addBoth(lambda result: (disarm(), result)[1])

    def _failed_later(self, failure: Failure) -> None:
        log.critical("pokan: {error}", error=described(failure.value))
        # twistd exits 0 once its reactor stops; this start failed: exit 1,
        # after twistd has removed its pidfile and closed its log
        atexit.register(_exit_failed)
        reactors.global_reactor().stop()


def described(error: BaseException | None) -> str:
    """An error's message, naming the settings as twistd's options."""
    from pokan.control.service import TWISTD_NAMES, ControlListenError

    if isinstance(error, ControlListenError):
        return error.describe(TWISTD_NAMES)
    if isinstance(error, NamesSettings):
        return error.describe(FLAG_NAMES)
    return str(error)


def _quiet_startup_error(
    kind: type[BaseException], value: BaseException, tb: Any
) -> None:
    """The daemon's last words: none for a failed start (the log has them)."""
    if not isinstance(value, StartupError):
        sys.__excepthook__(kind, value, tb)


def _exit_failed() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def redis_store(options: Options) -> Any:
    """The Redis store the options ask for (checked by check_store); or None."""
    if options["redis"] is None:
        return None
    from pokan.store.redis import RedisStore

    try:
        return RedisStore(
            options["redis"],
            prefix=options["redis-prefix"],
            publish_events=options["redis-events"],
        )
    except PokanError as e:
        raise SystemExit(f"pokan: {described(e)}") from None


def check_store(store: Any, server: Server) -> None:
    """Blocking, before the reactor runs: Redis answers, and its prefix is
    this node's (unless the node's id waits for a port chosen at bind), so a
    daemon fails before twistd reports a good start."""
    try:
        store.check(server.id if server.udp_port else None)
    except PokanError as e:
        raise SystemExit(f"pokan: {described(e)}") from None


def makeService(options: Options) -> service.IService:
    store = redis_store(options)
    try:
        server = _server(options, store)
    except ConfigurationError as e:  # e.g. a key file refused
        raise SystemExit(f"pokan: {described(e)}") from None
    if store is not None:
        check_store(store, server)
    if options["epoll"]:
        server.use_epoll()
    for key, value in options["store"]:
        try:
            server.store(key, value)
        except (TypeError, ValueError) as e:
            refuse_option(f"--store {key}=...: {described(e)}")
    try:
        install_handlers(server, options)
    except ConfigurationError as e:  # a handler factory refused its argument
        refuse_option(str(e))
    twistd = getattr(options, "parent", None)  # twistd's own options
    daemonized = twistd is not None and not twistd.get("nodaemon", True)
    return DaemonService(server, daemonized, options["log-level"], twistd)


def _server(options: Options, store: Any) -> Server:
    """The node of the options checked (by :meth:`Options.postOptions`)."""
    return Server.from_settings(
        options.settings,
        store=store,
        control=options["control-endpoint"],
        control_token_file=options["control-token-file"],
    )
