"""The live dashboard: ``/`` and ``/static/*`` of the control port.

Three files shipped with the package (``index.html``, ``dashboard.css``,
``dashboard.js``) and read once, when the resource is made; the page gets the
events its feed follows filled in then. Only those names are served: a
request names an entry of a fixed table, never a path on disk, so no path
traversal or directory listing is possible.
"""

from __future__ import annotations

from importlib import resources

import orjson
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request

from pokan.control.feed import FEED_EVENTS

#: what the page may load: its own origin only, nothing from the internet
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    b" connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: the assets under /static/, with their content types
ASSETS = {
    "dashboard.css": b"text/css; charset=utf-8",
    "dashboard.js": b"text/javascript; charset=utf-8",
}
INDEX = "index.html"
#: where index.html takes the events its feed follows
FEED_PLACEHOLDER = b"@FEED_EVENTS@"
HTML = b"text/html; charset=utf-8"
#: the 404 of every other name under / and /static/
NOT_FOUND = "no such dashboard file: the page is / and its assets are " + ", ".join(
    f"/static/{name}" for name in ASSETS
)


def read_asset(name: str) -> bytes:
    """The bytes of one file shipped in this package."""
    return resources.files(__name__).joinpath(name).read_bytes()


def _json_error(request: Request, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return orjson.dumps({"error": message})


class Asset(Resource):
    """One file, served from memory with its type and no-sniff, no-cache headers."""

    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes) -> None:
        super().__init__()
        self.body = body
        self.content_type = content_type

    def render(self, request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return _json_error(
                request, http.NOT_ALLOWED, "the dashboard is read with GET or HEAD"
            )
        if request.postpath not in ([], [b""]):
            return _json_error(request, http.NOT_FOUND, NOT_FOUND)
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"referrer-policy", b"no-referrer")
        return self.body


class StaticAssets(Resource):
    """``/static/NAME`` for the names in :data:`ASSETS`; 404 for anything else."""

    def __init__(self) -> None:
        super().__init__()
        self.assets = {
            name.encode(): Asset(read_asset(name), kind)
            for name, kind in ASSETS.items()
        }

    def getChild(self, path: bytes, request: Request) -> Resource:
        asset = self.assets.get(path)
        if asset is not None:
            return asset
        return NotFound(NOT_FOUND)

    def render(self, request: Request) -> bytes:
        # /static itself: no listing
        return _json_error(request, http.NOT_FOUND, NOT_FOUND)


class NotFound(Resource):
    """A 404 with a JSON error, whatever follows in the path."""

    isLeaf = True

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def render(self, request: Request) -> bytes:
        return _json_error(request, http.NOT_FOUND, self.message)


def page_html() -> bytes:
    """``index.html`` with the events its feed follows filled in
    (:data:`pokan.control.feed.FEED_EVENTS`, one list for it and ``pokan watch``)."""
    follow = " ".join(FEED_EVENTS).encode("ascii")
    return read_asset(INDEX).replace(FEED_PLACEHOLDER, follow)


def index_page() -> Asset:
    """The dashboard page itself, for ``/``."""
    return Asset(page_html(), HTML)


def mount(root: Resource) -> None:
    """Serve the dashboard from ``root``: the page at ``/``, assets at ``/static/``."""
    root.putChild(b"", index_page())
    root.putChild(b"static", StaticAssets())
