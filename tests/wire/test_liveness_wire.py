"""The liveness messages on the wire: strict decoding, and hostile peers.

Forgeries are built with pokan.wire, as a peer (or a spoofing host without
the cluster's key) would send them, and fed to a SwimDetector through the
codec.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import msgpack
from hypothesis import given
from twisted.trial import unittest

from pokan import wire
from pokan.core.liveness import SwimDetector, SwimSettings
from pokan.core.state import ClusterState, NodeInfo, NodeState
from pokan.errors import DecodeError
from tests.wire.test_fuzz_codec import FUZZ, liveness_messages, mutated


def body(kind: wire.MessageType, fields: list[Any]) -> bytes:
    return wire.header(kind, wire.DEFAULT_CLUSTER) + msgpack.packb(fields)


def rumour(kind: int = wire.SUSPECT, incarnation: int = 0) -> list[Any]:
    return [kind, "n2", 1, incarnation, "n1"]


class StrictDecoding(unittest.TestCase):
    def test_the_types_are_datagrams_6_to_10(self) -> None:
        kinds = {
            wire.kind_of(m)
            for m in (
                wire.Ping("a", 1, "b"),
                wire.PingReq("a", 1, "b"),
                wire.PingAck("a", 1, "b"),
                wire.Nack("a", 1, "b"),
                wire.Notice("a", ()),
            )
        }
        self.assertEqual(sorted(kinds), [6, 7, 8, 9, 10])
        self.assertLessEqual(kinds, wire.DATAGRAM_TYPES)
        self.assertFalse(kinds & wire.STREAM_TYPES)

    def test_too_many_rumours_are_refused(self) -> None:
        data = body(wire.MessageType.NOTICE, ["a", [rumour()] * (wire.MAX_RUMOURS + 1)])
        with self.assertRaises(DecodeError) as caught:
            wire.decode(data)
        self.assertIn("more than 16", str(caught.exception))
        ok = body(wire.MessageType.NOTICE, ["a", [rumour()] * wire.MAX_RUMOURS])
        self.assertEqual(len(wire.decode(ok).rumours), wire.MAX_RUMOURS)

    def test_counters_above_the_cap_are_refused(self) -> None:
        for bad in (
            body(wire.MessageType.NOTICE, ["a", [rumour(incarnation=2**62 + 1)]]),
            body(wire.MessageType.PING, ["a", 2**32, "b", []]),
            body(wire.MessageType.NACK, ["a", -1, "b"]),
            body(wire.MessageType.NOTICE, ["a", [[3, "n2", 1, 0, "n1"]]]),
            body(wire.MessageType.PING_ACK, ["a", 1, "", []]),
            body(wire.MessageType.PING_REQ, ["a", 1, "b"]),
            body(wire.MessageType.NOTICE, ["a", [[1, "n2", 1, 0]]]),
        ):
            with self.assertRaises(DecodeError):
                wire.decode(bad)

    @FUZZ
    @given(mutated(liveness_messages().map(lambda m: _encoded(m))))
    def test_mutated_probes_raise_only_decode_error(self, data: bytes) -> None:
        with contextlib.suppress(DecodeError):
            wire.decode(data)


def _encoded(message: wire.Message) -> bytes:
    return wire.encode(message)


def cluster(n: int = 4) -> list[tuple[ClusterState, SwimDetector]]:
    infos = [NodeInfo(f"n{i}", 1, f"10.0.0.{i}", 5555, 5555) for i in range(n)]
    out = []
    for i, me in enumerate(infos):
        state = ClusterState(me)
        for other in infos:
            if other is not me:
                state.nodes[other.id] = NodeState(other)
        out.append((state, SwimDetector(state, random.Random(i), SwimSettings(1.0))))
    return out


def arrive(
    detector: SwimDetector, message: wire.Message, source: tuple[str, int], now: float
) -> Any:
    data = wire.encode(message)
    return detector.receive(
        wire.decode(data, wire.DATAGRAM_TYPES), source, len(data), now
    )


class HostilePeers(unittest.TestCase):
    def test_a_forged_suspicion_of_a_live_node_is_refuted_not_convicted(self) -> None:
        (sa, a), (_, b), _, _ = cluster()
        spoofed = ("10.0.0.3", 5555)  # n3's socket, spoofed by anyone
        forged = wire.Notice("n3", (wire.Rumour(wire.DEAD, "n1", 1, 0, "n3"),))
        out = arrive(a, forged, spoofed, 0.0)
        self.assertFalse(out.batch)
        self.assertEqual(sa.nodes["n1"].status, "alive")
        # n1 hears it (a's buddy ping carries it) and refutes in its ack
        buddy = a.heard_from("n1", 0.1)
        ping = buddy.sends[0].message
        reply = arrive(b, ping, ("10.0.0.0", 5555), 0.11)
        ack = next(
            o.message for o in reply.sends if isinstance(o.message, wire.PingAck)
        )
        self.assertEqual(ack.rumours[0][:4], (wire.ALIVE, "n1", 1, 1))
        arrive(a, ack, ("10.0.0.1", 5555), 0.12)
        self.assertEqual(a.view("n1", 0.2)["status"], "alive")
        for t in range(1, 20):
            a.poll(float(t))
        self.assertEqual(sa.nodes["n1"].status, "alive")

    def test_a_forged_alive_cannot_push_the_incarnation_to_the_cap(self) -> None:
        (_, a), _, _, _ = cluster()
        huge = wire.Notice(
            "n2", (wire.Rumour(wire.ALIVE, "n2", 1, wire.MAX_COUNTER, "n2"),)
        )
        out = arrive(a, huge, ("10.0.0.2", 5555), 0.0)
        self.assertEqual([r for r, _ in out.rejected], ["implausible-incarnation"])
        self.assertEqual(a.view("n2", 0.0)["incarnation"], 0)

    def test_a_stranger_gets_no_more_bytes_than_it_sent(self) -> None:
        (_, a), _, _, _ = cluster()
        a.start(0.0)
        stranger = ("192.0.2.7", 9999)
        for message in (
            wire.Ping("s" * 30, 1, "n0"),
            wire.PingReq("s" * 30, 2, "n1"),
            wire.PingReq("n2", 3, "n1"),  # a member's name, from elsewhere
            wire.Notice("s", (wire.Rumour(wire.SUSPECT, "n1", 1, 0, "s"),)),
        ):
            data = wire.encode(message)
            out = arrive(a, message, stranger, 0.1)
            back = [o for o in out.sends if o.address == stranger]
            self.assertLessEqual(
                sum(len(wire.encode(o.message)) for o in back), len(data)
            )
            # and nothing on its behalf to third parties (no amplification)
            self.assertEqual(
                [
                    o
                    for o in out.sends
                    if isinstance(o.message, wire.Ping) and o.message.target == "n1"
                ],
                [],
            )
