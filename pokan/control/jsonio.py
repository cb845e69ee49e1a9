"""JSON in and out of the control API: bodies, errors, and resources."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.server import Request as IRequest

log = Logger()

JSON_TYPE = b"application/json"


class ApiError(Exception):
    """A request the API refuses: an HTTP status and what was wrong."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def write_json(request: IRequest, code: int, body: dict[str, Any]) -> bytes:
    """Set the status and JSON content type; the encoded body (one line)."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", JSON_TYPE)
    request.setHeader(b"Cache-Control", b"no-store")
    return orjson.dumps(body) + b"\n"


def error(request: IRequest, code: int, message: str) -> bytes:
    return write_json(request, code, {"error": message})


def read_json(request: IRequest) -> dict[str, Any]:
    """The request's body as a JSON object; ApiError 400 if it is not one."""
    content = request.content
    data = content.read() if content is not None else b""
    if not data.strip():
        raise ApiError(400, "the request needs a JSON object as its body")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, f"malformed JSON in the request body: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(
            400, f"the body must be a JSON object, got a {type(body).__name__}"
        )
    return body


def query(request: IRequest, name: str) -> list[str]:
    """Every value of query parameter ``name`` (ApiError 400 if not UTF-8)."""
    try:
        return [v.decode("utf-8") for v in request.args.get(name.encode(), [])]
    except UnicodeDecodeError:
        raise ApiError(400, f"query parameter {name} is not UTF-8") from None


def query_one(request: IRequest, name: str) -> str | None:
    values = query(request, name)
    if len(values) > 1:
        raise ApiError(400, f"query parameter {name} given {len(values)} times")
    return values[0] if values else None


class ErrorResource(resource.Resource):
    """Answers every method with one JSON error."""

    isLeaf = True

    def __init__(self, code: int, message: str) -> None:
        super().__init__()
        self.code = code
        self.message = message

    def render(self, request: IRequest) -> bytes:
        return error(request, self.code, self.message)


def not_found(request: IRequest) -> resource.Resource:
    path = request.path.decode("utf-8", "replace")
    return ErrorResource(
        404,
        f"no such path: {path} (the API's paths are under /v1:"
        " see docs/control-api.md)",
    )


Result = dict[str, Any] | tuple[int, dict[str, Any]] | defer.Deferred[dict[str, Any]]


class JsonResource(resource.Resource):
    """A resource whose ``json_GET``/``json_PUT``/... return a dict (or a
    Deferred of one) or raise ApiError; anything else is a JSON error too.

    Unknown children are a JSON 404, unknown methods a JSON 405.
    """

    #: the HTTP status of a successful answer
    ok = 200

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:
        if path == b"" and not request.postpath:
            return self  # a trailing slash
        return not_found(request)

    def allowed(self) -> list[str]:
        return sorted(n[5:] for n in dir(self) if n.startswith("json_"))

    def render(self, request: IRequest) -> bytes | int:
        method = request.method.decode("ascii", "replace").upper()
        handler: Callable[[IRequest], Result] | None = getattr(
            self, f"json_{method}", None
        )
        if handler is None:
            allowed = self.allowed()
            request.setHeader(b"Allow", ", ".join(allowed).encode())
            return error(
                request,
                405,
                f"{method} is not allowed on {request.path.decode('utf-8', 'replace')};"
                f" use {' or '.join(allowed)}",
            )
        try:
            result = handler(request)
        except ApiError as e:
            return error(request, e.code, e.message)
        except Exception:
            log.failure(
                "control API: {method} {path} failed", method=method, path=request.path
            )
            return error(request, 500, "internal error: see the node's log")
        if isinstance(result, tuple):  # (status, body): a non-error status
            return write_json(request, result[0], result[1])
        if not isinstance(result, defer.Deferred):
            return write_json(request, self.ok, result)
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))

        def answer(body: dict[str, Any]) -> None:
            if not finished[0]:
                request.write(write_json(request, self.ok, body))
                request.finish()

        def failed(failure: Failure) -> None:
            if finished[0]:
                return
            if failure.check(ApiError):
                e = failure.value
                request.write(error(request, e.code, e.message))  # type: ignore[union-attr]
            else:
                log.failure(
                    "control API: {method} {path} failed",
                    failure,
                    method=method,
                    path=request.path,
                )
                request.write(error(request, 500, "internal error: see the node's log"))
            request.finish()

        result.addCallbacks(answer, failed)
        return server.NOT_DONE_YET
