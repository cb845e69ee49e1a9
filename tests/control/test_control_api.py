"""The control API against real Servers on 127.0.0.1 (docs/control-api.md)."""

from __future__ import annotations

import base64
import os
import re
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pokan import ConfigurationError, Server, wire
from pokan.core.address import format_host_port
from tests.control_support import call
from tests.support import (
    global_reactor,
    start_cluster,
    start_server,
    temp_dir,
    wait_until,
)

#: the settings GET /v1/info once left out
ADDED_SETTINGS = (
    "failure_detector",
    "max_sync_connections",
    "max_sync_per_host",
    "drop_rate",
    "handler_queue",
)


def control(server: Server) -> str:
    address = server.control_address
    assert address is not None
    return address


class ReadTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.servers = yield start_cluster(self, 2, control="127.0.0.1:0")
        self.a, self.b = self.servers
        yield self.a.store("greeting", "hello")
        yield self.a.store("blob", b"\x00\xff")
        yield wait_until(
            lambda: (
                (p := self.b.peer(self.a.id)) is not None
                and p.value("blob") == b"\x00\xff"
            ),
            message="b to learn a's keys",
        )
        self.url = control(self.a)

    @defer.inlineCallbacks
    def test_health_info(self) -> Any:
        code, body = yield call(self.url, "GET", "/v1/health")
        self.assertEqual(
            (code, body), (200, {"status": "ok", "listening": True, "synced": True})
        )
        code, body = yield call(self.url, "GET", "/v1/info")
        self.assertEqual(code, 200)
        self.assertEqual(body["id"], self.a.id)
        self.assertEqual(body["generation"], self.a.generation)
        self.assertEqual(body["settings"]["control"], self.url)
        self.assertIn("datagrams_sent", body["counters"])
        # the cluster and the seal stand at the top, once, not as counters
        self.assertEqual((body["cluster"], body["sealed"]), ("pokan", False))
        self.assertNotIn("cluster", body["counters"])
        self.assertNotIn("sealed", body["counters"])

    @defer.inlineCallbacks
    def test_info_shows_every_setting(self) -> Any:
        code, body = yield call(self.url, "GET", "/v1/info")
        self.assertEqual(code, 200)
        settings = body["settings"]
        configuration = self.a.configuration
        self.assertEqual(
            {name: settings.get(name, "missing") for name in ADDED_SETTINGS},
            {
                "failure_detector": "swim",
                "max_sync_connections": configuration.max_sync_connections,
                "max_sync_per_host": configuration.max_sync_per_host,
                "drop_rate": 0.0,
                "handler_queue": None,  # no --on-event command: no queue
            },
        )
        # SWIM probes: its probe interval is shown, phi's threshold is not
        self.assertEqual(settings["probe_interval"], configuration.engine.probe_period)
        self.assertIn("phi_threshold", settings)
        self.assertIsNone(settings["phi_threshold"])

    @defer.inlineCallbacks
    def test_members(self) -> Any:
        yield wait_until(lambda: self.a.peer(self.b.id) is not None)
        code, body = yield call(self.url, "GET", "/v1/members")
        self.assertEqual(code, 200)
        ids = [m["id"] for m in body["members"]]
        self.assertEqual(ids, sorted([self.a.id, self.b.id]))
        mine = next(m for m in body["members"] if m["me"])
        self.assertEqual(mine["id"], self.a.id)
        other = next(m for m in body["members"] if not m["me"])
        self.assertEqual(other["status"], "alive")
        # SWIM, the default detector: the peer is alive at incarnation 0
        self.assertEqual(
            {k: other["detector"][k] for k in ("kind", "status", "incarnation")},
            {"kind": "swim", "status": "alive", "incarnation": 0},
        )
        self.assertIsNone(body["next"])
        code, body = yield call(self.url, "GET", "/v1/members?limit=1")
        self.assertEqual(len(body["members"]), 1)
        self.assertEqual(body["next"], body["members"][0]["id"])
        code, rest = yield call(
            self.url, "GET", f"/v1/members?limit=1&after={body['next']}"
        )
        self.assertEqual(len(rest["members"]), 1)
        self.assertIsNone(rest["next"])
        code, body = yield call(self.url, "GET", "/v1/members?status=dead")
        self.assertEqual(body["members"], [])
        code, body = yield call(self.url, "GET", "/v1/members?status=sleepy")
        self.assertEqual(code, 400)
        self.assertIn("status must be one of", body["error"])
        code, body = yield call(self.url, "GET", "/v1/members?limit=5000")
        self.assertEqual(code, 400)

    @defer.inlineCallbacks
    def test_keys(self) -> Any:
        b_url = control(self.b)
        code, body = yield call(b_url, "GET", f"/v1/nodes/{self.a.id}/keys")
        self.assertEqual(code, 200)
        by_key = {k["key"]: k for k in body["keys"]}
        self.assertEqual(by_key["greeting"]["value"], "hello")
        self.assertEqual(by_key["greeting"]["type"], "str")
        self.assertEqual(base64.b64decode(by_key["blob"]["value"]), b"\x00\xff")
        self.assertEqual(by_key["blob"]["type"], "bytes")
        self.assertIsInstance(by_key["blob"]["version"], int)
        code, one = yield call(b_url, "GET", f"/v1/nodes/{self.a.id}/keys/greeting")
        self.assertEqual((code, one), (200, by_key["greeting"]))
        code, everything = yield call(b_url, "GET", "/v1/keys?limit=1")
        self.assertEqual(len(everything["keys"]), 1)
        self.assertEqual(everything["next"], f"{self.a.id}/blob")
        code, err = yield call(b_url, "GET", "/v1/nodes/10.9.9.9:1/keys")
        self.assertEqual(code, 404)
        self.assertIn("unknown node", err["error"])
        code, err = yield call(b_url, "GET", f"/v1/nodes/{self.a.id}/keys/nope")
        self.assertEqual(code, 404)
        code, err = yield call(b_url, "GET", "/v2/keys")
        self.assertEqual(code, 404)
        self.assertIn("error", err)


class SettingsTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_phi_shows_no_probe_interval(self) -> Any:
        a = yield start_server(
            self,
            control="127.0.0.1:0",
            failure_detector="phi",
            max_sync_per_host=3,
            max_sync_connections=9,
        )
        code, body = yield call(control(a), "GET", "/v1/info")
        self.assertEqual(code, 200)
        settings = body["settings"]
        self.assertIn("probe_interval", settings)
        self.assertIsNone(settings["probe_interval"])
        self.assertEqual(
            settings["phi_threshold"], a.configuration.engine.phi_threshold
        )
        self.assertEqual(settings["failure_detector"], "phi")
        self.assertEqual(
            (settings["max_sync_per_host"], settings["max_sync_connections"]), (3, 9)
        )

    @defer.inlineCallbacks
    def test_handler_queue_of_the_on_event_commands(self) -> Any:
        from pokan.daemon.commands import CommandHandler, CommandSpec

        a = yield start_server(self, control="127.0.0.1:0")
        spec = CommandSpec.parse("new_key=true")
        CommandHandler(spec, global_reactor(), max_queue=7).attach(a)
        code, body = yield call(control(a), "GET", "/v1/info")
        self.assertEqual(code, 200)
        self.assertEqual(body["settings"]["handler_queue"], 7)


class WriteTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_put_goes_through_store_and_gossips(self) -> Any:
        a, b = yield start_cluster(self, 2, control="127.0.0.1:0")
        seen = []
        a.on("new_key", lambda key, value: seen.append((key, value)))
        code, body = yield call(
            control(a), "PUT", "/v1/keys/app%2Fcolour", {"value": "blue"}
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(body["key"], "app/colour")
        self.assertEqual(body["node"], a.id)
        self.assertEqual(seen, [("app/colour", "blue")])  # fired before the answer
        self.assertEqual(a.value("app/colour"), "blue")
        raw = base64.b64encode(b"\x01\x02").decode()
        code, body = yield call(
            control(a), "PUT", "/v1/keys/bin", {"value": raw, "type": "bytes"}
        )
        self.assertEqual(code, 200)
        self.assertEqual(a.value("bin"), b"\x01\x02")
        yield wait_until(
            lambda: (p := b.peer(a.id)) is not None and p.value("bin") == b"\x01\x02"
        )
        code, body = yield call(control(a), "DELETE", "/v1/keys/bin")
        self.assertEqual(
            (code, body), (200, {"node": a.id, "key": "bin", "deleted": True})
        )
        self.assertIsNone(a.value("bin"))
        code, body = yield call(control(a), "DELETE", "/v1/keys/bin")
        self.assertEqual(code, 404)

    @defer.inlineCallbacks
    def test_bad_writes(self) -> Any:
        a = yield start_server(self, control="127.0.0.1:0")
        url = control(a)
        code, body = yield call(url, "PUT", "/v1/keys/k", raw=b'{"value": ')
        self.assertEqual(code, 400)
        self.assertIn("malformed JSON", body["error"])
        code, body = yield call(url, "PUT", "/v1/keys/k", {"value": 3})
        self.assertEqual(code, 400)
        code, body = yield call(
            url, "PUT", "/v1/keys/k", {"value": "!", "type": "bytes"}
        )
        self.assertEqual(code, 400)
        self.assertIn("base64", body["error"])
        code, body = yield call(url, "PUT", "/v1/keys/" + "k" * 1100, {"value": "v"})
        self.assertEqual(code, 422)
        self.assertIn("limit", body["error"])
        code, body = yield call(url, "PUT", "/v1/keys/k", {"value": "v" * 5000})
        self.assertEqual(code, 422)
        self.assertIn(
            f"with --max-datagram {a.max_datagram} one write may take", body["error"]
        )
        self.assertIn("raise --max-datagram on every node", body["error"])
        room = re.search(r"one write may take at most (\d+)", body["error"])
        assert room is not None, body
        code, body = yield call(url, "PUT", "/v1/keys/k", raw=b"x" * (1024 * 1024 + 1))
        self.assertEqual(code, 413)
        self.assertIn("over 1048576 bytes", body["error"])
        # the limit a write meets: the same as the 422's, and how to raise it
        self.assertIn(
            f"with max_datagram {a.max_datagram} one write may take at most"
            f" {room.group(1)} bytes packed",
            body["error"],
        )
        self.assertIn("raise --max-datagram", body["error"])
        self.assertNotIn("64 KiB", body["error"])
        code, body = yield call(url, "POST", "/v1/keys/k", {"value": "v"})
        self.assertEqual(code, 405)
        self.assertIn("not allowed", body["error"])
        self.assertEqual(a.keys(), [])


class JoinForgetTests(unittest.TestCase):
    timeout = 40

    @defer.inlineCallbacks
    def test_join(self) -> Any:
        a = yield start_server(self, control="127.0.0.1:0")
        b = yield start_server(self)
        where = format_host_port(b.address, b.tcp_port)
        code, body = yield call(control(a), "POST", "/v1/join", {"address": where})
        self.assertEqual((code, body), (200, {"joined": b.id}))
        self.assertIsNotNone(a.peer(b.id))
        code, body = yield call(
            control(a), "POST", "/v1/join", {"address": "127.0.0.1:1"}
        )
        self.assertEqual(code, 502)
        self.assertIn("could not sync with 127.0.0.1:1", body["error"])
        code, body = yield call(control(a), "POST", "/v1/join", {"address": "no way"})
        self.assertEqual(code, 400)

    @defer.inlineCallbacks
    def test_forget_a_dead_node_everywhere(self) -> Any:
        a, b, c = yield start_cluster(self, 3, control="127.0.0.1:0")
        yield wait_until(lambda: all(len(s.peers("alive")) == 2 for s in (a, b, c)))
        code, body = yield call(control(a), "POST", "/v1/forget", {"node": c.id})
        self.assertEqual(code, 409)
        self.assertIn("alive", body["error"])
        yield c.stopService()  # says goodbye: left at a and b
        yield wait_until(
            lambda: all((p := s.peer(c.id)) is not None and p.is_left for s in (a, b))
        )
        code, body = yield call(control(a), "POST", "/v1/forget", {"node": c.id})
        self.assertEqual((code, body), (200, {"forgotten": c.id}))
        self.assertIsNone(a.peer(c.id))
        yield wait_until(lambda: b.peer(c.id) is None, message="b to forget c too")
        code, body = yield call(control(a), "POST", "/v1/forget", {"node": c.id})
        self.assertEqual(code, 404)
        code, body = yield call(control(a), "POST", "/v1/forget", {"node": a.id})
        self.assertEqual(code, 400)
        code, body = yield call(control(a), "POST", "/v1/forget", {"node": 3})
        self.assertEqual(code, 400)

    @defer.inlineCallbacks
    def test_a_left_node_has_no_detector_view(self) -> Any:
        a, b, c = yield start_cluster(self, 3, control="127.0.0.1:0")
        yield wait_until(lambda: all(len(s.peers("alive")) == 2 for s in (a, b, c)))
        yield c.stopService()  # says goodbye: left at a
        yield wait_until(lambda: (p := a.peer(c.id)) is not None and p.is_left)
        code, body = yield call(control(a), "GET", "/v1/members")
        self.assertEqual(code, 200)
        by_id = {m["id"]: m for m in body["members"]}
        self.assertEqual(by_id[c.id]["status"], "left")
        self.assertIsNone(by_id[c.id]["detector"])
        self.assertEqual(by_id[b.id]["detector"]["status"], "alive")
        code, one = yield call(control(a), "GET", f"/v1/nodes/{c.id}")
        self.assertEqual((code, one["detector"]), (200, None))

    @defer.inlineCallbacks
    def test_forced_forget_of_a_live_node_comes_back(self) -> Any:
        a, b = yield start_cluster(self, 2, control="127.0.0.1:0")
        yield wait_until(lambda: a.peer(b.id) is not None and b.peer(a.id) is not None)
        code, _ = yield call(
            control(a), "POST", "/v1/forget", {"node": b.id, "force": True}
        )
        self.assertEqual(code, 200)
        yield wait_until(
            lambda: (p := a.peer(b.id)) is not None and p.is_alive,
            message="b to come back at a",
        )

    @defer.inlineCallbacks
    def test_a_forged_forget_cannot_remove_a_live_node(self) -> Any:
        a, b = yield start_cluster(self, 2)
        yield wait_until(lambda: a.peer(b.id) is not None and b.peer(a.id) is not None)
        # b "says" to forget a's view of itself... and of a live node
        import socket

        forged = wire.encode(wire.Forget(b.id, b.id, b.generation))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        # from a stranger: its source is not b's socket
        sock.sendto(forged, ("127.0.0.1", a.udp_port))
        yield wait_until(lambda: a.stats["dropped"] >= 1)
        self.assertIsNotNone(a.peer(b.id))
        # from b's own socket (a member), about a node alive at a
        node_of_b = b._gossip  # the member's own port: sent as b would
        assert node_of_b is not None and node_of_b.transport is not None
        node_of_b.transport.write(
            wire.encode(wire.Forget(b.id, b.id, b.generation)),
            ("127.0.0.1", a.udp_port),
        )
        yield wait_until(
            lambda: a.stats["dropped_by_reason"].get("forget-refused", 0) >= 1,
            message=lambda: f"a forget-refused drop; drops {a.stats}",
        )
        self.assertTrue(a.peer(b.id).is_alive)  # type: ignore[union-attr]


class AddressTests(unittest.TestCase):
    timeout = 30

    def test_non_loopback_needs_a_token(self) -> None:
        with self.assertRaises(ConfigurationError) as e:
            Server("127.0.0.1", control="0.0.0.0:0")
        self.assertIn("control_token_file=", str(e.exception))

    def test_token_file_must_be_owner_only(self) -> None:
        path = os.path.join(temp_dir(self), "token")
        with open(path, "w") as f:
            f.write("a-token-of-enough-length\n")
        os.chmod(path, 0o644)
        with self.assertRaises(ConfigurationError) as e:
            Server("127.0.0.1", control="127.0.0.1:0", control_token_file=path)
        self.assertIn("chmod 600", str(e.exception))

    def test_control_port_over_65535(self) -> None:
        with self.assertRaises(ConfigurationError) as e:
            Server("127.0.0.1", control="127.0.0.1:70000")
        self.assertIn("control=", str(e.exception))

    @defer.inlineCallbacks
    def test_token_required_on_every_request(self) -> Any:
        path = os.path.join(temp_dir(self), "token")
        with open(path, "w") as f:
            f.write("s3cret-token-of-enough-length\n")
        os.chmod(path, 0o600)
        a = yield start_server(self, control="0.0.0.0:0", control_token_file=path)
        port = int(control(a).rsplit(":", 1)[1])
        url = f"http://127.0.0.1:{port}"
        code, body = yield call(url, "GET", "/v1/health")
        self.assertEqual(code, 401)
        self.assertIn("Authorization: Bearer", body["error"])
        code, body = yield call(url, "GET", "/v1/health", token="wrong")
        self.assertEqual(code, 401)
        self.assertIn("wrong token", body["error"])
        code, body = yield call(
            url, "GET", "/v1/health", token="s3cret-token-of-enough-length"
        )
        self.assertEqual(code, 200)
        code, body = yield call(url, "GET", "/elsewhere", token="nope")
        self.assertEqual(code, 401)

    @defer.inlineCallbacks
    def test_unix_socket(self) -> Any:
        import shutil
        import tempfile

        short = tempfile.mkdtemp(prefix="pokan-")  # a socket path is short
        self.addCleanup(shutil.rmtree, short, True)
        path = os.path.join(short, "c.sock")
        a = yield start_server(self, control=f"unix:{path}")
        self.assertEqual(a.control_address, f"unix:{path}")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        code, body = yield call(f"unix:{path}", "GET", "/v1/info")
        self.assertEqual(code, 200)
        self.assertEqual(body["id"], a.id)

    @defer.inlineCallbacks
    def test_unix_socket_in_no_directory(self) -> Any:
        """The socket's lock file cannot be made: a clear error, no traceback."""
        from pokan.control.service import TWISTD_NAMES, ControlListenError

        path = os.path.join(short_dir(self), "no-such-dir", "c.sock")
        with self.assertRaises(ControlListenError) as e:
            yield start_server(self, control=f"unix:{path}")
        self.assertIn(f"unix:{path}: no such file or directory", str(e.exception))
        self.assertIn("Create its directory", str(e.exception))
        self.assertIn("control=", str(e.exception))
        self.assertIn("--control", e.exception.describe(TWISTD_NAMES))

    @defer.inlineCallbacks
    def test_unix_socket_on_a_directory_or_file(self) -> Any:
        """A path that is no socket is not "another node running there"."""
        from pokan.control.service import ControlListenError

        directory = short_dir(self)
        regular = os.path.join(directory, "regular")
        with open(regular, "w") as f:
            f.write("not a socket\n")
        for path in (directory, regular):
            with self.assertRaises(ControlListenError) as e:
                yield start_server(self, control=f"unix:{path}")
            self.assertIn("not a socket", str(e.exception))
            self.assertNotIn("another node", str(e.exception))
        with open(regular) as f:
            self.assertEqual(f.read(), "not a socket\n")

    @defer.inlineCallbacks
    def test_health_503_until_synced_with_a_seed(self) -> Any:
        from tests.support import free_port

        a = yield start_server(
            self, control="127.0.0.1:0", gossip_with=f"127.0.0.1:{free_port()}"
        )
        code, body = yield call(control(a), "GET", "/v1/health")
        self.assertEqual(code, 503)
        self.assertEqual(body["status"], "unavailable")
        self.assertIn("not yet synced", body["reason"])


def short_dir(test: unittest.TestCase) -> str:
    """A fresh directory with a short path (a socket path is at most 107 bytes)."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="pokan-")
    test.addCleanup(shutil.rmtree, path, True)
    return path
