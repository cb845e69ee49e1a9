"""The envelope: cluster names, sealing, replays (sans-IO, no socket)."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from pokan import wire
from pokan.core.state import Entry, NodeDelta, NodeInfo
from pokan.errors import DecodeError
from pokan.net.badinput import BadInputReporter
from pokan.net.protocols import GossipProtocol
from pokan.wire.envelope import REPLAY_WINDOW, Envelope, ReplayGuard
from pokan.wire.keyring import Keyring, Sealer
from tests.net.test_protocols import FakeDatagramTransport

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
NOW = 1_800_000_000.0
INFO = NodeInfo("10.0.0.2:5555", 1, "10.0.0.2", 5555, 5555, "peer")
SECRET = "a-secret-value-never-in-clear"
ACK = wire.Ack(INFO.id, (NodeDelta(INFO, 3, 0, 1, (("k", Entry(SECRET, 1, 1.0)),)),))
SOURCE = ("10.0.0.2", 5555)


def sealed(*keys: bytes, cluster: str = "pokan") -> Envelope:
    return Envelope(cluster, Sealer(Keyring(keys)))


class ReplayGuardTests(unittest.TestCase):
    def setUp(self) -> None:
        self.guard = ReplayGuard(window=300, counters=16)

    def test_fresh_messages_pass_once(self) -> None:
        for counter in (1, 2, 5, 4, 3):  # out of order is fine
            self.assertIsNone(self.guard.check(b"p", counter, NOW, NOW))
        for counter in (1, 2, 5, 4, 3):
            refused = self.guard.check(b"p", counter, NOW, NOW)
            assert refused is not None
            self.assertEqual(refused.reason, "replayed")

    def test_far_behind_the_highest_is_refused(self) -> None:
        self.assertIsNone(self.guard.check(b"p", 100, NOW, NOW))
        refused = self.guard.check(b"p", 84, NOW, NOW)
        assert refused is not None
        self.assertEqual(refused.reason, "replayed")
        self.assertIsNone(self.guard.check(b"p", 85, NOW, NOW))

    def test_senders_are_apart(self) -> None:
        self.assertIsNone(self.guard.check(b"p", 1, NOW, NOW))
        self.assertIsNone(self.guard.check(b"q", 1, NOW, NOW))

    def test_stale_and_future_messages_are_refused(self) -> None:
        for sent in (NOW - 301, NOW + 301):
            refused = self.guard.check(b"p", 1, sent, NOW)
            assert refused is not None
            self.assertEqual(refused.reason, "stale")
            self.assertIn("NTP", refused.detail)

    def test_memory_is_bounded(self) -> None:
        guard = ReplayGuard(window=300, counters=16, max_senders=100)
        for i in range(1000):
            guard.check(i.to_bytes(4, "big"), 1, NOW, NOW)
        self.assertLessEqual(len(guard), 100)
        for counter in range(2, 1000):
            guard.check(b"p", counter, NOW, NOW)
        # the counters kept per sender stay near the window
        self.assertLessEqual(len(guard._senders[b"p"][1]), 2 * 16 + 1)

    def test_silent_senders_are_forgotten_after_the_window(self) -> None:
        self.guard.check(b"p", 1, NOW, NOW)
        later = NOW + REPLAY_WINDOW + 1
        self.guard.check(b"q", 1, later, later)
        self.assertEqual(len(self.guard), 1)


class EnvelopeTests(unittest.TestCase):
    def test_plaintext_round_trip_and_cluster(self) -> None:
        env = Envelope("prod")
        data = env.encode(ACK, NOW)
        self.assertEqual(env.decode(data, None, NOW), ACK)
        self.assertEqual(data[5:9], wire.cluster_tag("prod"))
        for other in (Envelope("test"), Envelope()):
            e = self.assertRaises(DecodeError, other.decode, data, None, NOW)
            self.assertEqual(e.reason, "wrong-cluster")

    def test_sealed_round_trip_hides_the_values(self) -> None:
        env = sealed(KEY_A)
        data = env.encode(ACK, NOW)
        self.assertNotIn(SECRET.encode(), data)
        self.assertNotIn(INFO.id.encode(), data)
        self.assertEqual(data[4], wire.FLAG_SEALED)
        self.assertEqual(sealed(KEY_A).decode(data, None, NOW), ACK)

    def test_seal_fits_the_headroom(self) -> None:
        plain = Envelope().encode(ACK, NOW)
        self.assertEqual(len(sealed(KEY_A).encode(ACK, NOW)), len(plain) + 48)
        self.assertEqual(wire.SEAL_HEADROOM, 48)

    def test_what_a_sealed_node_refuses(self) -> None:
        env = sealed(KEY_A)
        good = sealed(KEY_A).encode(ACK, NOW)
        cases = {
            Envelope().encode(ACK, NOW): "unsealed",
            sealed(KEY_B).encode(ACK, NOW): "unknown-key",
            sealed(KEY_A, cluster="other").encode(ACK, NOW): "wrong-cluster",
            good[:-1] + bytes([good[-1] ^ 1]): "unauthenticated",
            good[:20]: "truncated",
        }
        for data, reason in cases.items():
            e = self.assertRaises(DecodeError, env.decode, data, None, NOW)
            self.assertEqual(e.reason, reason, data)

    def test_the_header_is_bound_to_the_seal(self) -> None:
        # the message type, the version and the cluster tag are associated
        # data: changing the type byte of a sealed Ack breaks its tag
        env = sealed(KEY_A)
        data = bytearray(sealed(KEY_A).encode(ACK, NOW))
        data[3] = wire.MessageType.SYN_ACK
        e = self.assertRaises(DecodeError, env.decode, bytes(data), None, NOW)
        self.assertEqual(e.reason, "unauthenticated")

    def test_a_plaintext_node_refuses_sealed_messages(self) -> None:
        data = sealed(KEY_A).encode(ACK, NOW)
        e = self.assertRaises(DecodeError, Envelope().decode, data, None, NOW)
        self.assertEqual(e.reason, "sealed")

    def test_a_replay_is_refused(self) -> None:
        receiver = sealed(KEY_A)
        data = sealed(KEY_A).encode(ACK, NOW)
        self.assertEqual(receiver.decode(data, None, NOW), ACK)
        e = self.assertRaises(DecodeError, receiver.decode, data, None, NOW + 1)
        self.assertEqual(e.reason, "replayed")
        # and a late one, to a receiver that restarted since, is stale
        e = self.assertRaises(
            DecodeError, sealed(KEY_A).decode, data, None, NOW + REPLAY_WINDOW + 1
        )
        self.assertEqual(e.reason, "stale")

    def test_rotation_second_key_opens(self) -> None:
        old = sealed(KEY_A).encode(ACK, NOW)
        new = sealed(KEY_B).encode(ACK, NOW)
        both = sealed(KEY_B, KEY_A)
        self.assertEqual(both.decode(old, None, NOW), ACK)
        self.assertEqual(both.decode(new, None, NOW), ACK)

    def test_a_bad_cluster_answer_is_read_in_any_cluster(self) -> None:
        reply = sealed(KEY_A, cluster="prod").bad_cluster_reply()
        self.assertEqual(reply[4], 0)  # never sealed
        message = sealed(KEY_B, cluster="test").decode(reply, None, NOW)
        self.assertEqual(message, wire.BadCluster("prod"))

    def test_cluster_names_are_checked(self) -> None:
        for bad in ("", "a b", "x" * 65, "é", "a\nb", 5):
            self.assertRaises(ValueError, Envelope, bad)


class OtherClusterOverUDPTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.received: list[wire.Message] = []
        self.reporter = BadInputReporter(self.clock)
        self.proto = GossipProtocol(
            lambda m, a, size: self.received.append(m),
            self.reporter,
            1400,
            envelope=Envelope("prod"),
        )
        self.transport = FakeDatagramTransport()
        self.proto.transport = self.transport  # type: ignore[assignment]

    def test_dropped_counted_and_told_once(self) -> None:
        foreign = Envelope("test").encode(ACK, NOW)
        for _ in range(5):
            self.proto.datagramReceived(foreign, SOURCE)
        self.assertEqual(self.received, [])
        self.assertEqual(self.reporter.counts["wrong-cluster"], 5)
        self.assertEqual(len(self.transport.written), 1)
        reply, to = self.transport.written[0]
        self.assertEqual(to, SOURCE)
        self.assertLessEqual(len(reply), len(foreign))
        self.assertEqual(
            Envelope("test").decode(reply, None, NOW), wire.BadCluster("prod")
        )
        # told again only after an hour
        self.clock.advance(3601)
        self.proto.datagramReceived(foreign, SOURCE)
        self.assertEqual(len(self.transport.written), 2)

    def test_never_a_bigger_answer_than_what_came(self) -> None:
        tiny = Envelope("test").encode(wire.BadCluster("x"), NOW)
        tiny = tiny[:3] + bytes([wire.MessageType.GOODBYE]) + tiny[4:]
        self.proto.datagramReceived(tiny, SOURCE)
        self.assertEqual(self.reporter.counts["wrong-cluster"], 1)
        self.assertEqual(self.transport.written, [])

    def test_being_told_is_logged_not_merged(self) -> None:
        told = Envelope("test").bad_cluster_reply()
        self.proto.datagramReceived(told, SOURCE)
        self.assertEqual(self.received, [])
        self.assertEqual(self.reporter.counts["told-other-cluster"], 1)
        self.assertEqual(self.transport.written, [])


class HostileEnvelopeFieldTests(unittest.TestCase):
    """Fields of the envelope a peer controls, at their extremes."""

    def test_extreme_counters_neither_crash_nor_lock_the_guard(self) -> None:
        guard = ReplayGuard(window=300, counters=16)
        for counter in (2**64 - 1, 0, 2**63):
            guard.check(b"p", counter, NOW, NOW)
        # another sender is not held back by one's extreme counter
        self.assertIsNone(guard.check(b"q", 1, NOW, NOW))
        # and the extreme one's replay is still refused
        refused = guard.check(b"p", 2**64 - 1, NOW, NOW)
        assert refused is not None
        self.assertEqual(refused.reason, "replayed")

    def test_any_send_time_is_refused_or_taken_never_raises(self) -> None:
        for sent in (0, 2**32 - 1, 2**31):
            receiver = sealed(KEY_A)
            data = sealed(KEY_A).encode(ACK, float(sent))
            try:
                receiver.decode(data, None, NOW)
            except DecodeError as e:
                self.assertEqual(e.reason, "stale")

    def test_a_bad_cluster_name_with_control_characters_is_logged_escaped(
        self,
    ) -> None:
        from tests.support import LogCatcher

        logs = LogCatcher(self)
        clock = task.Clock()
        clock.advance(NOW)
        reporter = BadInputReporter(clock)
        proto = GossipProtocol(
            lambda m, a, size: None, reporter, 1400, envelope=Envelope("prod")
        )
        proto.transport = FakeDatagramTransport()  # type: ignore[assignment]
        forged = wire.header(wire.MessageType.BAD_CLUSTER, "x") + b"\x91\xa4a\nb\x1b"
        proto.datagramReceived(forged, SOURCE)
        self.assertEqual(reporter.counts["told-other-cluster"], 1)
        for line in logs.lines():
            self.assertNotIn("\n", line)
            self.assertNotIn("\x1b", line)
        # a cluster name over 64 characters is refused at decode
        long = wire.header(wire.MessageType.BAD_CLUSTER, "x")
        long += b"\x91\xd9\x41" + b"a" * 65
        proto.datagramReceived(long, SOURCE)
        self.assertEqual(reporter.counts["bad-field"], 1)
        self.assertEqual(proto.transport.written, [])  # type: ignore[attr-defined]
