"""/metrics: every documented metric, read from real nodes on loopback."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from pokan import wire
from pokan.control.metrics import MetricsResource, histogram
from pokan.net.meters import Traffic
from tests.support import (
    ROOT,
    everyone_knows,
    global_reactor,
    start_cluster,
    temp_dir,
    wait_until,
)

#: every metric docs/operations.md promises, by family name (no _total)
DOCUMENTED = {
    "pokan_node": "gauge",
    "pokan_messages_sent": "counter",
    "pokan_messages_received": "counter",
    "pokan_sent_bytes": "counter",
    "pokan_received_bytes": "counter",
    "pokan_dropped": "counter",
    "pokan_send_errors": "counter",
    "pokan_exchanges": "counter",
    "pokan_exchange_rtt_seconds": "histogram",
    "pokan_full_syncs": "counter",
    "pokan_full_syncs_answered": "counter",
    "pokan_full_sync_duration_seconds": "histogram",
    "pokan_rounds": "counter",
    "pokan_idle_rounds": "counter",
    "pokan_watch_hints": "counter",
    "pokan_early_watches": "counter",
    "pokan_peers": "gauge",
    "pokan_keys": "gauge",
    "pokan_tombstones": "gauge",
    "pokan_rumour_queue_depth": "gauge",
    "pokan_rumours_evicted": "counter",
    "pokan_convictions": "counter",
    "pokan_refutations": "counter",
    "pokan_handler_runs": "counter",
    "pokan_handler_failures": "counter",
    "pokan_handler_timeouts": "counter",
    "pokan_store_pending_changes": "gauge",
}
#: only with a Redis store
REDIS_ONLY = {
    "pokan_store_up": "gauge",
    "pokan_store_batches_written": "counter",
    "pokan_redis_write_duration_seconds": "histogram",
}


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(found: dict[str, Any], name: str, suffix: str = "", **labels: str) -> float:
    """The one sample of ``name`` + ``suffix`` with these labels."""
    values = [
        s.value
        for s in found[name].samples
        if s.name == name + suffix
        and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    if len(values) != 1:
        raise AssertionError(f"{len(values)} samples {name}{suffix} {labels}")
    return float(values[0])


@defer.inlineCallbacks
def scrape(resource: MetricsResource, test: unittest.TestCase) -> Any:
    """GET /metrics over real HTTP on loopback; (status, content type, body)."""
    reactor = global_reactor()
    root = Resource()
    root.putChild(b"metrics", resource)
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    test.addCleanup(port.stopListening)
    url = f"http://127.0.0.1:{port.getHost().port}/metrics".encode()
    response = yield Agent(reactor).request(b"GET", url, Headers({}))
    body = yield readBody(response)
    kind = response.headers.getRawHeaders(b"Content-Type")[0].decode()
    return response.code, kind, body.decode("utf-8")


class MetricsLiveTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_every_documented_metric_from_a_live_cluster(self) -> Any:
        servers = yield start_cluster(self, 3)
        for s in servers:
            yield s.store("color", "blue")
        yield servers[0].delete("color")
        yield s.store("color", "red")
        yield wait_until(lambda: everyone_knows(servers, "color"), timeout=20)
        first = servers[0]
        yield wait_until(
            lambda: first.meters.traffic.exchanges >= 3, timeout=20, message="exchanges"
        )
        code, kind, text = yield scrape(MetricsResource(first.metrics), self)
        self.assertEqual(code, 200)
        self.assertTrue(kind.startswith("text/plain; version=0.0.4"), kind)
        found = families(text)
        for name, kind_ in DOCUMENTED.items():
            self.assertIn(name, found, f"{name} missing from /metrics")
            self.assertEqual(found[name].type, kind_, name)
        for name in REDIS_ONLY:
            self.assertNotIn(name, found)
        self.assertEqual(sample(found, "pokan_peers", status="alive"), 2)
        self.assertEqual(sample(found, "pokan_peers", status="dead"), 0)
        self.assertEqual(sample(found, "pokan_keys"), 2)  # the others' "color"
        self.assertEqual(sample(found, "pokan_tombstones"), 1)  # our own "color"
        self.assertEqual(sample(found, "pokan_node", id=first.id), 1)
        for kind_ in ("syn", "syn_ack", "ack"):
            self.assertGreater(
                sample(found, "pokan_messages_sent", "_total", type=kind_), 0, kind_
            )
            self.assertGreater(
                sample(found, "pokan_received_bytes", "_total", type=kind_), 0, kind_
            )
        sent = sum(
            s.value
            for s in found["pokan_sent_bytes"].samples
            if s.name.endswith("_total")
        )
        # traffic by type adds up to the totals stats() keeps
        self.assertLessEqual(sent, first.stats["bytes_sent"])
        self.assertGreaterEqual(sample(found, "pokan_exchanges", "_total"), 3)
        rtt = sample(found, "pokan_exchange_rtt_seconds", "_count")
        self.assertGreaterEqual(rtt, 3)
        self.assertLess(sample(found, "pokan_exchange_rtt_seconds", "_sum"), rtt * 1.0)
        # the first node is the seed: it answered the others' syncs
        self.assertEqual(sample(found, "pokan_full_syncs_answered", "_total"), 2)
        joiner = families((yield scrape(MetricsResource(servers[1].metrics), self))[2])
        self.assertEqual(sample(joiner, "pokan_full_syncs", "_total", outcome="ok"), 1)
        self.assertEqual(
            sample(joiner, "pokan_full_sync_duration_seconds", "_count"), 1
        )
        self.assertGreater(sample(found, "pokan_rounds", "_total"), 0)
        self.assertEqual(sample(found, "pokan_store_pending_changes"), 0)

    @defer.inlineCallbacks
    def test_nodes_in_one_process_have_registries_of_their_own(self) -> Any:
        a, b = yield start_cluster(self, 2)
        self.assertIsNot(a.metrics, b.metrics)
        self.assertIs(a.metrics, a.metrics)
        yield wait_until(lambda: a.meters.traffic.exchanges > 0, timeout=20)
        a_text = (yield scrape(MetricsResource(a.metrics), self))[2]
        b_text = (yield scrape(MetricsResource(b.metrics), self))[2]
        self.assertEqual(sample(families(a_text), "pokan_node", id=a.id), 1)
        self.assertEqual(sample(families(b_text), "pokan_node", id=b.id), 1)
        self.assertNotIn(b.id, a_text.split("pokan_node{")[1].split("\n")[0])

    @defer.inlineCallbacks
    def test_handler_runs_failures_and_drops_are_counted(self) -> Any:
        (server,) = yield start_cluster(self, 1)

        def broken(key: str, value: object) -> None:
            raise RuntimeError("handler bug")

        server.on("new_key", broken)
        yield server.store("a", "1")
        gossip = server._gossip
        assert gossip is not None
        gossip.datagramReceived(b"not pokan", ("127.0.0.1", 9))
        self.flushLoggedErrors(RuntimeError)
        found = families((yield scrape(MetricsResource(server.metrics), self))[2])
        self.assertEqual(sample(found, "pokan_handler_runs", "_total"), 1)
        self.assertEqual(sample(found, "pokan_handler_failures", "_total"), 1)
        (reason,) = server.stats["dropped_by_reason"]
        self.assertEqual(sample(found, "pokan_dropped", "_total", reason=reason), 1)

    @defer.inlineCallbacks
    def test_openmetrics_when_asked(self) -> Any:
        (server,) = yield start_cluster(self, 1)
        reactor = global_reactor()
        root = Resource()
        root.putChild(b"metrics", MetricsResource(server.metrics))
        port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}/metrics".encode()
        headers = Headers({b"Accept": [b"application/openmetrics-text; version=1.0.0"]})
        response = yield Agent(reactor).request(b"GET", url, headers)
        body = (yield readBody(response)).decode()
        kind = response.headers.getRawHeaders(b"Content-Type")[0].decode()
        self.assertTrue(kind.startswith("application/openmetrics-text"), kind)
        self.assertTrue(body.endswith("# EOF\n"))


class TrafficTests(unittest.TestCase):
    def test_round_trip_of_a_syn_and_its_syn_ack(self) -> None:
        traffic = Traffic()
        peer = ("127.0.0.1", 5556)
        syn = wire.Syn("127.0.0.1:5555", (), ())
        traffic.on_sent(syn, 100, peer, 10.0)
        traffic.on_received(wire.SynAck("127.0.0.1:5556", (), ()), 80, peer, 10.25)
        # a second SynAck from the same peer has no Syn left to time
        traffic.on_received(wire.SynAck("127.0.0.1:5556", (), ()), 80, peer, 11.0)
        self.assertEqual(traffic.exchanges, 1)
        self.assertEqual(dict(traffic.sent), {"syn": 1})
        self.assertEqual(dict(traffic.received_bytes), {"syn_ack": 160})
        metric = histogram(traffic.exchange_rtt)
        count = [s for s in metric.samples if s.name.endswith("_count")]
        total = [s for s in metric.samples if s.name.endswith("_sum")]
        self.assertEqual(count[0].value, 1)
        self.assertAlmostEqual(total[0].value, 0.25)
        # 0.25 s falls in the 0.25 bucket (le is inclusive) and all above it
        buckets = {
            s.labels["le"]: s.value
            for s in metric.samples
            if s.name.endswith("_bucket")
        }
        self.assertEqual(buckets["0.1"], 0)
        self.assertEqual(buckets["0.25"], 1)
        self.assertEqual(buckets["+Inf"], 1)

    def test_open_exchanges_are_bounded(self) -> None:
        from pokan.net.meters import MAX_OPEN_EXCHANGES

        traffic = Traffic()
        syn = wire.Syn("127.0.0.1:5555", (), ())
        for port in range(MAX_OPEN_EXCHANGES * 3):
            traffic.on_sent(syn, 10, ("127.0.0.1", port), 1.0)
        self.assertEqual(len(traffic._open), MAX_OPEN_EXCHANGES)
        # the oldest were dropped: their late answers are not timed
        traffic.on_received(wire.SynAck("x", (), ()), 10, ("127.0.0.1", 0), 2.0)
        self.assertEqual(traffic.exchanges, 0)


class OperationsDocTests(unittest.TestCase):
    def test_operations_md_lists_every_metric(self) -> None:
        with open(os.path.join(ROOT, "docs", "operations.md"), encoding="utf-8") as f:
            text = f.read()
        listed = set(re.findall(r"^\| `(pokan_[a-z_]+)` \| (\w+) \|", text, flags=re.M))
        wanted = {
            (n + ("_total" if k == "counter" else ""), k) for n, k in DOCUMENTED.items()
        }
        wanted |= {
            (n + ("_total" if k == "counter" else ""), k) for n, k in REDIS_ONLY.items()
        }
        self.assertEqual(listed, wanted)


class RedisMetricsTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        from tests.redisserver import RedisServer

        self.redis = RedisServer()
        self.addCleanup(self.redis.stop)

    @defer.inlineCallbacks
    def test_store_metrics_of_a_redis_node(self) -> Any:
        from pokan.store.redis import RedisStore

        store = RedisStore(self.redis.url, retry_interval=0.05)
        (server,) = yield start_cluster(self, 1, store=store)
        for i in range(3):
            yield server.store(f"k{i}", "v")
        found = families((yield scrape(MetricsResource(server.metrics), self))[2])
        for name, kind in REDIS_ONLY.items():
            self.assertEqual(found[name].type, kind, name)
        self.assertEqual(sample(found, "pokan_store_up"), 1)
        written = sample(found, "pokan_store_batches_written", "_total")
        self.assertGreaterEqual(written, 3)
        self.assertGreaterEqual(
            sample(found, "pokan_redis_write_duration_seconds", "_count"), 1
        )
        self.assertEqual(sample(found, "pokan_store_pending_changes"), 0)
        self.redis.kill()
        yield wait_until(lambda: not store.available, timeout=20)
        yield server.store("late", "v")
        found = families((yield scrape(MetricsResource(server.metrics), self))[2])
        self.assertEqual(sample(found, "pokan_store_up"), 0)
        self.assertGreaterEqual(sample(found, "pokan_store_pending_changes"), 1)


class ControlPortTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def get(self, url: str, token: str | None = None) -> Any:
        headers = Headers({})
        if token is not None:
            headers.addRawHeader(b"Authorization", f"Bearer {token}".encode())
        response = yield Agent(global_reactor()).request(b"GET", url.encode(), headers)
        body = yield readBody(response)
        return response.code, body.decode("utf-8")

    @defer.inlineCallbacks
    def test_metrics_on_the_control_port(self) -> Any:
        a, b = yield start_cluster(self, 2, control="127.0.0.1:0")
        yield wait_until(lambda: a.meters.traffic.exchanges > 0, timeout=20)
        code, text = yield self.get(f"{a.control_address}/metrics")
        self.assertEqual(code, 200, text)
        found = families(text)
        self.assertEqual(set(DOCUMENTED) - set(found), set())
        self.assertEqual(sample(found, "pokan_node", id=a.id), 1)
        code, text = yield self.get(f"{b.control_address}/metrics")
        self.assertEqual(sample(families(text), "pokan_node", id=b.id), 1)

    @defer.inlineCallbacks
    def test_metrics_need_the_token_too(self) -> Any:
        token_file = os.path.join(temp_dir(self), "token")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"metrics-token-0123456789\n")
        os.close(fd)
        (node,) = yield start_cluster(
            self, 1, control="127.0.0.1:0", control_token_file=token_file
        )
        code, text = yield self.get(f"{node.control_address}/metrics")
        self.assertEqual(code, 401, text)
        self.assertNotIn("pokan_node", text)
        code, text = yield self.get(
            f"{node.control_address}/metrics", "metrics-token-0123456789"
        )
        self.assertEqual(code, 200, text)
        self.assertIn("pokan_node", families(text))


class MetricsResourceTests(unittest.TestCase):
    def test_other_methods_get_a_json_405(self) -> None:
        from twisted.web.test.requesthelper import DummyRequest

        from pokan import Server

        request = DummyRequest([b""])
        request.method = b"POST"
        body = MetricsResource(Server("127.0.0.1").metrics).render(request)
        self.assertEqual(request.responseCode, 405)
        self.assertEqual(
            json.loads(body), {"error": "POST is not allowed on /metrics; use GET"}
        )
