"""The control port's request bodies stay bounded, chunked uploads included."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.web import resource

from pokan.control.site import ControlRoot, ControlSite


class Echo(resource.Resource):
    isLeaf = True

    def render_PUT(self, request: object) -> bytes:
        return b"stored " + str(len(request.content.read())).encode()  # type: ignore[attr-defined]


def exchange(
    *parts: bytes, limit: int = 64, write_limit: Callable[[], str] | None = None
) -> bytes:
    """Send ``parts`` to a ControlSite (bodies over ``limit`` bytes refused)."""
    root = ControlRoot()
    root.putChild(b"echo", Echo())
    site = ControlSite(root, write_limit, reactor=task.Clock())  # no global reactor
    site.requestFactory = type("Small", (site.requestFactory,), {"max_body": limit})
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport = StringTransport()
    channel.makeConnection(transport)
    for part in parts:
        channel.dataReceived(part)
    return transport.value()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


HEAD = b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


class ChunkedTests(unittest.TestCase):
    def test_a_chunked_body_within_the_limit_is_read(self) -> None:
        reply = exchange(HEAD, chunk(b"a" * 30), chunk(b"b" * 30), b"0\r\n\r\n")
        self.assertIn(b"200 OK", reply)
        self.assertIn(b"stored 60", reply)

    def test_a_chunked_body_over_the_limit_is_refused_and_not_kept(self) -> None:
        parts = [chunk(b"x" * 40) for _ in range(50)]  # 2,000 bytes, limit 64
        reply = exchange(HEAD, *parts, b"0\r\n\r\n")
        self.assertIn(b"413", reply)
        self.assertIn(b"request body over 64 bytes", reply)
        self.assertNotIn(b"stored", reply)

    def test_a_declared_length_over_the_limit_is_refused(self) -> None:
        head = b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        reply = exchange(head, b"y" * 100)
        self.assertIn(b"413", reply)


class TooLargeMessageTests(unittest.TestCase):
    """A 413 states the limit that applied: for a key write, what one may take."""

    def refused(self, method: bytes, path: bytes) -> bytes:
        head = b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        reply = exchange(
            head % (method, path), b"y" * 100, write_limit=lambda: "WRITE LIMIT"
        )
        self.assertIn(b"413", reply)
        self.assertIn(b"request body over 64 bytes, the most the control API", reply)
        self.assertNotIn(b"64 KiB", reply)
        return reply

    def test_a_key_write_says_what_one_write_may_take(self) -> None:
        reply = self.refused(b"PUT", b"/v1/keys/colour")
        self.assertIn(b"reads; WRITE LIMIT", reply)

    def test_other_requests_say_the_body_limit_only(self) -> None:
        for method, path in ((b"POST", b"/v1/join"), (b"PUT", b"/echo")):
            self.assertNotIn(b"WRITE LIMIT", self.refused(method, path))
