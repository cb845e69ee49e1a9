"""Server over a MemoryReactorClock: no sockets, no global reactor."""

from __future__ import annotations

import base64
import os
import random
import struct
from typing import Any

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IResolutionReceiver,
)
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from pokan import Peer, Server, wire
from pokan.core.node import GossipNode
from pokan.core.state import ClusterState, Entry, NodeDelta, NodeInfo
from pokan.core.write_checks import check_fits
from pokan.errors import ConfigurationError, StartupError
from pokan.store import MemoryStore
from tests.support import LogCatcher


class Handlers:
    def start(self) -> None:
        pass


ADDRESS = "10.0.0.1"


class Boom(Exception):
    pass


class FakeUDPPort:
    def __init__(self, reactor: UDPMemoryReactor, port: int, protocol: Any) -> None:
        self.reactor = reactor
        self.port = port
        self.protocol = protocol
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.listening = True
        protocol.makeConnection(self)

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", ADDRESS, self.port)

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))

    def stopListening(self) -> None:
        self.listening = False
        self.protocol.doStop()


class FakeTCPPort:
    def __init__(self, port: int) -> None:
        self.port = port
        self.listening = True

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", ADDRESS, self.port)

    def stopListening(self) -> None:
        self.listening = False


@implementer(IHostnameResolver)
class NoSuchHost:
    """A name resolver that finds no address for any name."""

    def resolveHostName(
        self,
        receiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Any = None,
        transportSemantics: str = "TCP",
    ) -> IResolutionReceiver:
        receiver.resolutionBegan(Resolution(hostName))
        receiver.resolutionComplete()
        return receiver


@implementer(IHostResolution)
class Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


class UDPMemoryReactor(MemoryReactorClock):
    """A MemoryReactorClock that also records listenUDP (and can refuse)."""

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: list[FakeUDPPort] = []
        self.tcpPorts: list[FakeTCPPort] = []
        self.udpArgs: list[tuple[int, str, int]] = []
        self.busy: set[str] = set()
        self._next_port = 40000

    def _port(self, port: int) -> int:
        if port == 0:
            self._next_port += 1
            return self._next_port
        return port

    def listenUDP(
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> FakeUDPPort:
        if "udp" in self.busy:
            raise error.CannotListenError(
                interface, port, OSError(98, "Address in use")
            )
        self.udpArgs.append((port, interface, maxPacketSize))
        fake = FakeUDPPort(self, self._port(port), protocol)
        self.udpPorts.append(fake)
        return fake

    def listenTCP(
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> FakeTCPPort:
        if "tcp" in self.busy:
            raise error.CannotListenError(
                interface, port, OSError(98, "Address in use")
            )
        super().listenTCP(port, factory, backlog, interface)
        fake = FakeTCPPort(self._port(port))
        self.tcpPorts.append(fake)
        return fake

    def sent(self) -> list[tuple[wire.Message, tuple[str, int]]]:
        return [
            (wire.decode(data), addr)
            for port in self.udpPorts
            for data, addr in port.written
        ]


def other_node(i: int = 2, role: str = "peer", generation: int = 5) -> NodeInfo:
    host = f"10.0.0.{i}"
    return NodeInfo(f"{host}:5555", generation, host, 5555, 5555, role)  # type: ignore[arg-type]


class ServerTestCase(unittest.TestCase):
    def make(self, **kwargs: Any) -> Server:
        self.reactor = UDPMemoryReactor()
        self.reactor.advance(1000.0)
        kwargs.setdefault("rng", random.Random(1))
        # these count the gossip's own datagrams and read phi's notes: phi,
        # unless a test asks for SWIM (its probes add datagrams of their own)
        kwargs.setdefault("failure_detector", "phi")
        self.server = Server(ADDRESS, reactor=self.reactor, **kwargs)
        return self.server

    def start(self, **kwargs: Any) -> Server:
        server = self.make(**kwargs)
        self.successResultOf(server.startService())
        self.addCleanup(self.stop)
        return server

    def stop(self) -> None:
        if self.server.running:
            self.successResultOf(self.server.stopService())

    def introduce(self, info: NodeInfo, *entries: tuple[str, Any]) -> None:
        """Let the server learn of another node through a real datagram."""
        from pokan.core.state import Entry

        delta = NodeDelta(
            info,
            1,
            0,
            len(entries),
            tuple((k, Entry(v, i, 1.0)) for i, (k, v) in enumerate(entries, 1)),
        )
        data = wire.encode(wire.Ack(info.id, (delta,)))
        self.reactor.udpPorts[0].protocol.datagramReceived(
            data, (info.address, info.udp_port)
        )


class StartStopTests(ServerTestCase):
    def test_binds_udp_and_tcp(self) -> None:
        server = self.start(tcp_port=9876, udp_port=9989)
        self.assertTrue(server.running)
        self.assertEqual(self.reactor.udpArgs[0][:2], (9989, ADDRESS))
        self.assertGreater(self.reactor.udpArgs[0][2], wire.MAX_UDP_PAYLOAD)
        (tcp,) = self.reactor.tcpServers
        self.assertEqual((tcp[0], tcp[3]), (9876, ADDRESS))
        self.assertEqual(server.id, f"{ADDRESS}:9989")
        self.assertGreater(server.me.generation, 0)

    def test_port_zero_advertises_bound_ports(self) -> None:
        server = self.start(tcp_port=0, udp_port=0)
        self.assertEqual(server.udp_port, self.reactor.udpPorts[0].port)
        self.assertEqual(server.tcp_port, self.reactor.tcpPorts[0].port)
        self.assertEqual(server.id, f"{ADDRESS}:{server.udp_port}")
        self.assertEqual(server.me.tcp_port, server.tcp_port)

    def test_port_in_use(self) -> None:
        server = self.make()
        self.reactor.busy.add("tcp")
        failure = self.failureResultOf(server.startService(), StartupError)
        self.assertIn("/tcp", str(failure.value))
        self.assertIn("5555", str(failure.value))
        self.assertFalse(server.running)
        self.assertFalse(self.reactor.udpPorts[0].listening)  # closed again

    def test_start_twice(self) -> None:
        server = self.start()
        self.failureResultOf(server.startService(), StartupError)

    def test_start_and_shutdown_events(self) -> None:
        server = self.make()
        seen = []
        server.on("start", lambda: seen.append("start"))
        server.on("shutdown", lambda: seen.append("shutdown"))
        self.successResultOf(server.startService())
        self.assertEqual(seen, ["start"])
        self.successResultOf(server.stopService())
        self.assertEqual(seen, ["start", "shutdown"])
        self.assertFalse(self.reactor.udpPorts[0].listening)
        self.assertFalse(self.reactor.tcpPorts[0].listening)

    def test_stop_sends_goodbye_to_known_peers(self) -> None:
        server = self.start()
        self.introduce(other_node(2))
        self.introduce(other_node(3))
        self.reactor.udpPorts[0].written.clear()
        self.successResultOf(server.stopService())
        sent = self.reactor.sent()
        self.assertEqual(
            sorted(addr for _, addr in sent), [("10.0.0.2", 5555), ("10.0.0.3", 5555)]
        )
        for message, _ in sent:
            self.assertEqual(message, wire.Goodbye(server.id, server.me.generation))
        # and the loop is stopped: no more rounds
        self.reactor.advance(10)
        self.assertEqual(len(self.reactor.sent()), 2)

    def test_stop_when_not_running(self) -> None:
        self.assertIsNone(self.successResultOf(self.make().stopService()))

    def test_configuration_frozen_while_running(self) -> None:
        server = self.start()
        self.assertRaises(ConfigurationError, setattr, server, "tcp_port", 1)
        self.assertRaises(ConfigurationError, setattr, server, "udp_port", 1)
        self.assertRaises(ConfigurationError, server.gossip_with, "10.0.0.9:1")

    def test_seeds_of_a_wrong_type_are_a_configuration_error(self) -> None:
        """A port alone, not "HOST:PORT": the library's error, saying the form."""
        server = self.make()
        for call, name in (
            (lambda: server.start(gossip_with=5555), "gossip_with="),
            (lambda: server.gossip_with(5555), "gossip_with()"),
            (lambda: Server(ADDRESS, gossip_with=5555), "gossip_with="),
        ):
            e = self.assertRaises(ConfigurationError, call)
            self.assertEqual(
                str(e),
                f'{name} must be a "HOST:PORT" string or a list of them, such as'
                ' "10.0.0.9:5555" or ["10.0.0.9:5555", "10.0.0.10"] (the seeds\''
                " TCP port, 5555 if left out), got 5555 (int)",
            )
        self.assertFalse(server.running)
        self.assertEqual(server.seeds, [])

    def test_port_setters_name_the_attribute(self) -> None:
        server = self.make()
        e = self.assertRaises(ConfigurationError, setattr, server, "tcp_port", 70000)
        self.assertEqual(str(e), "tcp_port= must be from 1 to 65535, got 70000")
        e = self.assertRaises(ConfigurationError, setattr, server, "udp_port", "x")
        self.assertEqual(str(e), "udp_port= must be a number from 1 to 65535, got 'x'")

    def test_restart_with_same_store_is_newer_generation(self) -> None:
        store = MemoryStore()
        first = self.start(store=store)
        self.successResultOf(first.store("k", "v"))
        generation = first.me.generation
        self.successResultOf(first.stopService())
        second = self.start(store=store)
        self.assertGreater(second.me.generation, generation)
        self.assertEqual(second.value("k"), "v")
        self.successResultOf(second.store("k2", "v2"))
        self.assertGreater(
            second._state.me.entries["k2"].version,
            second._state.me.entries["k"].version,
        )


class StartLogTests(ServerTestCase):
    def test_banner_names_store_and_handlers(self) -> None:
        logs = LogCatcher(self)
        server = self.make(gossip_with="10.0.0.9:5555")
        server.add_handler(Handlers())
        server.add_handler(Handlers(), name="members=/run/members")
        self.successResultOf(server.startService())
        self.addCleanup(self.stop)
        (banner,) = logs.matching("listening on")
        self.assertIn("seeds: 10.0.0.9:5555; store: memory;", banner)
        self.assertIn("handlers: Handlers, members=/run/members", banner)
        self.assertIn("to 3 peers; phi threshold 8; max datagram 1400;", banner)
        self.assertEqual(logs.matching("on purpose"), [])

    def test_a_drop_rate_is_warned_of(self) -> None:
        logs = LogCatcher(self)
        server = self.make(drop_rate=0.25, gossip_fanout=2, phi_threshold=5.5)
        self.successResultOf(server.startService())
        self.addCleanup(self.stop)
        (banner,) = logs.matching("listening on")
        self.assertIn("to 2 peers; phi threshold 5.5;", banner)
        (warning,) = logs.matching("on purpose")
        self.assertIn("dropping 25% of the datagrams this node sends", warning)

    def test_banner_hides_a_store_password(self) -> None:
        logs = LogCatcher(self)

        class Remote(MemoryStore):
            url = "redis://:***@db:6379/0"

        self.start(store=Remote())
        self.assertIn(
            "seeds: none (acting as seed); store: Remote redis://:***@db:6379/0;"
            " handlers: none",
            logs.matching("listening on")[0],
        )

    def test_itself_as_only_seed_is_ignored_with_a_warning(self) -> None:
        logs = LogCatcher(self)
        server = self.start(gossip_with=f"{ADDRESS}:5555")
        (warning,) = logs.matching("is this node itself")
        self.assertIn(f"seed {ADDRESS}:5555 is this node itself; ignored:", warning)
        self.assertIn("waits for others to join through it", warning)
        self.assertIn("seeds: none (acting as seed)", logs.matching("listening")[0])
        self.assertIsNone(server._syncs.seed_sync)  # no sync with itself
        self.reactor.advance(5)
        self.assertEqual(self.reactor.sent(), [], "no gossip to itself either")

    def test_itself_among_seeds_is_ignored(self) -> None:
        logs = LogCatcher(self)
        server = self.start(gossip_with=f"{ADDRESS}:5555,10.0.0.9:5555")
        self.assertEqual(
            [line[-40:] for line in logs.matching("is this node itself")],
            [f"seed {ADDRESS}:5555 is this node itself; ignored"[-40:]],
        )
        self.assertEqual(server.me.role, "peer")
        self.assertIsNotNone(server._syncs.seed_sync)


class UnauthenticatedWarningTests(ServerTestCase):
    def test_a_node_off_loopback_without_a_key_is_warned_of_once(self) -> None:
        logs = LogCatcher(self)
        self.start()
        (line,) = logs.matching("gossip is unauthenticated")
        self.assertIn("anyone who can reach 10.0.0.1", line)
        self.assertIn("docs/security.md", line)
        self.assertIn(
            "cluster pokan, gossip unauthenticated", logs.matching("listening on")[0]
        )

    def test_with_a_key_the_banner_names_its_fingerprint(self) -> None:
        from pokan.wire.keyring import Keyring, generate_key

        logs = LogCatcher(self)
        path = os.path.join(self.mktemp())
        key = generate_key()
        with open(path, "w") as f:
            f.write(key + "\n")
        os.chmod(path, 0o600)
        self.start(key_file=path, cluster="prod")
        self.assertEqual(logs.matching("gossip is unauthenticated"), [])
        banner = logs.matching("listening on")[0]
        (fingerprint,) = Keyring((base64.b64decode(key),)).fingerprints
        self.assertIn(f"cluster prod, gossip sealed with 1 key: {fingerprint}", banner)
        self.assertNotIn(key, " ".join(logs.lines()))


class MembershipLogTests(ServerTestCase):
    def test_dead_and_restart_say_why(self) -> None:
        logs = LogCatcher(self)
        self.start()
        self.introduce(other_node(2))
        for _ in range(12):
            self.reactor.advance(1.0)
        (dead,) = logs.matching("peer 10.0.0.2:5555 dead")
        self.assertRegex(dead, r"dead \(silent \d+\.\ds, phi \d+\.\d\d > 8\)$")
        self.introduce(other_node(2, generation=6))
        self.assertEqual(
            logs.matching("peer 10.0.0.2:5555 joined"),
            [
                "peer 10.0.0.2:5555 joined",
                "peer 10.0.0.2:5555 joined (restarted: new generation)",
            ],
        )


class GossipLoopTests(ServerTestCase):
    def test_gossip_every_validation(self) -> None:
        server = self.make()
        for bad in (0, -1, float("nan"), float("inf"), "fast", True, None):
            self.assertRaises(ConfigurationError, server.gossip_every, bad)
        server.gossip_every("0.25")
        self.assertEqual(server.gossip_interval, 0.25)
        self.assertRaises(ConfigurationError, Server, ADDRESS, gossip_interval=0)

    def test_max_frame_and_sync_timeout_validation(self) -> None:
        for bad in (0, 100, 1399, 2**32, "big", True, None, 4096.0):
            with self.assertRaises(ConfigurationError) as caught:
                Server(ADDRESS, max_frame=bad)
            self.assertIn("max_frame= must be", str(caught.exception))
        self.assertRaises(
            ConfigurationError, Server, ADDRESS, max_frame=3000, max_datagram=4000
        )
        Server(ADDRESS, max_frame=1400)
        for bad in (0, -1, float("nan"), "soon", None):
            self.assertRaises(ConfigurationError, Server, ADDRESS, sync_timeout=bad)

    def test_loop_runs_on_injected_clock(self) -> None:
        server = self.start(gossip_interval=2.0)
        self.introduce(other_node(2))
        port = self.reactor.udpPorts[0]
        port.written.clear()
        self.reactor.advance(1.9)
        self.assertEqual(port.written, [])
        self.reactor.advance(0.2)
        ((message, addr),) = self.reactor.sent()
        self.assertIsInstance(message, wire.Syn)
        self.assertEqual(addr, ("10.0.0.2", 5555))
        self.assertEqual(message.sender, server.id)  # type: ignore[union-attr]
        self.reactor.advance(2.0)
        self.assertEqual(len(self.reactor.sent()), 2)

    def test_late_round_leaves_one_retry(self) -> None:
        """A round run late is followed at once by the next one; the first
        round's half-round retry must not be left behind (nor after stop)."""
        self.start(gossip_interval=1.0)
        self.introduce(other_node(2))

        def retries() -> int:
            return sum(
                1
                for call in self.reactor.getDelayedCalls()
                if getattr(call.func, "__name__", "") == "_retry_round"
            )

        self.reactor.advance(1.9)  # the round due at 1.0 runs late, at 1.9
        self.assertEqual(retries(), 1)
        self.reactor.advance(0.1)  # the round due at 2.0 runs before that retry
        self.assertEqual(retries(), 1)
        self.stop()
        self.assertEqual(retries(), 0)

    def test_gossip_every_while_running(self) -> None:
        server = self.start(gossip_interval=10.0)
        self.introduce(other_node(2))
        self.reactor.udpPorts[0].written.clear()
        server.gossip_every(1)
        self.reactor.advance(1.0)
        self.assertEqual(len(self.reactor.sent()), 1)

    def test_raising_handler_does_not_stop_gossip(self) -> None:
        server = self.start()
        self.introduce(other_node(2))
        self.reactor.udpPorts[0].written.clear()

        def broken(peer: Peer) -> None:
            raise Boom("user bug")

        server.before("gossip", broken)
        server.before("gossip", lambda: defer.fail(Boom("failed Deferred")))
        for _ in range(3):
            self.reactor.advance(1.0)
        self.assertEqual(len(self.reactor.sent()), 3)
        # one line per failure; a traceback (at debug) per handler, its first
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 2)
        self.assertEqual(server.stats["handler_failures"], 6)
        self.assertTrue(server.running)

    def test_before_and_after_gossip_get_the_peer(self) -> None:
        server = self.start()
        seen: list[Any] = []
        server.before("gossip", lambda peer: seen.append(("before", peer)))
        server.after("gossip", lambda peer: seen.append(("after", peer)))
        server.after("gossip", lambda p: seen.append(("positional", p)))
        self.introduce(other_node(2))
        self.reactor.advance(1.0)
        ((syn, addr),) = self.reactor.sent()
        # the other node answers as a real node would
        other = GossipNode(ClusterState(other_node(2)), random.Random(2))
        (reply,) = other.receive(syn, (ADDRESS, server.udp_port)).outgoing
        self.reactor.udpPorts[0].protocol.datagramReceived(
            wire.encode(reply.message), addr
        )
        self.assertEqual([kind for kind, _ in seen], ["before", "after", "positional"])
        for _, peer in seen:
            self.assertIsInstance(peer, Peer)
            self.assertEqual(peer.id, other_node(2).id)

    def test_seed_without_known_peers_is_gossiped_with(self) -> None:
        server = self.start(gossip_with="10.0.0.7:5555")
        self.assertEqual(server.me.role, "peer")
        seen: list[Any] = []
        server.before("gossip", lambda peer: seen.append(peer))
        # the TCP sync is attempted through the reactor (MemoryReactor's
        # fake resolver answers 127.0.0.1 for any host)
        self.reactor.advance(0)
        self.assertEqual([c[1] for c in self.reactor.tcpClients], [5555])
        # and gossip reaches the seed, not yet known as a node
        self.reactor.advance(1.0)
        ((message, addr),) = self.reactor.sent()
        self.assertIsInstance(message, wire.Syn)
        self.assertEqual(addr, ("10.0.0.7", 5555))
        (peer,) = seen
        self.assertEqual((peer.id, peer.role), ("10.0.0.7:5555", "seed"))


class SyncTests(ServerTestCase):
    """The TCP sync with a seed, driven through the MemoryReactor."""

    def connect(self, tcp_port: int) -> tuple[Any, StringTransport]:
        self.reactor.advance(0)
        ((_, port, factory, _, _),) = self.reactor.tcpClients
        self.assertEqual(port, tcp_port)
        transport = StringTransport(
            peerAddress=IPv4Address("TCP", "10.0.0.7", tcp_port)
        )
        proto = factory.buildProtocol(transport.getPeer())
        proto.makeConnection(transport)
        return proto, transport

    def test_sync_then_gossip_to_the_seeds_udp_port(self) -> None:
        # the seed is given by its TCP port; its UDP port differs
        seed = NodeInfo("10.0.0.7:9989", 3, "10.0.0.7", 9876, 9989, "seed")
        server = self.start(gossip_with="10.0.0.7:9876")
        synced: list[Any] = []
        server.after("sync", lambda peer: synced.append(peer))
        proto, transport = self.connect(9876)
        hello = wire.decode(transport.value()[4:])
        self.assertIsInstance(hello, wire.Hello)
        self.assertEqual(hello.sender, server.id)  # type: ignore[union-attr]
        welcome = wire.Welcome(seed.id, (NodeDelta(seed, 1, 0, 0, ()),))
        data = wire.encode(welcome)
        proto.dataReceived(struct.pack(">I", len(data)) + data)
        proto.connectionLost(Failure(error.ConnectionDone()))
        (peer,) = synced
        self.assertEqual((peer.id, peer.udp_port), (seed.id, 9989))
        for _ in range(20):
            self.reactor.advance(1.0)
        addresses = {addr for _, addr in self.reactor.sent()}
        self.assertEqual(addresses, {("10.0.0.7", 9989)})

    def no_such_host(self, tcp_too: bool = True) -> None:
        """Host names resolve to nothing: for UDP gossip (``resolve``) and,
        with ``tcp_too``, for the TCP sync (the name resolver)."""

        def resolve(name: str, timeout: Any = None) -> defer.Deferred[str]:
            return defer.fail(error.DNSLookupError(name))

        self.reactor.resolve = resolve  # type: ignore[method-assign]
        if tcp_too:
            self.reactor.installNameResolver(NoSuchHost())

    def test_an_unresolvable_seed_is_one_line(self) -> None:
        """Said once (not by the UDP side too): the seed, why, the next try."""
        server = self.make(gossip_with="no.such.host.invalid:5555")
        self.no_such_host()
        logs = LogCatcher(self)
        self.successResultOf(server.startService())
        self.addCleanup(self.stop)
        self.reactor.advance(0)
        warnings = [e for e in logs.events if e["log_level"] == LogLevel.warn]
        warned = [
            (e["log_namespace"], formatEvent(e))
            for e in warnings
            if "no.such.host" in formatEvent(e)
        ]
        self.assertEqual(
            warned,
            [
                (
                    "pokan.net.seeds",
                    "could not sync with any seed (no.such.host.invalid:5555:"
                    " cannot resolve the host name no.such.host.invalid: check"
                    " it, and this host's DNS); gossip goes on, next try in 1.0s",
                )
            ],
        )

    def test_a_seed_whose_name_resolved_late_is_gossiped_with_once_synced(
        self,
    ) -> None:
        """Its name did not resolve for UDP at start; the TCP sync got through."""
        seed = NodeInfo("10.0.0.7:9989", 3, "10.0.0.7", 9876, 9989, "seed")
        server = self.make(gossip_with="seed.example:9876")
        self.no_such_host(tcp_too=False)
        self.successResultOf(server.startService())
        self.addCleanup(self.stop)
        self.assertEqual(server._node.seeds, [])
        proto, _ = self.connect(9876)
        welcome = wire.Welcome(seed.id, (NodeDelta(seed, 1, 0, 0, ()),))
        data = wire.encode(welcome)
        proto.dataReceived(struct.pack(">I", len(data)) + data)
        proto.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(server._node.seeds, [("10.0.0.7", 9989)])

    def test_before_and_after_sync_both_give_a_peer(self) -> None:
        seed = NodeInfo("10.0.0.7:9989", 3, "10.0.0.7", 9876, 9989, "seed")
        server = self.make(gossip_with="10.0.0.7:9876")
        seen: list[tuple[str, Any]] = []
        server.before("sync", lambda peer: seen.append(("before", peer)))
        server.after("sync", lambda peer: seen.append(("after", peer)))
        self.successResultOf(server.startService())
        self.addCleanup(self.stop)
        proto, _ = self.connect(9876)
        welcome = wire.Welcome(seed.id, (NodeDelta(seed, 1, 0, 0, ()),))
        data = wire.encode(welcome)
        proto.dataReceived(struct.pack(">I", len(data)) + data)
        proto.connectionLost(Failure(error.ConnectionDone()))
        (_, before), (_, after) = seen
        self.assertEqual([when for when, _ in seen], ["before", "after"])
        self.assertIsInstance(before, Peer)
        self.assertIsInstance(after, Peer)
        # before: known by the address given only; after: as the seed said
        self.assertEqual((before.id, before.generation), ("10.0.0.7:9876", 0))
        self.assertEqual((after.id, after.generation), (seed.id, 3))
        # a later sync with a node known at that address gives that node
        self.assertEqual(server._syncs.peer_at("10.0.0.7", 9876), after)

    def test_a_handler_blocking_15s_in_the_join_convicts_nobody(self) -> None:
        """A handler that blocks the reactor during the join (membership.md,
        Local pauses): the late first round convicts nobody."""
        seed = NodeInfo("10.0.0.7:9989", 3, "10.0.0.7", 9876, 9989, "seed")
        server = self.make(gossip_with="10.0.0.7:9876", gossip_interval=1.0)
        blocked: list[str] = []

        def blocking(key: str, peer: Peer) -> None:
            if not blocked:  # time.sleep(15) in the reactor thread, as seen
                blocked.append(peer.id)
                self.reactor.rightNow += 15.0  # time passes, nothing runs

        server.on("new_key", blocking)
        dead: list[str] = []
        server.on("peer_dead", lambda peer: dead.append(peer.id))
        self.successResultOf(server.startService())
        self.addCleanup(self.stop)
        proto, _ = self.connect(9876)
        deltas = [NodeDelta(seed, 1, 0, 1, (("role", Entry("seed", 1, 1.0)),))]
        deltas += [NodeDelta(other_node(i), 1, 0, 0, ()) for i in range(2, 6)]
        data = wire.encode(wire.Welcome(seed.id, tuple(deltas)))
        proto.dataReceived(struct.pack(">I", len(data)) + data)
        proto.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(blocked, [seed.id])
        self.reactor.advance(0)  # the round due during the stall runs now
        self.assertEqual(dead, [])
        self.assertEqual(len(server.peers(status="alive")), 5)
        self.assertEqual(server.stats["pauses"], 1)
        # the guard does not hide real silence: 8 s more, all convicted
        for _ in range(10):
            self.reactor.advance(1.0)
        self.assertEqual(len(dead), 5)

    def test_a_handler_blocking_15s_in_the_join_convicts_nobody_under_swim(
        self,
    ) -> None:
        """The same stall with SWIM: no conviction for it, a refutation."""
        seed = NodeInfo("10.0.0.7:9989", 3, "10.0.0.7", 9876, 9989, "seed")
        server = self.make(
            gossip_with="10.0.0.7:9876", gossip_interval=1.0, failure_detector="swim"
        )
        blocked: list[str] = []

        def blocking(key: str, peer: Peer) -> None:
            if not blocked:
                blocked.append(peer.id)
                self.reactor.rightNow += 15.0

        server.on("new_key", blocking)
        dead: list[str] = []
        server.on("peer_dead", lambda peer: dead.append(peer.id))
        self.successResultOf(server.startService())
        self.addCleanup(self.stop)
        proto, _ = self.connect(9876)
        deltas = [NodeDelta(seed, 1, 0, 1, (("role", Entry("seed", 1, 1.0)),))]
        deltas += [NodeDelta(other_node(i), 1, 0, 0, ()) for i in range(2, 6)]
        data = wire.encode(wire.Welcome(seed.id, tuple(deltas)))
        proto.dataReceived(struct.pack(">I", len(data)) + data)
        proto.connectionLost(Failure(error.ConnectionDone()))
        self.reactor.advance(0)
        self.assertEqual(dead, [])
        self.assertEqual(server.stats["pauses"], 1)
        # nobody answers the probes here: each is suspected in turn, and
        # convicted once its suspicion times out (2 to 6 s at N = 6); with no
        # nack either, this node's health multiplier slows its probes down
        for _ in range(80):
            self.reactor.advance(1.0)
        self.assertEqual(len(dead), 5)
        view = server._engine.detector_view(dead[0], self.reactor.seconds())
        self.assertEqual(view["kind"], "swim")


class HandlerTimeoutTests(ServerTestCase):
    """handler_timeout bounds what a Python handler can hold up."""

    def test_a_handler_that_never_finishes_holds_store_up_only_so_long(self) -> None:
        server = self.make(handler_timeout=5)
        server.on("new_key", lambda key: defer.Deferred())
        logs = LogCatcher(self)
        stored = server.store("k", "v")
        self.reactor.advance(4.9)
        self.assertNoResult(stored)
        self.reactor.advance(0.1)
        self.successResultOf(stored)
        self.assertEqual(server.stats["handler_timeouts"], 1)
        self.assertEqual(server.stats["handler_failures"], 0)
        (line,) = logs.matching("for event new_key did not finish within 5 s")
        self.assertIn("handler tests.net.test_server_unit.", line)

    def test_a_shutdown_that_never_fires_holds_the_stop_up_only_so_long(
        self,
    ) -> None:
        server = self.start()  # the default: 60 s
        server.on("shutdown", lambda: defer.Deferred())
        stopped = server.stopService()
        self.reactor.advance(59)
        self.assertNoResult(stopped)
        self.reactor.advance(1)
        self.successResultOf(stopped)
        self.assertFalse(self.reactor.udpPorts[0].listening, "ports closed")

    def test_the_timeout_is_checked(self) -> None:
        for bad in (0, -1, "soon", float("inf")):
            e = self.assertRaises(
                ConfigurationError, Server, ADDRESS, handler_timeout=bad
            )
            self.assertIn("handler_timeout=", str(e))


class EntityTests(ServerTestCase):
    def test_store_and_read(self) -> None:
        server = self.make()
        self.reactor.advance(0.5)
        self.assertIsNone(self.successResultOf(server.store("b", b"\x00")))
        self.successResultOf(server.store("a", "x"))
        self.assertEqual(server.value("a"), "x")
        self.assertIs(type(server.value("b")), bytes)
        self.assertIsNone(server.value("missing"))
        self.assertEqual(server.keys(), ["a", "b"])
        self.assertEqual(server.values(), ["x", b"\x00"])
        self.assertEqual(server.items(), {"a": "x", "b": b"\x00"})
        self.assertEqual(server.timestamp("a"), 1000.5)  # the reactor's clock
        self.assertEqual(server.digest(), {"a": 1000.5, "b": 1000.5})

    def test_timestamps(self) -> None:
        server = self.make()
        self.successResultOf(server.store("k", "v1", timestamp=50))
        self.successResultOf(server.store("k", "old", timestamp=49.5))
        self.assertEqual(server.value("k"), "v1")
        self.successResultOf(server.store("k", "v2", timestamp=50))
        self.assertEqual(server.value("k"), "v2")
        self.assertEqual(server.timestamp("k"), 50.0)
        self.assertIsInstance(server.timestamp("k"), float)
        for bad in ("50", None, True):
            if bad is None:
                continue
            self.assertRaises(TypeError, server.store, "k", "v", timestamp=bad)
        for bad in (float("nan"), float("inf"), -5, -0.5):
            e = self.assertRaises(ValueError, server.store, "k", "v", timestamp=bad)
            self.assertIn("timestamp must be seconds since the epoch", str(e))
            self.assertIn(f"got {bad}; omit it to use the current time", str(e))
        self.successResultOf(server.store("zero", "v", timestamp=0))
        self.assertEqual(server.value("k"), "v2")

    def test_store_after_clock_steps_back(self) -> None:
        # a later write stamped in the future: a store() without a timestamp
        # must still take effect once the clock is behind it
        server = self.make()
        self.successResultOf(server.store("k", "v1", timestamp=5000.0))
        self.successResultOf(server.store("k", "v2"))
        self.assertEqual(server.value("k"), "v2")
        self.assertGreaterEqual(server.timestamp("k"), 5000.0)  # type: ignore[arg-type]

    def test_delete(self) -> None:
        server = self.make()
        removed = []
        server.on("key_removed", lambda k, v: removed.append((k, v)))
        self.successResultOf(server.store("k", "v", timestamp=5000.0))
        self.successResultOf(server.delete("k"))  # the clock is behind: still works
        self.assertEqual(removed, [("k", "v")])
        self.assertIsNone(server.value("k"))
        self.assertIsNone(server.timestamp("k"))
        self.assertEqual((server.keys(), server.digest()), ([], {}))
        self.successResultOf(server.delete("k"))
        self.successResultOf(server.delete("never"))
        self.assertEqual(len(removed), 1)

    def test_key_events_fire_locally(self) -> None:
        server = self.make()
        seen: list[Any] = []
        server.on("new_key", lambda k, v, peer: seen.append(("new", k, v, peer.id)))
        server.on("key_changed", lambda k, v: seen.append(("changed", k, v)))
        self.successResultOf(server.store("k", "a"))
        self.successResultOf(server.store("k", "a"))  # same value: no event
        self.successResultOf(server.store("k", b"a"))  # other type: changed
        self.assertEqual(seen, [("new", "k", "a", server.id), ("changed", "k", b"a")])

    def test_key_validation(self) -> None:
        server = self.make()
        for key in (None, b"k", 3):
            e = self.assertRaises(TypeError, server.store, key, "v")
            self.assertIn("key must be a non-empty str", str(e))
            self.assertRaises(TypeError, server.delete, key)
        e = self.assertRaises(ValueError, server.store, "k" * 1025, "v")
        self.assertIn("1024", str(e))
        for value in (None, 3, ["v"], bytearray(b"v")):
            e = self.assertRaises(TypeError, server.store, "k", value)
            self.assertIn("value must be str or bytes", str(e))
        self.assertEqual(server.keys(), [])

    def test_an_empty_key_is_a_value_error_saying_so(self) -> None:
        """As a key too long or not UTF-8: a bad value of the right type."""
        server = self.make()
        for call in (lambda: server.store("", "v"), lambda: server.delete("")):
            e = self.assertRaises(ValueError, call)
            self.assertNotIsInstance(e, TypeError)
            self.assertEqual(str(e), "key is empty: a key is 1 to 1024 characters")
        self.assertEqual(server.keys(), [])

    def test_text_utf8_cannot_encode_is_refused(self) -> None:
        server = self.make()
        e = self.assertRaises(ValueError, server.store, "k", "ok\ud800")
        self.assertEqual(
            str(e),
            "value cannot be encoded as UTF-8: it has a lone surrogate ('\\ud800'"
            " at index 2); store text without them, or bytes",
        )
        for call in (server.store, lambda key, _: server.delete(key)):
            e = self.assertRaises(ValueError, call, "\udc80k", "v")
            self.assertIn("key cannot be encoded as UTF-8", str(e))
            self.assertIn("use a key without them", str(e))
        self.assertEqual(server.keys(), [])
        self.successResultOf(server.store("k", "\U0001f600 fine"))

    def test_value_too_large(self) -> None:
        server = self.make(max_datagram=600)
        e = self.assertRaises(ValueError, server.store, "k", "v" * 600)
        self.assertIn("max_datagram=600", str(e))
        self.successResultOf(server.store("k", "v" * 400))
        big = self.make(max_datagram=wire.MAX_UDP_PAYLOAD)
        self.successResultOf(big.store("k", b"v" * 60000))

    def test_size_limit_before_start_holds_after_start(self) -> None:
        # with port 0 the id grows once bound ("10.0.0.1:0" to
        # "10.0.0.1:40001"): the limit before start assumes the longest id
        server = self.make(tcp_port=0, udp_port=0)
        before = largest_accepted(server, 2000)
        self.successResultOf(server.store("k", "v" * before))
        self.successResultOf(server.startService())
        self.addCleanup(self.stop)
        after = largest_accepted(server, 2000)
        self.assertLessEqual(before, after)
        self.assertLessEqual(after - before, 6)  # conservative, not stingy
        self.successResultOf(server.store("j", "v" * before))

    def test_largest_accepted_value_is_gossiped(self) -> None:
        # the size check runs before start, when the generation is 0 and the
        # ports may still be 0: what it accepts must fit once started too
        server = self.make(max_datagram=600, tcp_port=0, udp_port=0)
        low = largest_accepted(server, 600)
        self.successResultOf(server.store("k", "v" * low))
        self.successResultOf(server.startService())
        self.addCleanup(self.stop)
        self.introduce(other_node(2))
        self.reactor.udpPorts[0].written.clear()
        # the other node asks for everything: the whole entry must travel
        syn = wire.Syn(other_node(2).id, (wire.DigestEntry(other_node(2).id, 5, 0, 1),))
        self.reactor.udpPorts[0].protocol.datagramReceived(
            wire.encode(syn), ("10.0.0.2", 5555)
        )
        ((syn_ack, _),) = self.reactor.sent()
        assert isinstance(syn_ack, wire.SynAck)
        self.assertEqual([d.info.id for d in syn_ack.deltas], [server.id])
        self.assertEqual(syn_ack.deltas[0].entries[0][1].value, "v" * low)


class RemoteEventTests(ServerTestCase):
    def test_remote_key_events_with_peer(self) -> None:
        server = self.start()
        seen: list[Any] = []
        for event in ("new_key", "key_changed", "key_removed"):
            server.on(
                event,
                lambda k, v, peer, event=event: seen.append(
                    (event, k, v, peer.id, peer.generation)
                ),
            )
        first = other_node(2, generation=5)
        self.introduce(first, ("a", "1"), ("b", b"2"))
        node_id = first.id
        self.assertEqual(
            seen,
            [("new_key", "a", "1", node_id, 5), ("new_key", "b", b"2", node_id, 5)],
        )
        self.assertEqual(server.stats["nodes"], 2)
        seen.clear()
        # the node restarts without persistence: it only has "a", changed
        self.introduce(other_node(2, generation=6), ("a", "one"))
        self.assertEqual(
            sorted(seen),
            [
                ("key_changed", "a", "one", node_id, 6),
                ("key_removed", "b", b"2", node_id, 6),
            ],
        )
        self.assertEqual(server.peer(node_id).keys(), ["a"])  # type: ignore[union-attr]
        # its old incarnation is ignored from now on
        seen.clear()
        self.introduce(other_node(2, generation=5), ("a", "1"), ("c", "3"))
        self.assertEqual(seen, [])
        self.assertEqual(server.peer(node_id).generation, 6)  # type: ignore[union-attr]


class PeersTests(ServerTestCase):
    def test_peers_filtering(self) -> None:
        server = self.start()
        self.introduce(other_node(2, "seed"), ("role", "web"))
        self.introduce(other_node(3, "peer"))
        self.introduce(other_node(4, "peer"))
        goodbye = wire.Goodbye(other_node(4).id, 5)
        self.reactor.udpPorts[0].protocol.datagramReceived(
            wire.encode(goodbye), ("10.0.0.4", 5555)
        )
        ids = lambda peers: [p.id for p in peers]  # noqa: E731
        self.assertEqual(ids(server.peers()), [other_node(i).id for i in (2, 3, 4)])
        self.assertEqual(ids(server.peers(status="left")), [other_node(4).id])
        self.assertEqual(ids(server.peers(status="dead")), [])
        self.assertEqual(
            ids(server.peers(status="alive")), [other_node(i).id for i in (2, 3)]
        )
        self.assertEqual(ids(server.peers(role="seed")), [other_node(2).id])
        self.assertEqual(
            ids(server.peers(status="alive", role="peer")), [other_node(3).id]
        )
        seed = server.peers(role="seed")[0]
        self.assertTrue(seed.is_seed and seed.is_alive)
        self.assertFalse(seed.is_peer or seed.is_dead)
        self.assertEqual(seed.value("role"), "web")
        self.assertEqual(seed.keys(), ["role"])
        self.assertEqual(seed.timestamp("role"), 1.0)
        self.assertEqual(
            (seed.address, seed.tcp_port, seed.udp_port), ("10.0.0.2", 5555, 5555)
        )
        self.assertEqual(server.peer(seed.id), seed)
        self.assertIsNone(server.peer("10.9.9.9:1"))

    def test_bad_filters(self) -> None:
        server = self.make()
        e = self.assertRaises(ValueError, server.peers, status="alvie")
        self.assertIn("alive", str(e))
        e = self.assertRaises(ValueError, server.peers, role="master")
        self.assertIn("seed", str(e))

    def test_role(self) -> None:
        self.assertEqual(self.make().me.role, "seed")
        self.assertEqual(self.make(gossip_with="10.0.0.9:5555").me.role, "peer")
        # itself as its only seed: it is the seed
        self.assertEqual(self.make(gossip_with=f"{ADDRESS}:5555").me.role, "seed")


class EventRegistrationTests(ServerTestCase):
    def test_unknown_events(self) -> None:
        server = self.make()
        for register in (server.on, server.before, server.after):
            e = self.assertRaises(ValueError, register, "nope", print)
            self.assertIn("valid events are", str(e))
        self.assertRaises(ValueError, server.on, "gossip", print)
        self.assertRaises(ValueError, server.after, "new_key", print)

    def test_decorators(self) -> None:
        server = self.make()

        @server.on("new_key")
        def handler(key: str, value: str) -> None:
            pass

        @server.before("sync")
        def sync(seed: str) -> None:
            pass

        @server.after("sync")
        def synced() -> None:
            pass

        self.assertTrue(callable(handler) and callable(sync) and callable(synced))
        self.assertTrue(server.events.has_handlers("before_sync"))

    def test_failing_key_handler_does_not_stop_store(self) -> None:
        server = self.make()
        ran = []
        server.on("new_key", lambda: 1 / 0)
        server.on("new_key", lambda k: ran.append(k))
        self.assertIsNone(self.successResultOf(server.store("k", "v")))
        self.assertEqual(ran, ["k"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class BadInputTests(ServerTestCase):
    def test_bad_datagrams_counted(self) -> None:
        server = self.start()
        protocol = self.reactor.udpPorts[0].protocol
        protocol.datagramReceived(b"junkjunk", ("10.0.0.9", 1))
        protocol.datagramReceived(b"x" * 2000, ("10.0.0.9", 1))
        self.assertEqual(server.stats["dropped"], 2)
        self.assertEqual(
            server.stats["dropped_by_reason"], {"bad-magic": 1, "oversized": 1}
        )


def largest_accepted(server: Server, high: int) -> int:
    """The longest value of key "k" the server's size check accepts."""
    low = 1
    while low < high:
        mid = (low + high + 1) // 2
        try:
            check_fits("k", "v" * mid, server._state.me.info, server.max_datagram)
        except ValueError:
            high = mid - 1
        else:
            low = mid
    return low
