"""GET /v1/events: a live SSE stream, and the bound on a slow client's buffer."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, protocol
from twisted.trial import unittest
from twisted.web.client import Agent
from twisted.web.http_headers import Headers

from pokan.control.sse import StreamClient, event_data
from tests.control_support import call
from tests.support import global_reactor, start_server, wait_until


class Collect(protocol.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.ended = False

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object = None) -> None:
        self.ended = True


class LiveStreamTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_events_as_they_happen(self) -> Any:
        a = yield start_server(self, control="127.0.0.1:0")
        url = f"{a.control_address}/v1/events?event=new_key&event=key_removed"
        response = yield Agent(global_reactor()).request(
            b"GET", url.encode(), Headers()
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders(b"Content-Type"),
            [b"text/event-stream; charset=utf-8"],
        )
        body = Collect()
        response.deliverBody(body)
        self.addCleanup(lambda: body.transport.stopProducing())  # type: ignore[union-attr]
        yield wait_until(lambda: b"pokan event stream" in body.data)
        yield a.store("colour", "blue")
        yield a.delete("colour")
        yield wait_until(
            lambda: b"event: key_removed" in body.data, message=lambda: repr(body.data)
        )
        frames = [f for f in body.data.split(b"\n\n") if f.startswith(b"event:")]
        first = frames[0].split(b"\n")
        self.assertEqual(first[0], b"event: new_key")
        data = json.loads(first[1][len(b"data: ") :])
        self.assertEqual(data["key"], "colour")
        self.assertEqual(data["value"], "blue")
        self.assertEqual(data["type"], "str")
        self.assertEqual(data["node"], a.id)

    @defer.inlineCallbacks
    def test_a_stopping_node_sends_shutdown_then_ends_the_stream(self) -> Any:
        a = yield start_server(self, control="127.0.0.1:0")
        url = f"{a.control_address}/v1/events"
        response = yield Agent(global_reactor()).request(b"GET", url.encode())
        body = Collect()
        response.deliverBody(body)
        yield wait_until(lambda: b"pokan event stream" in body.data)
        yield a.stopService()
        yield wait_until(lambda: body.ended, message="the stream to end")
        self.assertIn(b"event: shutdown", body.data)

    @defer.inlineCallbacks
    def test_unknown_event_is_400(self) -> Any:
        a = yield start_server(self, control="127.0.0.1:0")
        code, body = yield call(a.control_address, "GET", "/v1/events?event=nope")
        self.assertEqual(code, 400)
        self.assertIn("unknown event 'nope'", body["error"])


class FakeTransport:
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True


class FakeRequest:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.transport = FakeTransport()

    def write(self, data: bytes) -> None:
        self.written.append(data)


class StreamClientTests(unittest.TestCase):
    def test_writes_while_read_queues_while_paused(self) -> None:
        request = FakeRequest()
        client = StreamClient(request, max_buffer=100)  # type: ignore[arg-type]
        client.send(b"one")
        client.pauseProducing()
        client.send(b"two")
        self.assertEqual(request.written, [b"one"])
        client.resumeProducing()
        self.assertEqual(request.written, [b"one", b"two"])
        self.assertFalse(client.dropped)

    def test_a_client_that_does_not_read_is_dropped_at_the_bound(self) -> None:
        request = FakeRequest()
        client = StreamClient(request, max_buffer=100)  # type: ignore[arg-type]
        client.pauseProducing()
        for _ in range(10):
            client.send(b"x" * 10)
        self.assertFalse(client.dropped)
        client.send(b"x")
        self.assertTrue(client.dropped)
        self.assertTrue(request.transport.aborted)
        self.assertEqual(client.queued, 0)
        client.send(b"more")  # nothing queued any more
        self.assertEqual(len(client.queue), 0)

    def test_event_data(self) -> None:
        data = event_data("key_changed", ("k", b"\x00"), None, 5.0)
        self.assertEqual(
            data,
            {
                "event": "key_changed",
                "time": 5.0,
                "node": None,
                "key": "k",
                "value": "AA==",
                "type": "bytes",
            },
        )
