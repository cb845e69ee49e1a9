"""The control API's ``/v1`` resources: a node's health, members and keys,
writes, join and forget. See docs/control-api.md."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import resource
from twisted.web.server import Request as IRequest

from pokan.control import views
from pokan.control.jsonio import (
    ApiError,
    ErrorResource,
    JsonResource,
    not_found,
    query,
    query_one,
    read_json,
)
from pokan.core.state import ROLES, STATUSES
from pokan.core.write_checks import TooLargeToGossip
from pokan.errors import ConfigurationError, NodeIsAlive


def _segment(path: bytes, what: str) -> str:
    try:
        return path.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, f"{what} in the path is not UTF-8") from None


def _rest_of_path(name: bytes, request: IRequest, what: str) -> str:
    """A key from the path: the segment and any after it, joined by ``/``."""
    rest: list[bytes] = list(request.postpath or ())
    text = "/".join(_segment(p, what) for p in [name, *rest])
    request.postpath = []
    return text


class Health(JsonResource):
    """``GET /v1/health``: 200 once listening (and, with seeds, synced); 503."""

    isLeaf = True

    def __init__(self, server: Any) -> None:
        super().__init__()
        self.node = server

    def json_GET(self, request: IRequest) -> tuple[int, dict[str, Any]]:
        health = self.node.health()
        if health["reason"] is None:
            return 200, {"status": "ok", "listening": True, "synced": health["synced"]}
        return 503, {
            "status": "unavailable",
            "listening": health["listening"],
            "synced": health["synced"],
            "reason": health["reason"],
        }


class Info(JsonResource):
    """``GET /v1/info``: this node, its settings and its counters."""

    isLeaf = True

    def __init__(self, server: Any) -> None:
        super().__init__()
        self.node = server

    def json_GET(self, request: IRequest) -> dict[str, Any]:
        return views.info(self.node)


class Members(JsonResource):
    """``GET /v1/members[?status=&role=&limit=&after=]``."""

    isLeaf = True

    def __init__(self, server: Any) -> None:
        super().__init__()
        self.node = server

    def json_GET(self, request: IRequest) -> dict[str, Any]:
        status = query_one(request, "status")
        role = query_one(request, "role")
        if status is not None and status not in STATUSES:
            raise ApiError(
                400, f"status must be one of {', '.join(STATUSES)}, got {status!r}"
            )
        if role is not None and role not in ROLES:
            raise ApiError(400, f"role must be one of {', '.join(ROLES)}, got {role!r}")
        limit = views.page_limit(request)
        items = views.members(self.node, status, role, query_one(request, "after"))
        page, after = views.paged(items, limit)
        return {"members": page, "next": after}


class Keys(JsonResource):
    """``GET /v1/keys``: every node's keys, paged; ``/v1/keys/KEY``: one of ours."""

    def __init__(self, server: Any) -> None:
        super().__init__()
        self.node = server

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:
        if path == b"" and not request.postpath:
            return self
        try:
            key = _rest_of_path(path, request, "the key")
        except ApiError as e:
            return ErrorResource(e.code, e.message)
        return OwnKey(self.node, key)

    def json_GET(self, request: IRequest) -> dict[str, Any]:
        limit = views.page_limit(request)
        items = views.all_keys(self.node, query_one(request, "after"))
        page, after = views.paged(items, limit)
        return {"keys": page, "next": after}


class OwnKey(JsonResource):
    """``PUT``/``DELETE``/``GET /v1/keys/KEY``: one of this node's keys."""

    isLeaf = True

    def __init__(self, server: Any, key: str) -> None:
        super().__init__()
        self.node = server
        self.key = key

    def json_GET(self, request: IRequest) -> dict[str, Any]:
        return _one_key(self.node, self.node.id, self.key)

    def json_PUT(self, request: IRequest) -> defer.Deferred[dict[str, Any]]:
        value = views.decode_value(read_json(request))
        try:
            d = self.node.store(self.key, value)
        except TypeError as e:
            raise ApiError(400, str(e)) from None
        except TooLargeToGossip as e:  # its users set the limit with the flag
            raise ApiError(422, too_large(e)) from None
        except ValueError as e:
            raise ApiError(422, str(e)) from None
        node_id = self.node.id
        _, _, version, timestamp = _entry(self.node, node_id, self.key)
        answer = {
            "node": node_id,
            "key": self.key,
            "version": version,
            "timestamp": timestamp,
        }
        return d.addCallback(lambda _: answer)

    def json_DELETE(self, request: IRequest) -> defer.Deferred[dict[str, Any]]:
        node_id = self.node.id
        if self.node.value(self.key) is None:
            raise ApiError(404, f"this node ({node_id}) has no key {self.key!r}")
        try:
            d = self.node.delete(self.key)
        except (TypeError, ValueError) as e:
            raise ApiError(422, str(e)) from None
        answer = {"node": node_id, "key": self.key, "deleted": True}
        return d.addCallback(lambda _: answer)


def _entry(server: Any, node_id: str, key: str) -> tuple[str, Any, int, float]:
    for entry in server.entries(node_id) or ():
        if entry[0] == key:
            return (entry[0], entry[1], entry[2], entry[3])
    raise ApiError(404, f"node {node_id} has no key {key!r}")


def _one_key(server: Any, node_id: str, key: str) -> dict[str, Any]:
    _, value, version, timestamp = _entry(server, node_id, key)
    return views.key_item(node_id, key, value, version, timestamp)


class Nodes(JsonResource):
    """``/v1/nodes/ID``, ``/v1/nodes/ID/keys``, ``/v1/nodes/ID/keys/KEY``."""

    def __init__(self, server: Any) -> None:
        super().__init__()
        self.node = server

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:
        if path == b"":
            return not_found(request)
        try:
            node_id = _segment(path, "the node id")
        except ApiError as e:
            return ErrorResource(e.code, e.message)
        if self.node.entries(node_id) is None:
            return ErrorResource(404, unknown_node(node_id))
        return Node(self.node, node_id)


class Node(JsonResource):
    """``GET /v1/nodes/ID``: one member, as /v1/members lists it."""

    def __init__(self, server: Any, node_id: str) -> None:
        super().__init__()
        self.node = server
        self.node_id = node_id

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:
        if path == b"keys":
            return NodeKeys(self.node, self.node_id)
        return super().getChild(path, request)

    def json_GET(self, request: IRequest) -> dict[str, Any]:
        peer = (
            self.node.me
            if self.node_id == self.node.id
            else self.node.peer(self.node_id)
        )
        if peer is None:
            raise ApiError(404, f"unknown node {self.node_id!r}")
        return views.member(self.node, peer)


class NodeKeys(JsonResource):
    """``GET /v1/nodes/ID/keys``: one node's keys, paged (cursor ``ID/KEY``)."""

    def __init__(self, server: Any, node_id: str) -> None:
        super().__init__()
        self.node = server
        self.node_id = node_id

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:
        if path == b"" and not request.postpath:
            return self
        try:
            key = _rest_of_path(path, request, "the key")
        except ApiError as e:
            return ErrorResource(e.code, e.message)
        return NodeKey(self.node, self.node_id, key)

    def json_GET(self, request: IRequest) -> dict[str, Any]:
        limit = views.page_limit(request)
        after = query_one(request, "after")
        after_key = None
        if after is not None:
            node, sep, after_key = after.partition("/")
            if not sep or node != self.node_id:
                raise ApiError(
                    400, f"after must be a cursor {self.node_id}/KEY, got {after!r}"
                )
        if self.node.entries(self.node_id) is None:
            raise ApiError(404, f"unknown node {self.node_id!r}")
        items = views.node_keys(self.node, self.node_id, after_key)
        page, cursor = views.paged(items, limit)
        return {"keys": page, "next": cursor}


class NodeKey(JsonResource):
    """``GET /v1/nodes/ID/keys/KEY``."""

    isLeaf = True

    def __init__(self, server: Any, node_id: str, key: str) -> None:
        super().__init__()
        self.node = server
        self.node_id = node_id
        self.key = key

    def json_GET(self, request: IRequest) -> dict[str, Any]:
        return _one_key(self.node, self.node_id, self.key)


class Join(JsonResource):
    """``POST /v1/join {"address": "HOST:PORT"}``: a full sync with it, now."""

    isLeaf = True

    def __init__(self, server: Any) -> None:
        super().__init__()
        self.node = server

    def json_POST(self, request: IRequest) -> defer.Deferred[dict[str, Any]]:
        body = read_json(request)
        address = body.get("address")
        if not isinstance(address, str) or set(body) != {"address"}:
            raise ApiError(
                400, 'the body must be {"address": "HOST:PORT"} (a TCP port)'
            )
        try:
            d = self.node.join(address)
        except ConfigurationError as e:
            raise ApiError(400, f"address: {e}") from None

        def failed(failure: Failure) -> None:
            raise ApiError(
                502, f"could not sync with {address}: {failure.getErrorMessage()}"
            )

        return d.addCallbacks(lambda peer: {"joined": peer.id}, failed)


class Forget(JsonResource):
    """``POST /v1/forget {"node": ID, "force": false}``."""

    isLeaf = True

    def __init__(self, server: Any) -> None:
        super().__init__()
        self.node = server

    def json_POST(self, request: IRequest) -> defer.Deferred[dict[str, Any]]:
        body = read_json(request)
        node_id = body.get("node")
        force = body.get("force", False)
        unknown = sorted(set(body) - {"node", "force"})
        if not isinstance(node_id, str) or not isinstance(force, bool) or unknown:
            raise ApiError(
                400, 'the body must be {"node": "ID", "force": false} (force optional)'
            )
        try:
            d = self.node.forget(node_id, force=force)
        except LookupError:
            raise ApiError(404, unknown_node(node_id)) from None
        except NodeIsAlive as e:
            raise ApiError(409, str(e)) from None
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        return d.addCallback(lambda _: {"forgotten": node_id})


class V1(JsonResource):
    """``/v1``: the API's version 1."""

    def __init__(self, server: Any, events: resource.Resource) -> None:
        super().__init__()
        self.putChild(b"health", Health(server))
        self.putChild(b"info", Info(server))
        self.putChild(b"members", Members(server))
        self.putChild(b"keys", Keys(server))
        self.putChild(b"nodes", Nodes(server))
        self.putChild(b"join", Join(server))
        self.putChild(b"forget", Forget(server))
        self.putChild(b"events", events)

    def json_GET(self, request: IRequest) -> dict[str, Any]:
        return {"paths": sorted(f"/v1/{p.decode()}" for p in self.children)}


def unknown_node(node_id: str) -> str:
    """The 404 for a node this one does not know, saying where to look."""
    return (
        f"unknown node {node_id!r}: GET /v1/members (pokan members)"
        " lists the nodes known"
    )


def too_large(error: TooLargeToGossip) -> str:
    """A write too large for a datagram, naming the flag (and the keyword)."""
    message = error.describe({"max_datagram": "--max-datagram"})
    return f"{message} (Server(max_datagram=...) when embedded)"


__all__ = ["V1", "query"]
