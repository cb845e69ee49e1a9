"""The control port's HTTP site: body limit, token check, the resource root.

:class:`ControlSite` serves a :class:`ControlRoot`; the API lives at
``/v1``, and other parts attach their own resources to the same root with
``site.root.putChild(b"metrics", ...)`` (or ``b""`` and ``b"static"`` for the
dashboard): every child, whenever attached, is behind the same token check.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.web import resource, server
from twisted.web.server import Request as IRequest

from pokan.control.auth import BearerCheck
from pokan.control.jsonio import ErrorResource, error, not_found

#: the largest request body read: far more than any one write takes (a key
#: and its value fit in one gossip datagram, see views.write_limit)
MAX_BODY = 1024 * 1024
#: the paths of key writes, whose 413 also says what one write may take
KEY_WRITES = b"/v1/keys/"


class BoundedRequest(server.Request):
    """A request whose body is kept up to :data:`MAX_BODY` bytes only.

    A longer body is read and thrown away as it arrives (memory stays
    bounded), and the request is answered 413.
    """

    max_body = MAX_BODY

    def gotLength(self, length: int | None) -> None:
        self.body_size = 0
        self.too_large = length is not None and length > self.max_body
        if self.too_large:
            self.content = io.BytesIO()
        else:
            super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self.body_size += len(data)
        if self.body_size > self.max_body:
            self.too_large = True
        if not self.too_large:
            super().handleContentChunk(data)

    def process(self) -> None:
        if getattr(self, "too_large", False):
            site = self.channel.site  # type: ignore[attr-defined]
            self.site = site
            self.setHeader(b"Connection", b"close")
            writes = self.method == b"PUT" and self.path.startswith(KEY_WRITES)
            limit = site.write_limit if writes else None
            self.write(error(self, 413, too_large(self.max_body, limit)))
            self.finish()
            return
        super().process()


def too_large(max_body: int, write_limit: Callable[[], str] | None) -> str:
    """The 413's message: the body limit, and for a key write what one may take."""
    message = f"request body over {max_body} bytes, the most the control API reads"
    return message if write_limit is None else f"{message}; {write_limit()}"


#: what the token does not guard: the dashboard's page and assets, which
#: hold no data (the page asks for the token and sends it on every API call)
PUBLIC = frozenset({b"", b"static"})


class ControlRoot(resource.Resource):
    """``/``: its children (``v1`` and whatever is attached) behind the token,
    but for the dashboard's page and assets (:data:`PUBLIC`)."""

    def __init__(self, bearer: BearerCheck | None = None) -> None:
        super().__init__()
        self.bearer = bearer

    def getChildWithDefault(self, path: bytes, request: IRequest) -> resource.Resource:
        public = path in PUBLIC and (path != b"" or not request.postpath)
        if (
            not public
            and self.bearer is not None
            and not self.bearer.allows(request.getHeader(b"Authorization"))
        ):
            given = request.getHeader(b"Authorization") is not None
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="pokan"')
            return ErrorResource(
                401,
                "wrong token in the Authorization header"
                if given
                else "this node's control API needs a token: send the header"
                " 'Authorization: Bearer TOKEN', TOKEN being the first line of"
                " the node's --control-token-file",
            )
        return super().getChildWithDefault(path, request)

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:
        return not_found(request)

    def render(self, request: IRequest) -> bytes:
        return error(request, 404, "nothing here: the API is under /v1")


class ControlSite(server.Site):
    """The control port's Site; keeps its connections to close them at stop."""

    requestFactory = BoundedRequest
    displayTracebacks = False
    noisy = False  # no "Starting factory" lines

    def log(self, request: Any) -> None:
        """No access log: the node stays quiet in steady state."""

    def __init__(
        self,
        root: ControlRoot,
        write_limit: Callable[[], str] | None = None,
        **kwargs: Any,
    ) -> None:
        """``write_limit``: what one write may take (for the 413's message)."""
        super().__init__(root, **kwargs)
        self.root = root
        self.write_limit = write_limit
        self.channels: set[Any] = set()

    def buildProtocol(self, addr: IAddress | None) -> Any:
        channel = super().buildProtocol(addr)
        if channel is not None:
            self.channels.add(channel)
            lost = channel.connectionLost

            def connection_lost(reason: Any) -> None:
                self.channels.discard(channel)
                lost(reason)

            channel.connectionLost = connection_lost
        return channel

    def close_connections(self) -> None:
        """Close every open connection once what was written to it is sent
        (the node stops: an event stream's last events, shutdown, arrive)."""
        for channel in list(self.channels):
            # Site's protocols wrap the HTTP/1.1 (or HTTP/2) channel
            inner = getattr(channel, "_channel", channel)
            transport = getattr(inner, "transport", None)
            if transport is not None:
                transport.loseConnection()
