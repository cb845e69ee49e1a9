"""A small blocking client of a node's control API, for the ``pokan`` command.

It speaks HTTP/1.1 with JSON over TCP (``HOST:PORT``) or a unix socket
(``unix:/path``), sends ``Authorization: Bearer`` when given a token, follows
``next`` cursors across pages and reads the Server-Sent Events stream. Every
way a request can go wrong ends in one of three exceptions: ``NoNode`` (nothing
answers), ``NotPokan`` (something answers, but not as a pokan node) and
``ApiError`` (the node refused the request, with its JSON error).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import attrs
from sseclient import SSEClient

from pokan.core.address import format_host_port, parse_host_port
from pokan.errors import ConfigurationError

#: where the CLI looks when given no --control and no POKAN_CONTROL
DEFAULT_CONTROL = "127.0.0.1:7373"
DEFAULT_CONTROL_PORT = 7373
#: seconds a request may take (a join waits for a whole TCP sync)
DEFAULT_TIMEOUT = 30.0
#: seconds without a byte on the event stream (keepalives come every 15 s)
STREAM_SILENCE = 60.0
#: the most a response body may hold (a page of 1000 keys of 64 KiB fits)
MAX_RESPONSE = 256 * 1024 * 1024


@attrs.frozen
class Target:
    """Where a node's control API listens: ``host``/``port`` or a unix ``path``."""

    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        return (
            f"unix:{self.path}" if self.path else format_host_port(self.host, self.port)
        )


def parse_target(text: str) -> Target:
    """Parse ``HOST:PORT`` or ``unix:/path``; ConfigurationError says what is wrong."""
    text = text.strip()
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ConfigurationError(
                f"{text!r} has no socket path: write unix:/path/to/control.sock"
            )
        return Target(path=path)
    try:
        host, port = parse_host_port(text, DEFAULT_CONTROL_PORT)
    except ConfigurationError as e:
        raise ConfigurationError(
            f"--control {text!r}: {e} (or unix:/path for a unix socket)"
        ) from None
    return Target(host=host, port=port)


class ControlError(Exception):
    """A request to a node's control API failed; the message says how."""


class NoNode(ControlError):
    """No pokan node answers at the target."""

    def __init__(self, target: Target, reason: str) -> None:
        hint = "" if str(target) == DEFAULT_CONTROL else f" --control {target}"
        super().__init__(
            f"no pokan node at {target}: is one running? start one with"
            f" twistd -n pokan --address ...{hint}"
        )
        self.target = target
        self.reason = reason


class NotPokan(ControlError):
    """Something answers at the target, but not as a pokan control API."""


class ApiError(ControlError):
    """The node answered with an HTTP error and its JSON ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _UnixConnection(http.client.HTTPConnection):
    """HTTPConnection over a unix stream socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class ControlClient:
    """Requests to one node's control API; each request on a new connection."""

    def __init__(
        self, target: Target, token: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.target = target
        self.token = token
        self.timeout = timeout

    # -- one request ------------------------------------------------------------

    def get(self, path: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("GET", path, query)

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", path, body=body)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body=body)

    def delete(self, path: str) -> dict[str, Any]:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send one request; the JSON object the node answered with."""
        response, connection = self._open(method, path, query, body)
        try:
            data = response.read(MAX_RESPONSE + 1)
        except (OSError, http.client.HTTPException) as e:
            raise NotPokan(f"{self.target} broke off its answer: {e}") from None
        finally:
            connection.close()
        if len(data) > MAX_RESPONSE:
            raise NotPokan(f"{self.target} answered with over {MAX_RESPONSE} bytes")
        return self._decode(response, data)

    def pages(
        self, path: str, field: str, query: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paged list endpoint, following ``next`` cursors."""
        query = dict(query or {})
        while True:
            page = self.get(path, query)
            items = page.get(field)
            if not isinstance(items, list):
                raise NotPokan(f"{self.target} answered {path} without a {field} list")
            yield from items
            cursor = page.get("next")
            if cursor is None:
                return
            query["after"] = cursor

    def events(
        self, names: tuple[str, ...] = ()
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(event name, data)`` as the node's event stream delivers them."""
        query = [("event", name) for name in names]
        response, connection = self._open("GET", "/v1/events", query)
        try:
            if response.status != 200:
                self._decode(response, response.read(MAX_RESPONSE))
            kind = response.getheader("Content-Type", "")
            if not kind.startswith("text/event-stream"):
                raise NotPokan(f"{self.target} answered /v1/events with {kind!r}")
            if connection.sock is not None:
                connection.sock.settimeout(STREAM_SILENCE)
            try:
                for event in SSEClient(response).events():
                    try:
                        data = json.loads(event.data)
                    except ValueError:
                        raise NotPokan(
                            f"{self.target} sent an event that is not JSON:"
                            f" {event.data[:80]!r}"
                        ) from None
                    yield event.event, data
            except TimeoutError:
                raise NoNode(self.target, "the event stream fell silent") from None
            except (OSError, http.client.HTTPException) as e:
                raise NoNode(self.target, f"the event stream broke off: {e}") from None
        finally:
            connection.close()
        raise NoNode(self.target, "the node closed the event stream")

    # -- plumbing ---------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.target.path:
            return _UnixConnection(self.target.path, timeout)
        return http.client.HTTPConnection(
            self.target.host, self.target.port, timeout=timeout
        )

    def _open(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | list[tuple[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        url = path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        connection = self._connection(self.timeout)
        try:
            connection.request(method, url, body=payload, headers=headers)
        except OSError as e:
            connection.close()
            raise NoNode(self.target, e.strerror or str(e)) from None
        try:
            return connection.getresponse(), connection
        except (OSError, http.client.HTTPException) as e:
            connection.close()
            raise NotPokan(
                f"{self.target} accepted the connection but did not answer as"
                f" an HTTP server ({e or type(e).__name__}): is it a pokan control"
                " port?"
            ) from None

    def _decode(
        self, response: http.client.HTTPResponse, data: bytes
    ) -> dict[str, Any]:
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise NotPokan(
                f"{self.target} answered with HTTP {response.status} and no JSON"
                f" object ({data[:60]!r}): is it a pokan control port?"
            )
        if response.status >= 400:
            message = answer.get("error")
            if not isinstance(message, str):
                raise NotPokan(
                    f"{self.target} answered with HTTP {response.status} without a"
                    " JSON error: is it a pokan control port?"
                )
            raise ApiError(response.status, message)
        return answer


def key_path(key: str) -> str:
    """``/v1/keys/{key}`` with the key quoted (a key may hold ``/`` or spaces)."""
    return f"/v1/keys/{quote(key, safe='')}"


def node_keys_path(node: str, key: str | None = None) -> str:
    """``/v1/nodes/{id}/keys[/{key}]``, quoted."""
    path = f"/v1/nodes/{quote(node, safe='')}/keys"
    return path if key is None else f"{path}/{quote(key, safe='')}"


def encode_value(value: str | bytes) -> dict[str, str]:
    """A value as the API carries it: text as is, bytes in base64."""
    if isinstance(value, bytes):
        return {"value": base64.b64encode(value).decode("ascii"), "type": "bytes"}
    return {"value": value, "type": "str"}


def decode_value(item: dict[str, Any]) -> str | bytes:
    """The value of an API item ``{"value", "type"}``: str, or bytes for type bytes."""
    value, kind = item.get("value"), item.get("type")
    if not isinstance(value, str) or kind not in ("str", "bytes"):
        raise NotPokan(f"a value came without a str value and type str|bytes: {item!r}")
    if kind == "str":
        return value
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise NotPokan(f"a bytes value is not valid base64: {value[:40]!r}") from None
