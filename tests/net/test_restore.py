"""What a node takes back from its store at start."""

from __future__ import annotations

from twisted.trial import unittest

from pokan.core.state import Entry, KeyChange, NodeInfo, NodeRecord, NodeState
from pokan.net.restore import next_generation, restorable, under_bound_id
from pokan.store import Snapshot


def record(address: str, udp_port: int = 5555) -> NodeRecord:
    info = NodeInfo(f"{address}:{udp_port}", 7, address, 5555, udp_port)
    return NodeRecord(info, 3, "alive")


class RestorableTests(unittest.TestCase):
    def test_keeps_the_nodes_of_its_family(self) -> None:
        nodes = (record("10.0.0.1"), record("10.0.0.2"))
        entries = {"10.0.0.2:5555": {"k": Entry("v", 1, 1.0)}}
        kept = restorable(Snapshot(nodes, entries), "10.0.0.9")
        self.assertEqual(kept.nodes, nodes)
        self.assertIs(kept.entries, entries)

    def test_drops_port_zero_and_the_other_family(self) -> None:
        ours, unbound, other = record("10.0.0.1"), record("10.0.0.2", 0), record("::2")
        kept = restorable(Snapshot((ours, unbound, other), {}), "10.0.0.9")
        self.assertEqual(kept.nodes, (ours,))
        kept = restorable(Snapshot((ours, unbound, other), {}), "::1")
        self.assertEqual(kept.nodes, (other,))


NOW_US = 1_700_000_000_000_000


class NextGenerationTests(unittest.TestCase):
    def test_the_wall_clock_in_microseconds(self) -> None:
        self.assertEqual(next_generation(0, NOW_US), NOW_US)

    def test_above_the_previous_one_when_the_clock_went_back(self) -> None:
        self.assertEqual(next_generation(NOW_US, 5), NOW_US + 1)


class UnderBoundIdTests(unittest.TestCase):
    def test_every_key_and_the_record_under_the_id_now(self) -> None:
        info = NodeInfo("10.0.0.1:40001", 9, "10.0.0.1", 40002, 40001, "seed")
        a, b = Entry("1", 1, 1.0), Entry(None, 2, 2.0)
        me = NodeState(info, {"a": a, "b": b}, version=2)
        batch = under_bound_id(me)
        self.assertEqual(
            batch.changes,
            (
                KeyChange("10.0.0.1:40001", "a", None, a),
                KeyChange("10.0.0.1:40001", "b", None, b),
            ),
        )
        self.assertEqual(batch.nodes, (NodeRecord(info, 2, "alive"),))
