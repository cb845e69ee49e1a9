"""Integration: Server as a Twisted service, and the blocking start()/stop()."""

from __future__ import annotations

import errno
import os
import socket
import sys
import tempfile
import textwrap
from typing import Any

from twisted.application import service
from twisted.internet import defer, error
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from pokan import Server, StartupError
from tests.support import make_server, run, start_server, stop_all, wait_until


def bound(kind: int, port: int = 0, test: unittest.TestCase | None = None) -> Any:
    """A socket bound (and, for TCP, listening) on 127.0.0.1:port.

    TCP sets SO_REUSEADDR, as Twisted's listenTCP does: a closed server
    leaves its accepted connections (inbound watches) in TIME_WAIT, which
    is no open port; Linux still refuses the bind while anything listens.
    """
    sock = socket.socket(socket.AF_INET, kind)
    if kind == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    if kind == socket.SOCK_STREAM:
        sock.listen(1)
    if test is not None:
        test.addCleanup(sock.close)
    return sock


class ServiceTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_inside_a_multiservice(self) -> Any:
        seed = yield start_server(self)
        yield seed.store("role", "seed")
        app = service.MultiService()
        neighbour = service.Service()
        neighbour.setName("neighbour")
        neighbour.setServiceParent(app)
        node = make_server(gossip_with=f"127.0.0.1:{seed.tcp_port}")
        node.setName("pokan")
        node.setServiceParent(app)
        yield node.store("role", "embedded")
        app.startService()
        self.addCleanup(stop_all, [node])
        self.assertTrue(neighbour.running)
        self.assertIs(app.getServiceNamed("pokan"), node)
        yield wait_until(
            lambda: (
                (p := seed.peer(node.id)) is not None
                and p.value("role") == "embedded"
                and (q := node.peer(seed.id)) is not None
                and q.value("role") == "seed"
            ),
            timeout=10,
            message="the embedded node and the seed to know each other",
        )
        tcp, udp = node.tcp_port, node.udp_port
        yield app.stopService()
        self.assertFalse(node.running)
        self.assertFalse(neighbour.running)
        # its ports are closed: binding them again works
        bound(socket.SOCK_STREAM, tcp).close()
        bound(socket.SOCK_DGRAM, udp).close()

    @defer.inlineCallbacks
    def test_the_same_server_restarts(self) -> Any:
        """stopService then startService: a new generation, same ports and keys."""
        seed = yield start_server(self)
        node = make_server(gossip_with=f"127.0.0.1:{seed.tcp_port}")
        self.addCleanup(stop_all, [node])
        yield node.store("before", "start")  # persisted under "127.0.0.1:0"
        yield node.startService()
        yield node.store("after", "start")
        first = node.me.generation
        yield wait_until(
            lambda: (p := seed.peer(node.id)) is not None and len(p.keys()) == 2,
            timeout=10,
            message="the seed to learn both keys",
        )
        ports = (node.tcp_port, node.udp_port)
        yield node.stopService()
        yield node.startService()
        self.assertEqual((node.tcp_port, node.udp_port), ports)
        self.assertGreater(node.me.generation, first)
        self.assertEqual(node.items(), {"before": "start", "after": "start"})
        self.assertEqual(node.peers(), [node.peer(seed.id)])
        yield node.store("after", "restart")
        yield wait_until(
            lambda: (
                (p := seed.peer(node.id)) is not None
                and p.generation == node.me.generation
                and p.is_alive
                and p.items() == {"before": "start", "after": "restart"}
            ),
            timeout=10,
            message=lambda: f"the seed to take the restart: {seed.peer(node.id)}",
        )
        for server in (seed, node):
            self.assertEqual(server.stats["dropped"], 0)
            self.assertEqual(server.stats["send_errors"], 0)

    @defer.inlineCallbacks
    def test_start_service_fires_once_listening(self) -> Any:
        server = Server("127.0.0.1", tcp_port=0, udp_port=0)
        self.addCleanup(stop_all, [server])
        d = server.startService()
        self.assertIsInstance(d, defer.Deferred)
        yield d
        self.assertTrue(server.running)
        self.assertNotEqual(server.tcp_port, 0)
        self.assertNotEqual(server.udp_port, 0)
        self.assertEqual(server.id, f"127.0.0.1:{server.udp_port}")
        # listening now: a TCP connection is accepted at once
        conn = socket.create_connection(("127.0.0.1", server.tcp_port), timeout=2)
        conn.close()

    @defer.inlineCallbacks
    def test_stop_service_closes_the_ports(self) -> Any:
        server = yield start_server(self)
        tcp, udp = server.tcp_port, server.udp_port
        d = server.stopService()
        self.assertIsInstance(d, defer.Deferred)
        yield d
        again = yield start_server(self, tcp_port=tcp, udp_port=udp)
        self.assertEqual((again.tcp_port, again.udp_port), (tcp, udp))

    @defer.inlineCallbacks
    def test_udp_port_in_use(self) -> Any:
        taken = bound(socket.SOCK_DGRAM, test=self).getsockname()[1]
        server = Server("127.0.0.1", tcp_port=0, udp_port=taken)
        self.addCleanup(stop_all, [server])
        error = yield self.assertFailure(server.startService(), StartupError)
        message = str(error)
        self.assertIn("already in use", message)
        self.assertIn(f"127.0.0.1:{taken}/udp", message)
        # a Python program sets the Server's arguments, not twistd's options
        self.assertIn("Choose another port (udp_port=) or address.", message)
        self.assertNotIn("--", message)
        self.assertFalse(server.running)

    @defer.inlineCallbacks
    def test_tcp_port_in_use(self) -> Any:
        taken = bound(socket.SOCK_STREAM, test=self).getsockname()[1]
        server = Server("127.0.0.1", tcp_port=taken, udp_port=0)
        self.addCleanup(stop_all, [server])
        error = yield self.assertFailure(server.startService(), StartupError)
        message = str(error)
        self.assertIn("already in use", message)
        self.assertIn(f"127.0.0.1:{taken}/tcp", message)
        self.assertFalse(server.running)
        # the UDP port it had bound was closed again: a retry on another port works
        server.tcp_port = 0
        yield server.startService()
        self.assertTrue(server.running)


class PrivilegedStartTests(unittest.TestCase):
    """twistd binds ports in privilegedStartService, before the reactor runs."""

    @defer.inlineCallbacks
    def test_binds_the_ports_then_start_service_uses_them(self) -> Any:
        server = Server("127.0.0.1", tcp_port=0, udp_port=0, gossip_interval=0.05)
        self.addCleanup(stop_all, [server])
        server.privilegedStartService()
        self.assertFalse(server.running)
        tcp, udp = server.tcp_port, server.udp_port
        self.assertNotEqual((tcp, udp), (0, 0))
        socket.create_connection(("127.0.0.1", tcp), timeout=2).close()
        yield server.startService()
        self.assertTrue(server.running)
        self.assertEqual((server.tcp_port, server.udp_port), (tcp, udp))
        joiner = yield start_server(self, gossip_with=f"127.0.0.1:{tcp}")
        yield wait_until(
            lambda: server.peer(joiner.id) is not None,
            timeout=10,
            message="the joiner to sync with the node",
        )

    def test_port_in_use_raises_at_once(self) -> None:
        taken = bound(socket.SOCK_DGRAM, test=self).getsockname()[1]
        server = Server("127.0.0.1", tcp_port=0, udp_port=taken)
        error = self.assertRaises(StartupError, server.privilegedStartService)
        self.assertIn(f"127.0.0.1:{taken}/udp", str(error))
        self.assertIn("already in use", str(error))

    @defer.inlineCallbacks
    def test_stop_service_closes_ports_bound_without_a_start(self) -> Any:
        server = Server("127.0.0.1", tcp_port=0, udp_port=0)
        server.privilegedStartService()
        tcp, udp = server.tcp_port, server.udp_port
        yield server.stopService()
        bound(socket.SOCK_STREAM, tcp).close()
        bound(socket.SOCK_DGRAM, udp).close()


class RefusingReactor(MemoryReactorClock):
    """A reactor whose listenUDP fails with the given errno."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    def listenUDP(
        self, port: int, protocol: Any, interface: str = "", **kw: Any
    ) -> Any:
        reason = OSError(self.code, os.strerror(self.code))
        raise error.CannotListenError(interface, port, reason)


class ListenErrorTests(unittest.TestCase):
    """What a port that cannot be bound says, and what it tells to do."""

    def refused(self, code: int, address: str = "10.255.255.1") -> StartupError:
        server = Server(address, udp_port=5641, reactor=RefusingReactor(code))
        error = self.assertRaises(StartupError, server.privilegedStartService)
        self.assertFalse(server.running)
        return error

    def test_an_address_not_of_this_host(self) -> None:
        message = str(self.refused(errno.EADDRNOTAVAIL))
        self.assertEqual(
            message,
            "cannot listen on 10.255.255.1:5641/udp: cannot assign requested"
            " address. 10.255.255.1 is not an IP address of this host. Use one of"
            " its own as the address; `ip address` lists them.",
        )

    def test_a_port_in_use(self) -> None:
        message = str(self.refused(errno.EADDRINUSE, "127.0.0.1"))
        self.assertEqual(
            message,
            "cannot listen on 127.0.0.1:5641/udp: address already in use. Is"
            " another node running there? Choose another port (udp_port=) or"
            " address.",
        )

    def test_other_reasons(self) -> None:
        message = str(self.refused(errno.EACCES, "127.0.0.1"))
        self.assertEqual(
            message,
            "cannot listen on 127.0.0.1:5641/udp: Permission denied. Choose"
            " another port (udp_port=) or address.",
        )


def grep(lines: list[str], text: str) -> list[str]:
    return [line for line in lines if text in line]


def python(script: str) -> Any:
    """Run a Python script in a fresh interpreter (its own global reactor)."""
    return run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tempfile.gettempdir(),
        timeout=30,
    )


class BlockingTests(unittest.TestCase):
    def test_start_runs_on_epoll_and_stop_ends_it(self) -> None:
        result = python(
            """
            from pokan import Server

            server = Server("127.0.0.1", tcp_port=0, udp_port=0)
            server.use_epoll()
            assert server.using_epoll()

            @server.on("start")
            def started():
                from twisted.internet import reactor
                print(type(reactor).__name__, bool(server.running), flush=True)
                server.stop()

            server.on("shutdown", lambda: print("shutdown", flush=True))
            server.start()
            print("start() returned; running:", bool(server.running))
            """
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.splitlines(),
            ["EPollReactor True", "shutdown", "start() returned; running: False"],
        )

    def test_a_second_start_says_why_it_cannot(self) -> None:
        result = python(
            """
            from pokan import ConfigurationError, Server

            server = Server("127.0.0.1", tcp_port=0, udp_port=0)
            server.on("start", server.stop)
            server.start()
            try:
                server.start()
            except ConfigurationError as e:
                print("refused:", e)
            """
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("refused: start() runs Twisted's reactor", result.stdout)
        self.assertIn("startService()", result.stdout)

    def test_start_logs_to_stderr(self) -> None:
        """A program that did not begin logging sees pokan's info and warnings."""
        dead = bound(socket.SOCK_STREAM, test=self).getsockname()[1]
        result = python(
            f"""
            from pokan import Server

            server = Server(
                "127.0.0.1", tcp_port=0, udp_port=0, gossip_with="127.0.0.1:{dead}"
            )
            tries = []

            @server.before("sync")
            def again(seed):
                tries.append(seed)
                if len(tries) == 2:  # the first failed, and was logged
                    server.stop()

            server.start()
            print("stopped")
            """
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, "stopped\n")
        lines = result.stderr.splitlines()
        self.assertEqual(
            len(grep(lines, "[pokan.net.server#info] pokan node")), 2, lines
        )
        self.assertEqual(
            len(grep(lines, "[pokan.net.seeds#warn] could not sync with any seed")),
            1,
            lines,
        )
        self.assertEqual(grep(lines, "#debug"), [])

    def test_start_leaves_a_program_s_own_logging_alone(self) -> None:
        result = python(
            """
            import sys
            from twisted.logger import globalLogBeginner, textFileLogObserver
            from pokan import Server

            globalLogBeginner.beginLoggingTo(
                [textFileLogObserver(sys.stdout)], redirectStandardIO=False
            )
            server = Server("127.0.0.1", tcp_port=0, udp_port=0)
            server.on("start", server.stop)
            server.start()
            """
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, "")
        lines = result.stdout.splitlines()
        self.assertEqual(
            len(grep(lines, "[pokan.net.server#info] pokan node")), 2, lines
        )

    def test_use_epoll_after_another_reactor_is_a_clear_error(self) -> None:
        result = python(
            """
            import sys
            from twisted.internet import selectreactor
            selectreactor.install()
            from pokan import ConfigurationError, Server

            server = Server("127.0.0.1")
            try:
                server.use_epoll()
            except ConfigurationError as e:
                print(e)
                sys.exit(3)
            """
        )
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertIn("epoll was asked for", result.stdout)
        self.assertIn("SelectReactor", result.stdout)
        self.assertIn("already installed", result.stdout)
        self.assertEqual(result.stderr, "")

    def test_start_with_a_port_in_use_raises_startup_error(self) -> None:
        taken = bound(socket.SOCK_DGRAM, test=self).getsockname()[1]
        result = python(
            f"""
            from pokan import Server, StartupError

            server = Server("127.0.0.1", tcp_port=0, udp_port={taken})
            try:
                server.start()
            except StartupError as e:
                print("StartupError:", e)
            """
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("StartupError: cannot listen on", result.stdout)
        self.assertIn(f"127.0.0.1:{taken}/udp", result.stdout)
        self.assertIn("already in use", result.stdout)
        self.assertNotIn("cannot listen", result.stderr)  # raised, not logged too
