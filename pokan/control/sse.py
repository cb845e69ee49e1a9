"""``GET /v1/events``: every event of the node as Server-Sent Events.

Each event is ``event: NAME`` and ``data: {json}``. A ``: keepalive``
comment every 15 s keeps proxies and idle timeouts away. Writes follow the
connection's flow control: while the client reads slower than events come,
they queue, up to a bound; past it the client is dropped (counted, logged
throttled), so a stuck client costs bounded memory.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson
from twisted.internet import task
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web import resource, server
from twisted.web.server import Request as IRequest
from zope.interface import implementer

from pokan.control.feed import KEY_EVENTS
from pokan.control.jsonio import ApiError, error, query
from pokan.control.views import encode_value
from pokan.net.events import MEMBERSHIP_EVENTS

log = Logger()

#: seconds between keepalive comments
KEEPALIVE = 15.0
#: bytes queued for one client at most, while it does not read
MAX_BUFFER = 1024 * 1024
#: event streams open at once, at most
MAX_STREAMS = 64


def event_data(
    event: str, args: tuple[Any, ...], peer: Any, now: float
) -> dict[str, Any]:
    """The JSON of one event: its name, time, node and (key events) key and value."""
    data: dict[str, Any] = {"event": event, "time": now, "node": None}
    if peer is not None:
        data["node"] = peer.id
    if event in KEY_EVENTS and args:
        data["key"] = args[0]
        if event != "key_removed" and len(args) > 1 and args[1] is not None:
            data.update(encode_value(args[1]))
    elif event in MEMBERSHIP_EVENTS and peer is not None:
        data["status"] = peer.status
    return data


def frame(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@implementer(IPushProducer)
class StreamClient:
    """One open event stream: writes while the client reads, queues (bounded)
    while its connection is paused, drops it past ``max_buffer`` bytes."""

    def __init__(self, request: IRequest, max_buffer: int = MAX_BUFFER) -> None:
        self.request = request
        self.max_buffer = max_buffer
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.paused = False
        self.closed = False
        self.dropped = False

    def send(self, chunk: bytes) -> None:
        if self.closed:
            return
        if not self.paused:
            self.request.write(chunk)
            return
        self.queue.append(chunk)
        self.queued += len(chunk)
        if self.queued > self.max_buffer:
            self.drop()

    def drop(self) -> None:
        """The client fell too far behind: close its connection."""
        self.dropped = True
        self.closed = True
        self.queue.clear()
        self.queued = 0
        transport = getattr(self.request, "transport", None)
        if transport is not None:
            transport.abortConnection()

    # IPushProducer: the connection's flow control
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while self.queue and not self.paused and not self.closed:
            chunk = self.queue.popleft()
            self.queued -= len(chunk)
            self.request.write(chunk)

    def stopProducing(self) -> None:
        self.closed = True
        self.queue.clear()


class EventStream(resource.Resource):
    """``GET /v1/events[?event=NAME...]``: a text/event-stream."""

    isLeaf = True

    def __init__(self, node: Any, clock: Any, keepalive: float = KEEPALIVE) -> None:
        super().__init__()
        self.node = node
        self.clock = clock
        self.keepalive = keepalive
        self.clients: set[StreamClient] = set()
        #: clients dropped for reading too slowly
        self.dropped = 0
        self._last_drop_log = -float("inf")

    def render_GET(self, request: IRequest) -> bytes | int:
        known = self.node.events.known_events
        try:
            wanted = query(request, "event")
        except ApiError as e:
            return error(request, e.code, e.message)
        unknown = [e for e in wanted if e not in known]
        if unknown:
            return error(
                request,
                400,
                f"unknown event {unknown[0]!r}; events are: {', '.join(known)}",
            )
        if len(self.clients) >= MAX_STREAMS:
            return error(
                request, 503, f"{MAX_STREAMS} event streams are open already: close one"
            )
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")
        client = StreamClient(request)
        request.registerProducer(client, True)
        self.clients.add(client)

        def on_event(event: str, args: tuple[Any, ...], peer: Any) -> None:
            client.send(
                frame(event, event_data(event, args, peer, self.clock.seconds()))
            )
            if client.dropped:
                self._dropped(request)

        stop_listening = self.node.events.listen(on_event, wanted or None)
        beat = task.LoopingCall(client.send, b": keepalive\n\n")
        beat.clock = self.clock
        beat.start(self.keepalive, now=False)

        def finished(_: object) -> None:
            stop_listening()
            if beat.running:
                beat.stop()
            client.closed = True
            self.clients.discard(client)

        request.notifyFinish().addBoth(finished)
        request.write(b": pokan event stream\nretry: 3000\n\n")
        return server.NOT_DONE_YET

    def _dropped(self, request: IRequest) -> None:
        self.dropped += 1
        now = self.clock.seconds()
        if now - self._last_drop_log >= 60:
            self._last_drop_log = now
            log.warn(
                "control API: dropped an event stream client that read too slowly"
                " ({count} so far; each may queue {limit} bytes)",
                count=self.dropped,
                limit=MAX_BUFFER,
            )

    def close_all(self) -> None:
        """End every stream (the node stops)."""
        for client in list(self.clients):
            if not client.closed:
                client.closed = True
                client.request.unregisterProducer()
                client.request.finish()
