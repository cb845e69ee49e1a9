"""Ports: binding UDP then TCP (and the control API's), closing every one."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.trial import unittest

from pokan.errors import StartupError
from pokan.net.listen_errors import ListenError
from pokan.net.ports import Ports
from tests.net.test_server_unit import ADDRESS, FakeTCPPort, UDPMemoryReactor
from tests.support import LogCatcher


class PortsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = UDPMemoryReactor()
        self.ports = Ports()

    def listen(self, udp: int = 5555, tcp: int = 5556) -> tuple[int, int]:
        return self.ports.listen(
            self.reactor, ADDRESS, udp, tcp, DatagramProtocol(), Factory()
        )

    def test_binds_udp_then_tcp(self) -> None:
        self.assertFalse(self.ports)
        self.assertEqual(self.listen(), (5555, 5556))
        self.assertTrue(self.ports)
        (udp,), (tcp,) = self.reactor.udpPorts, self.reactor.tcpPorts
        self.assertEqual(self.ports.open, [udp, tcp])
        self.assertEqual(self.reactor.udpArgs[0][:2], (5555, ADDRESS))

    def test_port_zero_gives_the_ports_bound(self) -> None:
        udp, tcp = self.listen(0, 0)
        self.assertEqual(udp, self.reactor.udpPorts[0].port)
        self.assertEqual(tcp, self.reactor.tcpPorts[0].port)
        self.assertNotIn(0, (udp, tcp))

    def test_tcp_in_use_closes_udp_again(self) -> None:
        self.reactor.busy.add("tcp")
        with self.assertRaises(ListenError) as caught:
            self.listen()
        self.assertIn("5556/tcp", str(caught.exception))
        self.assertFalse(self.reactor.udpPorts[0].listening)
        self.assertEqual(self.ports.open, [])

    def test_udp_in_use(self) -> None:
        self.reactor.busy.add("udp")
        with self.assertRaises(ListenError) as caught:
            self.listen()
        self.assertIn("5555/udp", str(caught.exception))
        self.assertEqual(self.reactor.tcpPorts, [])

    def test_a_port_added_is_closed_too(self) -> None:
        self.listen()
        control = FakeTCPPort(7373)
        self.ports.add(lambda: control)
        self.assertIsNone(self.successResultOf(self.ports.close()))
        self.assertFalse(control.listening)
        self.assertFalse(self.reactor.udpPorts[0].listening)
        self.assertEqual(self.ports.open, [])

    def test_a_port_that_cannot_be_added_closes_all(self) -> None:
        self.listen()

        def refused() -> Any:
            raise StartupError("control API port in use")

        self.assertRaises(StartupError, self.ports.add, refused)
        self.assertFalse(self.reactor.tcpPorts[0].listening)
        self.assertEqual(self.ports.open, [])

    def test_closing_goes_on_past_a_port_that_fails(self) -> None:
        logs = LogCatcher(self)
        self.listen()

        class Stuck(FakeTCPPort):
            def stopListening(self) -> defer.Deferred[None]:
                return defer.fail(OSError("stuck"))

        self.ports.open.insert(0, Stuck(1))
        self.assertIsNone(self.successResultOf(self.ports.close()))
        self.assertFalse(self.reactor.tcpPorts[0].listening)
        self.assertEqual(len(logs.matching("closing a port failed")), 1)
        self.flushLoggedErrors(OSError)
