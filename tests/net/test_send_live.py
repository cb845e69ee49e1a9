"""A peer that cannot be sent to never stops a live node's rounds."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pokan.core.state import NodeDelta, NodeInfo, NodeState
from tests.support import LogCatcher, everyone_knows, missing, start_cluster, wait_until


def unreachable(address: str) -> NodeDelta:
    """A live-looking record of a node whose address no IPv4 socket takes."""
    info = NodeInfo(f"{address}:5555", 1, address, 5555, 5555, "peer")
    return NodeDelta(info, 1, 0, 0, ())


class UnsendableAddressTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_records_with_bad_addresses_do_not_stop_gossip(self) -> Any:
        log = LogCatcher(self)
        servers = yield start_cluster(self, 3)
        for server in servers:
            server.store("k", "before")
        yield wait_until(lambda: everyone_knows(servers, "k"), timeout=4)
        first = servers[0]
        # an IPv6 peer in an IPv4 cluster passes the merge's checks (a valid
        # IP), and no IPv4 socket can send to it; a record whose address is
        # no IP at all (one a store restored, say) goes in by hand
        first._state.merge([unreachable("::1")])
        bad = unreachable("not-an-ip")
        first._state.nodes[bad.info.id] = NodeState(bad.info)
        first._state.note_status(bad.info.id, None)
        yield wait_until(lambda: first._gossip.send_errors >= 4, timeout=3)
        for server in servers:
            server.store("k", "after")
        yield wait_until(
            lambda: everyone_knows(servers, "k"),
            timeout=4,
            message=lambda: missing(servers, "k"),
        )
        self.assertEqual(
            {s.peer(o.id).value("k") for s in servers for o in servers if o is not s},
            {"after"},
        )
        lines = log.matching("could not send")
        self.assertGreaterEqual(len(lines), 1)
        # the others learn the records too: at most one line per node and
        # destination in the 10 s window, however many rounds failed
        self.assertLessEqual(len(lines), 3 * 2)
        self.assertGreater(sum(s._gossip.send_errors for s in servers), len(lines))
        self.assertEqual(self.flushLoggedErrors(), [])
