"""A kill -9 noticed through the watch connections (real processes, 127.0.0.1).

The seed probes its one member once a minute and, idle, gossips with it once
a minute: only the watch connection, closed by the killed process's kernel,
can bring a probe (and so the conviction) within seconds.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pokan import Server
from tests.net.test_membership_live import spawn_node, wait_for

SLOW = 60.0  # probe and idle intervals: far beyond the test's bounds


class KilledProcessTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_a_kill_is_probed_at_once_through_the_watch(self) -> Any:
        seed = Server(
            "127.0.0.1",
            tcp_port=0,
            udp_port=0,
            gossip_interval=0.1,
            idle_interval=SLOW,
            probe_interval=SLOW,
        )
        self.addCleanup(lambda: seed.stopService() if seed.running else None)
        yield seed.startService()
        proc, child = spawn_node(
            self, seed.tcp_port, "--gossip-interval", "0.1",
            "--idle-interval", str(SLOW), "--probe-interval", str(SLOW),
        )  # fmt: skip
        watches = seed._watches
        yield wait_for(
            lambda: (
                child in watches.watchers
                and (w := watches.out.get(child)) is not None
                and w.protocol is not None
            ),
            20,
            "the child to join and each to watch the other",
        )
        yield wait_for(lambda: seed._engine.idle, 10, "the seed to go idle")
        probes = seed._engine.detector.swim.probes
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        yield wait_for(
            lambda: seed._engine.detector.swim.probes > probes, 2, "a probe of it"
        )
        self.assertEqual(watches.hints, 1)  # out and in: one hint (HINT_GAP)
        yield wait_for(lambda: seed.peer(child).is_dead, 15, "the conviction")  # type: ignore[union-attr]
        self.assertNotIn(child, watches.watchers)
        self.assertNotIn(child, watches.out)
