"""Watch connections over real sockets on 127.0.0.1: a kill -9 noticed through
them, and forged watches that change nothing.

The seed probes its one member once a minute and, idle, gossips with it once
a minute: only the watch connection, closed by the killed process's kernel,
can bring a probe (and so the conviction) within seconds.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pokan import wire
from pokan.net.watch import HINT_GAP
from pokan.wire.framing import PREFIX
from tests.net.test_membership_live import spawn_node, wait_for
from tests.support import LogCatcher, start_cluster, start_server
from tests.wire.test_wire import envelope

SLOW = 60.0  # probe and idle intervals: far beyond the test's bounds


class KilledProcessTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_a_kill_is_probed_at_once_through_the_watch(self) -> Any:
        seed = yield start_server(
            self, gossip_interval=0.1, idle_interval=SLOW, probe_interval=SLOW
        )
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


def forged_watch(
    port: int, sender: str, generation: int, source: str = "127.0.0.1"
) -> socket.socket:
    """A TCP connection from ``source`` to 127.0.0.1:``port`` that sends a
    forged Watch frame."""
    return raw_frame(port, wire.encode(wire.Watch(sender, generation)), source)


def raw_frame(port: int, body: bytes, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection from ``source`` to 127.0.0.1:``port`` that sends
    ``body`` in one frame, as it is."""
    s = socket.create_connection(
        ("127.0.0.1", port), timeout=5, source_address=(source, 0)
    )
    s.sendall(PREFIX.pack(len(body)) + body)
    s.setblocking(False)
    return s


def closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class ForgedWatchTests(unittest.TestCase):
    """Watches forged over real sockets: refused and counted, or only a probe."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.log = LogCatcher(self)
        self.seed, self.member = yield start_cluster(
            self, 2, gossip_interval=0.1, idle_interval=SLOW, probe_interval=SLOW
        )
        yield wait_for(
            lambda: self.member.id in self.seed._watches.watchers,
            10,
            "the member to watch the seed",
        )

    @defer.inlineCallbacks
    def test_impostors_are_refused_counted_and_logged_throttled(self) -> Any:
        generation = self.seed._state.nodes[self.member.id].info.generation
        impostors = [
            (self.seed.id, generation, "127.0.0.1"),  # the seed itself
            (self.member.id, generation - 1, "127.0.0.1"),  # an older generation
        ] + [(self.member.id, generation, "127.0.0.2")] * 20  # another host
        yield self.send_one_by_one(impostors)
        self.assertEqual(dict(self.seed.bad_input.counts), {"watch-refused": 22})
        self.assertEqual(self.seed.stats["early_watches"], 0)
        self.assertEqual(list(self.seed._watches.watchers), [self.member.id])
        self.assertEqual(self.seed._watches.hints, 0)
        # a line per source host in the window, not one per connection
        lines = self.log.matching("watch-refused")
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("but came from 127.0.0.2", self.log.matching("127.0.0.2")[0])
        self.assertEqual(self.seed.peer(self.member.id).status, "alive")  # type: ignore[union-attr]

    @defer.inlineCallbacks
    def test_watches_before_their_member_is_known_are_early_not_bad(self) -> Any:
        generation = self.seed._state.nodes[self.member.id].info.generation
        yield self.send_one_by_one(
            [
                ("127.0.0.1:1", 1, "127.0.0.1"),  # no member (yet)
                (self.member.id, generation + 1, "127.0.0.1"),  # restarted?
            ]
        )
        self.assertEqual(self.seed.stats["early_watches"], 2)
        self.assertEqual(self.seed.stats["dropped"], 0)
        self.assertEqual(list(self.seed._watches.watchers), [self.member.id])

    @defer.inlineCallbacks
    def test_watches_with_hostile_fields_are_dropped_as_bad_fields(self) -> Any:
        """The raw bytes tests/wire refuses at decode, sent over a real socket:
        each connection closed and counted, the member's own watch kept."""
        generation = self.seed._state.nodes[self.member.id].info.generation
        bodies = [
            envelope(wire.MessageType.WATCH, [self.member.id, bad])
            for bad in (wire.MAX_COUNTER + 1, -1, -(2**63))
        ] + [
            envelope(wire.MessageType.WATCH, ["1" * (wire.MAX_ID_LEN + 1), 1]),
            envelope(wire.MessageType.WATCH, [self.member.id, generation, 2]),
        ]
        for body in bodies:
            s = raw_frame(self.seed.tcp_port, body)
            self.addCleanup(s.close)
            yield wait_for(lambda s=s: closed(s), 5, f"the connection of {body!r}")
        self.assertEqual(dict(self.seed.bad_input.counts), {"bad-field": len(bodies)})
        self.assertEqual(list(self.seed._watches.watchers), [self.member.id])
        self.assertEqual(self.seed._watches.hints, 0)
        self.assertEqual(self.seed.peer(self.member.id).status, "alive")  # type: ignore[union-attr]

    @defer.inlineCallbacks
    def send_one_by_one(self, watches: list[tuple[str, int, str]]) -> Any:
        """Send each forged watch, and wait for the seed to close it."""
        for sender, generation, source in watches:  # one at a time: the sync caps
            s = forged_watch(self.seed.tcp_port, sender, generation, source)
            self.addCleanup(s.close)
            yield wait_for(lambda s=s: closed(s), 5, f"the watch of {sender} closed")

    @defer.inlineCallbacks
    def test_a_forged_watch_of_a_live_member_brings_only_spaced_probes(self) -> Any:
        """From the member's own host it is held, like the member's; closing
        it is a hint, but only a probe decides, at most one a second."""
        generation = self.seed._state.nodes[self.member.id].info.generation
        swim = self.seed._engine.detector.swim
        probes, started = swim.probes, self.seed._now()
        watchers = self.seed._watches.watchers

        def held(s: socket.socket) -> bool:
            held = watchers.get(self.member.id)
            return (
                held is not None
                and held.transport.getPeer().port == (s.getsockname()[1])
            )

        for _ in range(10):
            s = forged_watch(self.seed.tcp_port, self.member.id, generation)
            yield wait_for(lambda s=s: held(s), 5, "the forged watch held")
            s.close()
        yield wait_for(lambda: swim.probes > probes, 5, "a probe of the member")
        elapsed = self.seed._now() - started
        self.assertLessEqual(self.seed._watches.hints, int(elapsed / HINT_GAP) + 2)
        self.assertEqual(self.seed.peer(self.member.id).status, "alive")  # type: ignore[union-attr]
        self.assertEqual(self.seed.stats["convictions"], 0)
        self.assertLessEqual(len(watchers), 1)
