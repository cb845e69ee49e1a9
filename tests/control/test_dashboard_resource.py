"""The dashboard's resource: its files, their types, and nothing else served.

Requests are raw HTTP/1.0 bytes on a real socket on 127.0.0.1, so no client
normalises a ``..`` or an encoded slash away before the server sees it.
"""

from __future__ import annotations

import orjson
from twisted.internet import defer, endpoints, protocol
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from pokan.control import dashboard
from pokan.control.feed import FEED_EVENTS
from tests.support import ROOT, global_reactor, run, temp_dir


class _Collect(protocol.Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.data = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object = None) -> None:
        self.done.callback(self.data)


class Response:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers[name.strip().lower().decode()] = value.strip().decode()

    def json(self) -> dict[str, object]:
        self_type = self.headers.get("content-type", "")
        assert self_type.startswith("application/json"), self_type
        body = orjson.loads(self.body)
        assert isinstance(body, dict)
        return body


class DashboardResourceTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        root = Resource()
        dashboard.mount(root)
        reactor = global_reactor()
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.port = yield endpoint.listen(Site(root))
        self.addCleanup(self.port.stopListening)

    @defer.inlineCallbacks
    def request(self, path: bytes, method: bytes = b"GET"):  # type: ignore[no-untyped-def]
        reactor = global_reactor()
        endpoint = endpoints.TCP4ClientEndpoint(
            reactor, "127.0.0.1", self.port.getHost().port, timeout=5
        )
        collector = _Collect(method + b" " + path + b" HTTP/1.0\r\n\r\n")
        yield endpoints.connectProtocol(endpoint, collector)
        raw = yield collector.done
        return Response(raw)

    @defer.inlineCallbacks
    def test_index_at_root(self):  # type: ignore[no-untyped-def]
        response = yield self.request(b"/")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "text/html; charset=utf-8")
        self.assertEqual(response.body, dashboard.page_html())
        self.assertIn(b'name="viewport"', response.body)
        self.assertIn(b'src="static/dashboard.js"', response.body)
        self.assertIn(b'href="static/dashboard.css"', response.body)
        self.assertEqual(response.headers["x-content-type-options"], "nosniff")
        self.assertIn("default-src 'none'", response.headers["content-security-policy"])

    @defer.inlineCallbacks
    def test_the_page_follows_the_feed_events(self):  # type: ignore[no-untyped-def]
        """The page carries pokan.control.feed's list (that pokan watch follows);
        the script keeps no list of its own."""
        response = yield self.request(b"/")
        follow = " ".join(FEED_EVENTS).encode()
        self.assertIn(b'data-follow="' + follow + b'"', response.body)
        self.assertNotIn(dashboard.FEED_PLACEHOLDER, response.body)
        script = dashboard.read_asset("dashboard.js")
        self.assertIn(b"dataset.follow", script)
        self.assertNotIn(b'"after_sync"', script)
        self.assertNotIn(b"before_gossip", follow)

    @defer.inlineCallbacks
    def test_assets_with_their_types(self):  # type: ignore[no-untyped-def]
        for name, kind in [
            ("dashboard.css", "text/css; charset=utf-8"),
            ("dashboard.js", "text/javascript; charset=utf-8"),
        ]:
            response = yield self.request(b"/static/" + name.encode())
            self.assertEqual(response.status, 200, name)
            self.assertEqual(response.headers["content-type"], kind)
            self.assertEqual(response.body, dashboard.read_asset(name))

    @defer.inlineCallbacks
    def test_head(self):  # type: ignore[no-untyped-def]
        response = yield self.request(b"/static/dashboard.js", method=b"HEAD")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"")

    @defer.inlineCallbacks
    def test_other_methods_refused(self):  # type: ignore[no-untyped-def]
        for path in (b"/", b"/static/dashboard.js"):
            response = yield self.request(path, method=b"POST")
            self.assertEqual(response.status, 405)
            self.assertEqual(response.headers["allow"], "GET, HEAD")
            self.assertIn("GET", response.json()["error"])

    @defer.inlineCallbacks
    def test_no_directory_listing(self):  # type: ignore[no-untyped-def]
        for path in (b"/static", b"/static/", b"/static//"):
            response = yield self.request(path)
            self.assertEqual(response.status, 404, path)
            self.assertEqual(response.json(), {"error": dashboard.NOT_FOUND})

    @defer.inlineCallbacks
    def test_no_path_traversal(self):  # type: ignore[no-untyped-def]
        for path in (
            b"/static/../__init__.py",
            b"/static/%2e%2e/__init__.py",
            b"/static/..%2f__init__.py",
            b"/static/..%2f..%2f..%2fsetup.cfg",
            b"/static/%2fetc%2fpasswd",
            b"/static/__init__.py",
            b"/static/index.html/../__init__.py",
            b"/static/dashboard.js/../../setup.cfg",
            b"/static/dashboard.js%00.png",
            b"/static/dashboard.js/extra",
            b"/static/DASHBOARD.JS",
        ):
            response = yield self.request(path)
            self.assertEqual(response.status, 404, path)
            self.assertNotIn(b"import", response.body, path)
            self.assertNotIn(b"[metadata]", response.body, path)
            self.assertNotIn(b"root:", response.body, path)
            self.assertIn("/static/dashboard.js", str(response.json()["error"]))

    def test_page_loads_nothing_from_elsewhere(self) -> None:
        for name in ("index.html", "dashboard.css", "dashboard.js"):
            text = dashboard.read_asset(name).decode()
            for outside in ("http://", "https://", "//cdn"):
                self.assertNotIn(outside, text, f"{name} refers to {outside!r}")
        css = dashboard.read_asset("dashboard.css").decode()
        self.assertNotIn("@import", css)
        self.assertNotIn("url(", css)
        self.assertNotIn("@font-face", css)


class InstalledAssetsTests(unittest.TestCase):
    def test_installed_package_ships_the_assets(self) -> None:
        """``pip install .`` puts the three files beside the installed module."""
        code = (
            "import pokan.control.dashboard as d, os, sys\n"
            "here = os.path.join(sys.argv[1], 'pokan', '')\n"
            "assert not d.__file__.startswith(here), d.__file__\n"
            "for n in ('index.html', 'dashboard.css', 'dashboard.js'):\n"
            "    print(n, len(d.read_asset(n)))\n"
        )
        import sys

        result = run([sys.executable, "-c", code, ROOT], cwd=temp_dir(self))
        self.assertEqual(result.returncode, 0, result.stderr)
        for name in ("index.html", "dashboard.css", "dashboard.js"):
            self.assertIn(name, result.stdout)
