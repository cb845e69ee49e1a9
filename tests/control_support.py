"""HTTP requests to a node's control API, for the tests (real sockets)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from tests.support import global_reactor


@implementer(IAgentEndpointFactory)
class _UnixEndpoints:
    def __init__(self, path: str) -> None:
        self.path = path

    def endpointForURI(self, uri: Any) -> Any:
        return UNIXClientEndpoint(global_reactor(), self.path)


@defer.inlineCallbacks
def call(
    base: str,
    method: str,
    path: str,
    body: object = None,
    raw: bytes | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """``(status, parsed JSON body)`` of one request to ``base`` + ``path``.

    ``base`` is ``http://HOST:PORT`` or ``unix:/path``.
    """
    import io

    from twisted.web.client import FileBodyProducer

    reactor = global_reactor()
    if base.startswith("unix:"):
        agent = Agent.usingEndpointFactory(reactor, _UnixEndpoints(base[5:]))
        url = "http://localhost" + path
    else:
        agent = Agent(reactor)
        url = base + path
    data = (
        raw
        if raw is not None
        else (None if body is None else json.dumps(body).encode())
    )
    hdrs = Headers()
    if token is not None:
        hdrs.addRawHeader(b"Authorization", f"Bearer {token}".encode())
    for k, v in (headers or {}).items():
        hdrs.addRawHeader(k.encode(), v.encode())
    producer = FileBodyProducer(io.BytesIO(data)) if data is not None else None
    response = yield agent.request(method.encode(), url.encode(), hdrs, producer)
    content = yield readBody(response)
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = content
    return response.code, parsed
